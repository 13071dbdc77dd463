"""LangChain runs offline here: no model, no network; stores are the embedded ones."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import voicestate as vs
from voicestate.testing.asyncio_tests import pytest_pyfunc_call  # noqa: F401  (a pytest hook: async tests)

os.environ.setdefault("VOICESTATE_SIGNING_KEYS", "test:voicestate-langchain-test-key-0123456789")


@pytest.fixture
def store() -> Iterator[vs.Store]:
    s = vs.open_store("memory://")
    yield s
    s.close()
