"""Backend conformance for what Core IV added to the protocol: the metadata a writer
sets (owner, pending target, lease, expiry, tenant), lease renewal, listing,
expiry, tombstones, watching and snapshots."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from .._backend import Backend, MetaUpdate, Snapshot
from .._events import CallEnded, CallStarted, Note, OwnerChanged
from .._open import open_tier
from ._helpers import make_events, started


def _update(owner: str | None = "a", *, lease: float = 60.0, **kw: Any) -> MetaUpdate:
    now = time.time()
    fields: dict[str, Any] = {
        "owner": owner,
        "pending_to": None,
        "lease_until": now + lease,
        "expires_at": now + 3600,
        "at": now,
    }
    fields.update(kw)
    return MetaUpdate(**fields)


def _proc_append_later(url: str, call_id: str, delay: float) -> Any:
    """Child: after ``delay`` seconds, append one note (as an outside writer)."""
    backend = open_tier(url).backend
    try:
        time.sleep(delay)
        meta = backend.get_meta(call_id)
        assert meta is not None
        evs = make_events(call_id, [Note("from another process")], start_seq=meta.seq, head=meta.head)
        return backend.append(call_id, evs, meta.seq, None, meta.head).status
    finally:
        backend.close()


class GrownBackendConformance:
    """Mixed into :class:`BackendConformance` (needs its ``backend`` fixture)."""

    # -- metadata the writer sets ----------------------------------------------

    def test_update_sets_the_metadata(self, backend: Backend) -> None:
        up = _update("triage", pending_to=None, tenant="acme")
        assert backend.append("c1", started("c1"), 0, 1, None, up).status == "ok"
        meta = backend.get_meta("c1")
        assert meta is not None
        assert (meta.owner, meta.pending_to, meta.lease_until, meta.expires_at, meta.tenant) == (
            "triage",
            None,
            up.lease_until,
            up.expires_at,
            "acme",
        )
        assert meta.started_at == meta.active_at == up.at
        later = _update("triage", pending_to="billing", at=up.at + 5, tenant="other")
        evs = make_events("c1", [Note("n")], start_seq=1, head=meta.head)
        assert backend.append("c1", evs, 1, 1, meta.head, later).status == "ok"
        meta2 = backend.get_meta("c1")
        assert meta2 is not None
        assert (meta2.pending_to, meta2.active_at, meta2.started_at, meta2.tenant) == (
            "billing",
            up.at + 5,
            up.at,
            "acme",  # the tenant is the creating append's
        )

    def test_no_update_keeps_what_was_set(self, backend: Backend) -> None:
        up = _update("triage", pending_to="billing")
        backend.append("c1", started("c1"), 0, 1, None, up)
        meta = backend.get_meta("c1")
        assert meta is not None
        evs = make_events("c1", [Note("n")], start_seq=1, head=meta.head)
        assert backend.append("c1", evs, 1, None, meta.head).status == "ok"
        meta2 = backend.get_meta("c1")
        assert meta2 is not None
        assert (meta2.owner, meta2.pending_to, meta2.lease_until) == ("triage", "billing", up.lease_until)

    def test_the_end_clears_owner_pending_and_lease(self, backend: Backend) -> None:
        backend.append("c1", started("c1"), 0, 1, None, _update("triage", pending_to="billing"))
        meta = backend.get_meta("c1")
        assert meta is not None
        evs = make_events("c1", [CallEnded("hangup")], start_seq=1, head=meta.head)
        assert backend.append("c1", evs, 1, None, meta.head, _update("triage", pending_to="billing")).status == "ok"
        meta2 = backend.get_meta("c1")
        assert meta2 is not None
        assert (meta2.ended, meta2.owner, meta2.pending_to, meta2.lease_until) == (True, None, None, 0.0)

    def test_lapsed_by_refuses_while_the_lease_is_live(self, backend: Backend) -> None:
        up = _update("triage", lease=30.0)
        backend.append("c1", started("c1"), 0, 1, None, up)
        meta = backend.get_meta("c1")
        assert meta is not None
        take = make_events("c1", [OwnerChanged(owner="w", epoch=2)], start_seq=1, head=meta.head)
        now = time.time()
        res = backend.append("c1", take, 1, 1, meta.head, _update("w", lapsed_by=now))
        assert res.status == "conflict" and res.meta is not None and res.meta.lease_until == up.lease_until
        assert backend.get_meta("c1") == meta  # nothing changed
        res = backend.append("c1", take, 1, 1, meta.head, _update("w", lapsed_by=up.lease_until))
        assert res.status == "ok"
        meta2 = backend.get_meta("c1")
        assert meta2 is not None and (meta2.owner, meta2.epoch) == ("w", 2)

    # -- leases ------------------------------------------------------------------

    def test_within_an_epoch_the_lease_only_grows(self, backend: Backend) -> None:
        first = _update("triage", lease=5.0)
        backend.append("c1", started("c1"), 0, 1, None, first)
        meta = backend.get_meta("c1")
        assert meta is not None
        renewed = backend.renew("c1", 1, first.lease_until + 30)  # the owner renews ...
        assert renewed is not None
        stale = MetaUpdate.keep(meta, time.time())  # ... while an outside writer holds the earlier read
        evs = make_events("c1", [Note("late result")], start_seq=1, head=meta.head)
        assert backend.append("c1", evs, 1, None, meta.head, stale).status == "ok"
        after = backend.get_meta("c1")
        assert after is not None and after.lease_until == first.lease_until + 30
        # a new epoch sets the lease as given
        take = make_events("c1", [OwnerChanged(owner="w", epoch=2)], start_seq=2, head=after.head)
        assert backend.append("c1", take, 2, 1, after.head, _update("w", lease=1.0)).status == "ok"
        final = backend.get_meta("c1")
        assert final is not None and final.lease_until < after.lease_until

    def test_renew_is_conditional_on_the_epoch(self, backend: Backend) -> None:
        assert backend.renew("nope", 1, time.time() + 10) is None
        backend.append("c1", started("c1"), 0, 1, None, _update("triage", lease=1.0))
        until = time.time() + 50
        meta = backend.renew("c1", 1, until)
        assert meta is not None and (meta.epoch, meta.lease_until) == (1, until)
        refused = backend.renew("c1", 2, until + 50)  # a zombie of another epoch
        assert refused is not None and (refused.epoch, refused.lease_until) == (1, until)

    def test_renew_after_the_end_changes_nothing(self, backend: Backend) -> None:
        evs = make_events("c1", [CallStarted(), CallEnded("bye")])
        backend.append("c1", evs, 0, 1, None, _update("triage"))
        meta = backend.renew("c1", 1, time.time() + 100)
        assert meta is not None and meta.ended and meta.lease_until == 0.0

    # -- listing and expiry ----------------------------------------------------------

    def test_list_calls_pages_in_call_id_order(self, backend: Backend) -> None:
        for i in (3, 1, 2, 5, 4):
            backend.append(f"c{i}", started(f"c{i}"), 0, 1, None, _update(f"a{i}", tenant="t1" if i % 2 else "t2"))
        assert [c for c, _ in backend.list_calls(None, None, 10)] == ["c1", "c2", "c3", "c4", "c5"]
        assert [c for c, _ in backend.list_calls(None, None, 2)] == ["c1", "c2"]
        assert [c for c, _ in backend.list_calls(None, "c2", 2)] == ["c3", "c4"]
        assert [c for c, _ in backend.list_calls("t1", None, 10)] == ["c1", "c3", "c5"]
        metas = dict(backend.list_calls(None, None, 10))
        assert metas["c4"].owner == "a4" and metas["c4"].seq == 1

    def test_an_expired_call_does_not_exist(self, backend: Backend) -> None:
        backend.append("old", started("old", 1), 0, 1, None, _update(expires_at=time.time() - 1))
        backend.append("new", started("new"), 0, 1, None, _update())
        assert backend.get_meta("old") is None
        assert backend.load("old") == []
        assert backend.high_water("old") == 0
        assert [c for c, _ in backend.list_calls(None, None, 10)] == ["new"]
        # creating it again starts from nothing
        assert backend.append("old", started("old"), 0, 1, None, _update()).status == "ok"
        assert len(backend.load("old")) == 1

    def test_write_at_sets_expiry_too(self, backend: Backend) -> None:
        evs = started("c1", 1)
        assert backend.write_at("c1", evs, _update(expires_at=time.time() - 1)) in (0, 2)
        assert backend.get_meta("c1") is None

    # -- deletion and tombstones -----------------------------------------------------

    def test_a_deleted_call_is_not_brought_back_by_a_late_write(self, backend: Backend) -> None:
        evs = started("c1", 3)
        backend.append("c1", evs, 0, 1, None, _update())
        assert backend.delete("c1") is True
        assert backend.write_at("c1", evs) == 0  # a behind writer's late batch of the old call
        assert backend.write_at("c1", evs[2:]) == 0
        assert backend.get_meta("c1") is None and backend.load("c1") == []
        # a new call of the same id is another log (another first chain value): accepted
        new = started("c1", 1)
        assert backend.write_at("c1", new) == 2
        assert [e.chain for e in backend.load("c1")] == [e.chain for e in new]

    def test_deleting_an_expired_call_finds_nothing(self, backend: Backend) -> None:
        backend.append("c1", started("c1"), 0, 1, None, _update(expires_at=time.time() - 1))
        assert backend.delete("c1") is False

    def test_append_creates_a_deleted_call_anew(self, backend: Backend) -> None:
        backend.append("c1", started("c1"), 0, 1, None, _update())
        backend.delete("c1")
        assert backend.append("c1", started("c1", 1), 0, 1, None, _update()).status == "ok"
        assert backend.high_water("c1") == 2

    def test_write_at_replaces_a_stale_copy(self, backend: Backend) -> None:
        old = started("c1", 4)
        backend.write_at("c1", old)
        new = started("c1", 1)  # the call was deleted and created anew where it is decided
        assert backend.write_at("c1", new) == 2
        assert [e.chain for e in backend.load("c1")] == [e.chain for e in new]

    # -- watching ----------------------------------------------------------------

    def _later(self, backend: Backend, call_id: str, delay: float) -> threading.Thread:
        def go() -> None:
            time.sleep(delay)
            meta = backend.get_meta(call_id)
            assert meta is not None
            evs = make_events(call_id, [Note("later")], start_seq=meta.seq, head=meta.head)
            backend.append(call_id, evs, meta.seq, None, meta.head)

        t = threading.Thread(target=go)
        t.start()
        return t

    def test_wait_for_wakes_at_an_append_from_another_thread(self, backend: Backend) -> None:
        if not backend.capabilities.watch:  # then the store polls get_meta (the store suite tests it)
            assert not callable(getattr(backend, "wait_for", None))
            return
        backend.append("c1", started("c1"), 0, 1)
        t = self._later(backend, "c1", 0.05)
        meta = backend.wait_for("c1", 1, 10.0)  # type: ignore[attr-defined]
        t.join()
        assert meta is not None and meta.seq == 2
        t0 = time.monotonic()
        meta = backend.wait_for("c1", 2, 0.1)  # type: ignore[attr-defined]
        assert meta is not None and meta.seq == 2 and time.monotonic() - t0 >= 0.09
        assert backend.wait_for("nope", 0, 0.05) is None  # type: ignore[attr-defined]

    def test_await_for_wakes_at_an_append_from_another_thread(self, backend: Backend) -> None:
        if not backend.capabilities.watch:  # then the store polls get_meta (the store suite tests it)
            assert not callable(getattr(backend, "wait_for", None))
            return
        backend.append("c1", started("c1"), 0, 1)

        async def go() -> Any:
            t = self._later(backend, "c1", 0.05)
            meta = await backend.await_for("c1", 1, 10.0)  # type: ignore[attr-defined]
            await asyncio.to_thread(t.join)
            return meta

        meta = asyncio.run(go())
        assert meta is not None and meta.seq == 2

    def test_wait_for_returns_when_the_call_is_deleted(self, backend: Backend) -> None:
        if not backend.capabilities.watch:  # then the store polls get_meta (the store suite tests it)
            assert not callable(getattr(backend, "wait_for", None))
            return
        backend.append("c1", started("c1"), 0, 1)
        timer = threading.Timer(0.05, backend.delete, ("c1",))
        timer.start()
        t0 = time.monotonic()
        assert backend.wait_for("c1", 1, 10.0) is None  # type: ignore[attr-defined]
        assert time.monotonic() - t0 < 5
        timer.join()

    # -- snapshots ---------------------------------------------------------------------

    def test_snapshots_keep_the_newest(self, backend: Backend) -> None:
        if not backend.capabilities.snapshots:  # then the store never asks for one
            assert not callable(getattr(backend, "get_snapshot", None))
            return
        evs = started("c1", 3)
        backend.append("c1", evs, 0, 1)
        assert backend.get_snapshot("c1") is None  # type: ignore[attr-defined]
        backend.put_snapshot("c1", Snapshot(3, evs[2].chain, b"at three"))  # type: ignore[attr-defined]
        backend.put_snapshot("c1", Snapshot(2, evs[1].chain, b"at two, late"))  # type: ignore[attr-defined]
        assert backend.get_snapshot("c1") == Snapshot(3, evs[2].chain, b"at three")  # type: ignore[attr-defined]
        backend.delete("c1")
        assert backend.get_snapshot("c1") is None  # type: ignore[attr-defined]


class GrownMultiProcessConformance:
    """Mixed into :class:`MultiProcessBackendConformance`."""

    def test_wait_for_sees_an_append_from_another_process(self, backend: Backend) -> None:
        backend.append("c1", started("c1"), 0, 1)
        from ._helpers import spawn

        done = threading.Thread(target=lambda: spawn(_proc_append_later, [(backend.url, "c1", 0.3)]))
        done.start()
        waiter = backend if backend.capabilities.watch else None
        t0 = time.monotonic()
        if waiter is not None:
            meta = waiter.wait_for("c1", 1, 30.0)  # type: ignore[attr-defined]
        else:
            meta = None
            while time.monotonic() - t0 < 30 and (meta is None or meta.seq < 2):
                meta = backend.get_meta("c1")
                time.sleep(0.01)
        done.join(60)
        assert meta is not None and meta.seq == 2
