"""LangChain runs offline here: no model, no network; stores are the embedded ones."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Iterator

import pytest

import voicestate as vs

os.environ.setdefault("VOICESTATE_SIGNING_KEYS", "test:voicestate-langchain-test-key-0123456789")


@pytest.fixture
def store() -> Iterator[vs.Store]:
    s = vs.open_store("memory://")
    yield s
    s.close()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in a fresh event loop each."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True
