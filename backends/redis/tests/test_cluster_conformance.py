"""voicestate-redis on a 3-master Redis Cluster passes the shared conformance suites,
several processes included (conftest.py starts the cluster)."""

from __future__ import annotations

import pytest

from voicestate.testing import MultiProcessBackendConformance, MultiProcessStoreConformance


class TestRedisCluster(MultiProcessBackendConformance, MultiProcessStoreConformance):
    """``store_url``: the test cluster (``redis+cluster://``) with a key prefix of the test's own."""

    @pytest.fixture
    def store_url(self, cluster_store_url: str) -> str:
        return cluster_store_url
