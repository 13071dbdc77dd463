"""A pytest hook that runs ``async def`` tests, each in a fresh event loop (``asyncio.run``).

The distributions' test suites share it instead of depending on an async test plugin::

    # tests/conftest.py
    from voicestate.testing.asyncio_tests import pytest_pyfunc_call  # noqa: F401  (a pytest hook)
"""

from __future__ import annotations

import asyncio
import inspect

import pytest

__all__ = ["pytest_pyfunc_call"]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test with ``asyncio.run``; leave other tests to pytest."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True
