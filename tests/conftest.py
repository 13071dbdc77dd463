from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator

import pytest

# The core's tests see the core alone, never whatever plugins happen to be installed
# (as llm skips entry points under tests); set before voicestate loads its plugins,
# and inherited by the processes the tests spawn.
os.environ["VOICESTATE_PLUGINS"] = ""

import voicestate as vs
import voicestate.plugins as vsp
from voicestate import EphemeralKeyWarning

# Tests that do not pass keys on purpose would warn on every store.
warnings.filterwarnings("ignore", category=EphemeralKeyWarning)

DEFAULT_KEYS = "t1:tests-secret-0123456789abcdef"


def memory_url(prefix: str = "t") -> str:
    """A fresh named in-process store, private to one test."""
    return f"memory://{prefix}-{uuid.uuid4().hex}"


@pytest.fixture
def store(request: pytest.FixtureRequest) -> Iterator[vs.Store]:
    """A fresh in-process store signing with the test module's ``KEYS`` (if it has them)."""
    s = vs.open_store(memory_url(request.module.__name__), signing_keys=getattr(request.module, "KEYS", DEFAULT_KEYS))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def plugin() -> Iterator[Callable[[object], object]]:
    """Register plugins for one test (as a third party would); unregistered afterwards."""
    registered: list[object] = []

    def add(obj: object) -> object:
        vsp.register_plugin(obj)
        registered.append(obj)
        return obj

    try:
        yield add
    finally:
        for obj in registered:
            vsp.unregister_plugin(obj)
