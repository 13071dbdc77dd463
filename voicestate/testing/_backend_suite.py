"""Backend conformance: the protocol of ``voicestate._backend.Backend``, method by method."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from .._backend import Backend
from .._codec import genesis, verify_chain
from .._events import CallEnded, CallStarted, Note, OwnerChanged
from .._open import open_tier
from ._backend_grown import GrownBackendConformance, GrownMultiProcessConformance
from ._helpers import make_events, spawn, started


def _proc_append(url: str, call_id: str, n: int) -> Any:
    """Child: append ``n`` notes as a non-owner writer would (retry on conflict)."""
    backend = open_tier(url).backend
    done = 0
    conflicts = 0
    try:
        while done < n:
            meta = backend.get_meta(call_id)
            assert meta is not None
            evs = make_events(call_id, [Note(f"p{done}")], start_seq=meta.seq, head=meta.head, epoch=meta.epoch)
            res = backend.append(call_id, evs, meta.seq, None)
            if res.status == "ok":
                done += 1
            else:
                conflicts += 1
        return ("ok", conflicts)
    finally:
        backend.close()


class BackendConformance(GrownBackendConformance):
    """Subclass and provide a ``store_url`` fixture naming a fresh, empty store."""

    @pytest.fixture
    def backend(self, store_url: str) -> Iterator[Backend]:
        backend = open_tier(store_url).backend
        try:
            yield backend
        finally:
            backend.close()

    # -- metadata and creation ---------------------------------------------------

    def test_missing_call_has_no_meta(self, backend: Backend) -> None:
        assert backend.get_meta("nope") is None
        assert backend.load("nope") == []
        assert backend.high_water("nope") == 0

    def test_create_sets_meta_from_last_event(self, backend: Backend) -> None:
        evs = started("c1", 2)
        assert backend.append("c1", evs, 0, 1).status == "ok"
        meta = backend.get_meta("c1")
        assert meta is not None
        assert (meta.seq, meta.epoch, meta.head, meta.ended) == (3, 1, evs[-1].chain, False)

    def test_create_twice_conflicts(self, backend: Backend) -> None:
        assert backend.append("c1", started("c1"), 0, 1).status == "ok"
        res = backend.append("c1", started("c1"), 0, 1)
        assert res.status == "conflict"
        assert res.meta is not None and res.meta.seq == 1
        assert len(backend.load("c1")) == 1

    def test_append_to_missing_call_conflicts(self, backend: Backend) -> None:
        evs = make_events("c1", [Note("x")], start_seq=3)
        res = backend.append("c1", evs, 3, None)
        assert res.status == "conflict" and res.meta is None
        assert backend.get_meta("c1") is None

    # -- conditions ----------------------------------------------------------------

    def test_seq_condition(self, backend: Backend) -> None:
        evs = started("c1", 1)
        backend.append("c1", evs, 0, 1)
        stale = make_events("c1", [Note("late")], start_seq=1, head=evs[0].chain)
        res = backend.append("c1", stale, 1, 1)
        assert res.status == "conflict"
        assert res.meta is not None and res.meta.seq == 2
        assert [e.seq for e in backend.load("c1")] == [1, 2]

    def test_head_condition(self, backend: Backend) -> None:
        # same seq and epoch, another incarnation of the call: the head tells them apart
        evs = started("c1", 1)
        backend.append("c1", evs, 0, 1)
        other = started("c1", 1)  # what a writer of a deleted, older call would hold
        nxt = make_events("c1", [Note("ghost")], start_seq=2, head=other[-1].chain)
        res = backend.append("c1", nxt, 2, 1, other[-1].chain)
        assert res.status == "conflict"
        assert res.meta is not None and res.meta.head == evs[-1].chain
        good = make_events("c1", [Note("mine")], start_seq=2, head=evs[-1].chain)
        assert backend.append("c1", good, 2, None, evs[-1].chain).status == "ok"

    def test_epoch_condition_only_for_owner_writes(self, backend: Backend) -> None:
        evs = started("c1")
        backend.append("c1", evs, 0, 1)
        fenced = make_events("c1", [Note("zombie")], start_seq=1, head=evs[-1].chain, epoch=1)
        assert backend.append("c1", fenced, 1, 7).status == "conflict"
        assert backend.append("c1", fenced, 1, None).status == "ok"

    def test_ownership_change_moves_epoch_atomically(self, backend: Backend) -> None:
        evs = started("c1")
        backend.append("c1", evs, 0, 1)
        change = make_events("c1", [OwnerChanged(owner="b", epoch=2)], start_seq=1, head=evs[-1].chain)
        assert backend.append("c1", change, 1, 1).status == "ok"
        meta = backend.get_meta("c1")
        assert meta is not None and (meta.seq, meta.epoch) == (2, 2)
        # the old owner's epoch no longer matches, the new one's does
        nxt = make_events("c1", [Note("x")], start_seq=2, head=change[-1].chain, epoch=2)
        assert backend.append("c1", nxt, 2, 1).status == "conflict"
        assert backend.append("c1", nxt, 2, 2).status == "ok"

    def test_ended_call_refuses_owner_writes_only(self, backend: Backend) -> None:
        evs = make_events("c1", [CallStarted(), CallEnded(reason="bye")])
        backend.append("c1", evs, 0, 1)
        meta = backend.get_meta("c1")
        assert meta is not None and meta.ended
        late = make_events("c1", [Note("after")], start_seq=2, head=evs[-1].chain)
        assert backend.append("c1", late, 2, 1).status == "conflict"
        assert backend.append("c1", late, 2, None).status == "ok"
        meta = backend.get_meta("c1")
        assert meta is not None and meta.ended  # ended stays ended

    def test_duplicate_ids_write_nothing(self, backend: Backend) -> None:
        evs = started("c1", 2)
        backend.append("c1", evs, 0, 1)
        again = make_events("c1", [Note("new")], start_seq=3, head=evs[-1].chain)
        dup = again[0]._replace(id=evs[1].id)
        res = backend.append("c1", [dup], 3, 1)
        assert res.status == "duplicate"
        assert dict(res.duplicates) == {evs[1].id: 2}
        meta = backend.get_meta("c1")
        assert meta is not None and meta.seq == 3
        # a batch with a new event and a stored one: only the stored one is reported, nothing written
        batch = [*make_events("c1", [Note("fresh")], start_seq=3, head=evs[-1].chain), evs[2]._replace(seq=5)]
        res = backend.append("c1", batch, 3, 1, evs[-1].chain)
        assert res.status == "duplicate"
        assert dict(res.duplicates) == {evs[2].id: 3}
        assert [e.seq for e in backend.load("c1")] == [1, 2, 3]
        # a duplicate is reported even when the seq has moved on (a retry from anywhere)
        res = backend.append("c1", [evs[2]], 1, None)
        assert res.status == "duplicate" and dict(res.duplicates) == {evs[2].id: 3}

    # -- loading -----------------------------------------------------------------

    def test_load_ranges(self, backend: Backend) -> None:
        evs = started("c1", 9)
        backend.append("c1", evs, 0, 1)
        assert backend.load("c1") == evs
        assert backend.load("c1", 4) == evs[3:]
        assert backend.load("c1", 4, 6) == evs[3:6]
        assert backend.load("c1", 11) == []

    def test_bytes_are_kept_exactly(self, backend: Backend) -> None:
        # every byte value, in the data and the chain: no text codec in between
        ev = make_events("c1", [CallStarted(meta={"blob": "\x00\xff" + bytes(range(256)).decode("latin-1")})])[0]
        weird = ev._replace(data=bytes(range(256)) + ev.data)
        assert backend.append("c1", [weird], 0, 1).status == "ok"
        (back,) = backend.load("c1")
        assert back == weird and type(back.data) is bytes and type(back.chain) is bytes

    def test_calls_are_isolated(self, backend: Backend) -> None:
        backend.append("c1", started("c1", 1), 0, 1)
        backend.append("c2", started("c2", 3), 0, 1)
        assert len(backend.load("c1")) == 2 and len(backend.load("c2")) == 4
        assert backend.delete("c1") is True
        assert backend.get_meta("c1") is None and len(backend.load("c2")) == 4

    # -- write_at (caches, behind tiers, backfill) --------------------------------------

    def test_write_at_is_idempotent(self, backend: Backend) -> None:
        evs = started("c1", 5)
        assert backend.write_at("c1", evs[:3]) == 3
        assert backend.write_at("c1", evs[:3]) == 3
        assert backend.write_at("c1", evs[1:]) == 6
        assert backend.load("c1") == evs
        meta = backend.get_meta("c1")
        assert meta is not None and (meta.seq, meta.head) == (6, evs[-1].chain)

    def test_write_at_refuses_gaps(self, backend: Backend) -> None:
        evs = started("c1", 5)
        assert backend.write_at("c1", evs[:2]) == 2
        assert backend.write_at("c1", evs[4:]) == 2
        assert backend.high_water("c1") == 2
        assert backend.load("c1") == evs[:2]

    def test_write_at_carries_epoch_and_end(self, backend: Backend) -> None:
        evs = make_events("c1", [CallStarted(), OwnerChanged(owner="b", epoch=2), CallEnded()])
        backend.write_at("c1", evs)
        meta = backend.get_meta("c1")
        assert meta is not None and (meta.epoch, meta.ended) == (2, True)

    def test_delete(self, backend: Backend) -> None:
        assert backend.delete("c1") is False
        backend.append("c1", started("c1"), 0, 1)
        assert backend.delete("c1") is True
        assert backend.get_meta("c1") is None and backend.load("c1") == []
        # the id can be used again, from scratch
        assert backend.append("c1", started("c1"), 0, 1).status == "ok"

    # -- async twins -----------------------------------------------------------------

    def test_async_twins(self, backend: Backend) -> None:
        async def go() -> None:
            evs = started("c1", 3)
            assert (await backend.aget_meta("c1")) is None
            assert (await backend.aappend("c1", evs[:2], 0, 1)).status == "ok"
            assert (await backend.aappend("c1", evs[:2], 0, 1)).status == "duplicate"
            assert await backend.awrite_at("c1", evs) == 4
            assert await backend.ahigh_water("c1") == 4
            assert await backend.aload("c1", 2, 3) == evs[1:3]
            meta = await backend.aget_meta("c1")
            assert meta is not None and meta.seq == 4
            assert await backend.adelete("c1") is True

        asyncio.run(go())

    # -- concurrency -----------------------------------------------------------------

    def test_concurrent_threads_keep_the_log_gapless(self, backend: Backend) -> None:
        assert backend.capabilities.threads, "every backend must be safe for threads of one process"
        backend.append("c1", started("c1"), 0, 1)
        per_thread, threads = 25, 4
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                done = 0
                while done < per_thread:
                    meta = backend.get_meta("c1")
                    assert meta is not None
                    evs = make_events("c1", [Note(f"{t}-{done}")], start_seq=meta.seq, head=meta.head)
                    if backend.append("c1", evs, meta.seq, None).status == "ok":
                        done += 1
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors
        log = backend.load("c1")
        assert [e.seq for e in log] == list(range(1, 2 + per_thread * threads))
        _assert_chained("c1", log)


class MultiProcessBackendConformance(GrownMultiProcessConformance, BackendConformance):
    """For backends several OS processes share (``capabilities.shared_across_processes``)."""

    def test_declares_shared_across_processes(self, backend: Backend) -> None:
        assert backend.capabilities.shared_across_processes

    def test_concurrent_processes_keep_the_log_gapless(self, backend: Backend) -> None:
        backend.append("c1", started("c1"), 0, 1)
        results = spawn(_proc_append, [(backend.url, "c1", 15)] * 3)
        assert all(r[0] == "ok" for r in results), results
        log = backend.load("c1")
        assert [e.seq for e in log] == list(range(1, 47))
        _assert_chained("c1", log)


def _assert_chained(call_id: str, log: list[Any]) -> None:

    assert verify_chain(genesis(call_id), log) == -1
