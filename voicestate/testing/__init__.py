"""The conformance suite every backend passes, as pytest mixins shipped in the wheel.

A backend passes it by subclassing, in a few lines::

    from voicestate.testing import MultiProcessBackendConformance, MultiProcessStoreConformance

    class TestMyBackend(MultiProcessBackendConformance, MultiProcessStoreConformance):
        @pytest.fixture
        def store_url(self, tmp_path):
            return f"mybackend://{tmp_path}/calls"

``store_url`` must name a fresh, empty store per test. Every backend must be
safe for several threads; one that several OS processes can share (SQLite,
Redis, DynamoDB) subclasses the ``MultiProcess*`` mixins, which add racing
processes appending to, redeeming and taking over the same call. A process-local
backend (``memory://``) uses ``BackendConformance`` and ``StoreConformance``.

``voicestate.testing.asyncio_tests`` holds a pytest hook that runs ``async def``
tests, each in a fresh event loop; a suite imports it into its ``conftest.py``
(``from voicestate.testing.asyncio_tests import pytest_pyfunc_call``).
``voicestate.testing.docs_examples`` runs a documentation page's examples as tests.
"""

from __future__ import annotations

from .._public import publish
from ._backend_suite import BackendConformance, MultiProcessBackendConformance
from ._helpers import make_events, spawn
from ._store_suite import MultiProcessStoreConformance, StoreConformance

__all__ = [
    "BackendConformance",
    "MultiProcessBackendConformance",
    "MultiProcessStoreConformance",
    "StoreConformance",
    "make_events",
    "spawn",
]

publish(__name__, globals(), __all__)
