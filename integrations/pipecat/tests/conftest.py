"""Pipecat runs offline here: scripted services (kit.py), no API keys, no network.

Stores are the embedded ones (memory:// within a process, SQLite across processes);
signing keys are set so that packets verify in child processes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import voicestate as vs
from voicestate.testing.asyncio_tests import pytest_pyfunc_call  # noqa: F401  (a pytest hook: async tests)

sys.path.insert(0, str(Path(__file__).parent))  # kit.py, scripts run in child processes

KEYS = "test:voicestate-pipecat-test-key-0123456789"
os.environ.setdefault("VOICESTATE_SIGNING_KEYS", KEYS)


@pytest.fixture
def store() -> Iterator[vs.Store]:
    s = vs.open_store("memory://")
    yield s
    s.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'calls.db'}"
