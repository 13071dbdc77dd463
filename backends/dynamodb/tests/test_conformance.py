"""voicestate-dynamodb passes the shared conformance suites, several processes included."""

from __future__ import annotations

from voicestate.testing import MultiProcessBackendConformance, MultiProcessStoreConformance


class TestDynamoDB(MultiProcessBackendConformance, MultiProcessStoreConformance):
    """``store_url`` (conftest.py): a table of the test's own (a key prefix of its own on a table you name)."""
