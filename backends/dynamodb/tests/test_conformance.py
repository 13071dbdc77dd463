"""voicestate-dynamodb passes the shared conformance suites, several processes included."""

from __future__ import annotations

from voicestate.testing import MultiProcessBackendConformance, MultiProcessStoreConformance


class TestDynamoDB(MultiProcessBackendConformance, MultiProcessStoreConformance):
    """``store_url`` (conftest.py): the test table with a key prefix of the test's own."""
