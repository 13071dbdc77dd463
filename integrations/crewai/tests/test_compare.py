"""The same operations on CrewAI's default backend (LanceDBStorage) and on VoiceStateStorage give
the same results: search order and scores, scopes, categories, counts, listing, deletes, resets."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from crewai.memory.storage.lancedb_storage import LanceDBStorage
from crewai.memory.types import MemoryRecord
from kit import embed

import voicestate as vs
from voicestate_crewai import VoiceStateStorage

T0 = datetime(2026, 12, 7, 9, 0, 0)
TEXTS = [
    ("/", ["general"], "The caller prefers email over phone"),
    ("/call/1", ["billing"], "Invoice INV-3 was charged twice in March"),
    ("/call/1", ["billing", "refund"], "A refund of 42.50 was approved for INV-4"),
    ("/call/12", ["billing"], "Account A-77 has autopay enabled"),
    ("/call/12/notes", ["support"], "The caller asked for a supervisor"),
    ("/crew/research", ["policy"], "Refunds above 100 need a second approval"),
    ("/crew/research/deep", ["policy", "refund"], "Double charges are refunded within five days"),
    ("/crew/research/deep", ["support"], "Supervisors call back within one business day"),
]


def _records() -> list[MemoryRecord]:
    vectors = embed([t for _, _, t in TEXTS])
    return [
        MemoryRecord(
            id=f"r{i}",
            content=text,
            scope=scope,
            categories=cats,
            metadata={"n": i, "kind": "even" if i % 2 == 0 else "odd"},
            importance=0.1 * (i + 1),
            created_at=T0 + timedelta(minutes=i),
            last_accessed=T0 + timedelta(minutes=i),
            embedding=vectors[i],
            source="test",
        )
        for i, (scope, cats, text) in enumerate(TEXTS)
    ]


def _plain(rec: MemoryRecord) -> dict[str, Any]:
    return rec.model_dump(exclude={"embedding"})


SEARCHES: list[dict[str, Any]] = [
    {},
    {"limit": 3},
    {"scope_prefix": "/call/1"},
    {"scope_prefix": "/call/1/"},
    {"scope_prefix": "/crew"},
    {"categories": ["refund"]},
    {"categories": ["billing"], "limit": 1},
    {"metadata_filter": {"kind": "even"}, "limit": 2},
    {"min_score": 0.45},
    {"scope_prefix": "/", "categories": ["support", "policy"], "limit": 4},
]
QUERIES = ["refund the double charge", "supervisor callback", "email preference"]


@pytest.fixture
def both(tmp_path: Path) -> tuple[LanceDBStorage, VoiceStateStorage]:
    lance = LanceDBStorage(path=tmp_path / "lance", compact_every=0)
    ours = VoiceStateStorage(vs.open_store(f"sqlite:///{tmp_path / 'calls.db'}"))
    for backend in (lance, ours):
        backend.save(_records())
    return lance, ours


def _same_search(lance: LanceDBStorage, ours: VoiceStateStorage) -> None:
    for query in QUERIES:
        q = embed([query])[0]
        for kw in SEARCHES:
            want = [(r.id, s) for r, s in lance.search(q, **kw)]
            got = [(r.id, s) for r, s in ours.search(q, **kw)]
            assert [i for i, _ in got] == [i for i, _ in want], (query, kw)
            assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-5), (query, kw)


def test_search_ranks_and_scores_alike(both: tuple[LanceDBStorage, VoiceStateStorage]) -> None:
    _same_search(*both)


def test_scopes_categories_counts_and_listing_agree(both: tuple[LanceDBStorage, VoiceStateStorage]) -> None:
    lance, ours = both
    for scope in ["/", "/call", "/call/1", "/call/12", "/crew/research", "/nowhere"]:
        assert ours.get_scope_info(scope) == lance.get_scope_info(scope), scope
        assert ours.list_scopes(scope) == lance.list_scopes(scope), scope
        assert ours.list_categories(scope) == lance.list_categories(scope), scope
        assert ours.count(scope) == lance.count(scope), scope
        for limit, offset in [(200, 0), (2, 0), (2, 2), (0, 0)]:
            want = [_plain(r) for r in lance.list_records(scope, limit=limit, offset=offset)]
            assert [_plain(r) for r in ours.list_records(scope, limit=limit, offset=offset)] == want
    assert ours.count() == lance.count() == len(TEXTS)
    assert ours.list_categories() == lance.list_categories()
    for rid in ["r0", "r5", "missing"]:
        a, b = lance.get_record(rid), ours.get_record(rid)
        assert (a is None and b is None) or (_plain(a) == _plain(b) and a.embedding == pytest.approx(b.embedding))  # type: ignore[union-attr]


def test_update_delete_and_reset_agree(both: tuple[LanceDBStorage, VoiceStateStorage]) -> None:
    lance, ours = both
    changed = _records()[3].model_copy(update={"content": "Account A-77 turned autopay off", "categories": ["support"]})
    for backend in (lance, ours):
        backend.update(changed)
    assert _plain(ours.get_record("r3")) == _plain(lance.get_record("r3"))  # type: ignore[arg-type]
    _same_search(lance, ours)
    steps: list[dict[str, Any]] = [
        {"record_ids": ["r0", "missing"]},
        {"categories": ["refund"], "scope_prefix": "/crew"},
        {"metadata_filter": {"kind": "odd"}, "older_than": T0 + timedelta(minutes=4)},
        {"scope_prefix": "/call/12"},
        {"older_than": T0 + timedelta(minutes=6)},
    ]
    for kw in steps:
        assert ours.delete(**kw) == lance.delete(**kw), kw
        assert sorted(r.id for r in ours.list_records()) == sorted(r.id for r in lance.list_records()), kw
    _same_search(lance, ours)
    for backend in (lance, ours):
        backend.save(_records())
        backend.reset("/crew/research")
    assert sorted(r.id for r in ours.list_records()) == sorted(r.id for r in lance.list_records())
    for backend in (lance, ours):
        backend.reset()
    assert ours.count() == lance.count() == 0


async def test_the_async_protocol_methods_agree(both: tuple[LanceDBStorage, VoiceStateStorage]) -> None:
    lance, ours = both
    q = embed(["refund"])[0]
    want = [(r.id, s) for r, s in await lance.asearch(q, limit=4)]
    got = [(r.id, s) for r, s in await ours.asearch(q, limit=4)]
    assert [i for i, _ in got] == [i for i, _ in want]
    extra = _records()[0].model_copy(update={"id": "new", "content": "a late note"})
    await lance.asave([extra])
    await ours.asave([extra])
    assert await ours.adelete(record_ids=["new"]) == await lance.adelete(record_ids=["new"]) == 1
