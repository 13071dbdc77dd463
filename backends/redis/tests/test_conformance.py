"""voicestate-redis passes the shared conformance suites, several processes included."""

from __future__ import annotations

from voicestate.testing import MultiProcessBackendConformance, MultiProcessStoreConformance


class TestRedis(MultiProcessBackendConformance, MultiProcessStoreConformance):
    """``store_url`` (conftest.py): the test server with a key prefix of the test's own."""
