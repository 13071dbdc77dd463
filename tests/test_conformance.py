"""The core backends pass the shared conformance suite, alone and as tiers."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from voicestate.testing import (
    BackendConformance,
    MultiProcessBackendConformance,
    MultiProcessStoreConformance,
    StoreConformance,
)

_names = itertools.count()


class TestMemory(BackendConformance, StoreConformance):
    @pytest.fixture
    def store_url(self) -> str:
        return f"memory://conformance-{next(_names)}"


class TestSQLite(MultiProcessBackendConformance, MultiProcessStoreConformance):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'calls.db'}"


class TestTiered(MultiProcessStoreConformance):
    """memory (cache) -> SQLite (deciding) -> a second SQLite file written behind."""

    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return (
            f"memory://tiered-{next(_names)} sqlite:///{tmp_path / 'decide.db'} "
            f"sqlite:///{tmp_path / 'archive.db'}?write=behind"
        )
