"""The MCP SDK's real client and server, offline: in-process (`mcp.Client(server)`), over stdio
to a child process, and over streamable HTTP on loopback. The store is SQLite in a temporary
directory, so that other processes (the server's, a writer's) share it."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

import voicestate as vs
from voicestate.testing.asyncio_tests import pytest_pyfunc_call  # noqa: F401  (a pytest hook: async tests)

KEYS = "test:voicestate-mcp-test-key-0123456789"
os.environ["VOICESTATE_SIGNING_KEYS"] = KEYS
sys.path.insert(0, str(Path(__file__).parent))  # kit.py


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'calls.db'}"


@pytest.fixture
def store(url: str):
    s = vs.open_store(url)
    yield s
    s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
