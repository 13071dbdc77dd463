"""Store conformance for Core IV: leases, fenced sessions, ending twice, watching,
listing, expiry, snapshots and ``require_packet``, over any backend."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import attrs
import pytest

from .._errors import CallNotFound, FencedError, OwnershipError
from .._events import AgentSpoke, CallEnded, Event, HandedOff, Note, OwnerChanged, SlotsSet, ToolCalled, ToolReturned
from .._open import open_store
from .._store import Store
from ._helpers import spawn

KEYS = "t1:conformance-secret-0123456789"


def _short_lease(store: Store, lease: float = 0.2) -> None:
    store.config = attrs.evolve(store.config, lease=lease)


def _proc_watch(url: str, call_id: str) -> Any:
    """Child: watch the call from the start until it ends; the texts of its notes and the types."""
    store = open_store(*url.split(), signing_keys=KEYS)
    try:
        seen = [type(ev).__name__ for ev in store.watch(call_id, timeout=30)]
        return ("ok", seen)
    finally:
        store.close()


def _proc_resume(url: str, target: Any, agent: str, takeover: bool, from_epoch: int | None = None) -> Any:
    store = open_store(*url.split(), signing_keys=KEYS)
    try:
        s = store.resume(target, agent=agent, takeover=takeover, from_epoch=from_epoch)
        s.record(Note(f"{agent} was here"))
        return ("won", s.epoch)
    except OwnershipError as exc:
        return ("lost", type(exc).__name__)
    finally:
        store.close()


def _proc_note_later(url: str, call_id: str, delay: float) -> Any:
    store = open_store(*url.split(), signing_keys=KEYS)
    try:
        time.sleep(delay)
        return ("ok", store.append(call_id, Note("from another process"), CallEnded("hangup")))
    finally:
        store.close()


class GrownStoreConformance:
    """Mixed into :class:`StoreConformance` (needs its ``store`` and ``store_url`` fixtures)."""

    # -- leases ------------------------------------------------------------------

    def test_takeover_is_refused_while_the_owner_lease_is_live(self, store: Store) -> None:
        s = store.open("call-1", agent="triage")
        with pytest.raises(OwnershipError, match=r"lease of its owner 'triage' is live \(renewed .* force=True"):
            store.resume("call-1", agent="recovery", takeover=True)
        assert store.load("call-1").owner == "triage" and not s.fenced
        w = store.resume("call-1", agent="operator", takeover=True, force=True)  # an operator's decision
        assert (w.epoch, store.load("call-1").owner) == (2, "operator")

    def test_takeover_succeeds_once_the_lease_lapsed(self, store: Store) -> None:
        _short_lease(store)
        s = store.open("call-1", agent="triage")
        s.record(Note("still alive"))  # an owner append renews the lease
        time.sleep(0.25)
        [info] = store.calls(stale=True)
        assert (info.call_id, info.owner, info.stale) == ("call-1", "triage", True)
        w = store.resume("call-1", agent="recovery", takeover=True, from_epoch=info.epoch)
        assert w.epoch == 2 and store.calls(stale=True) == []
        assert s.heartbeat() is False  # the zombie learns it at its next heartbeat, before it speaks
        assert s.fenced and s.state == store.load("call-1")
        with pytest.raises(FencedError):
            s.record(Note("zombie"))

    def test_heartbeat_renews_the_lease(self, store: Store) -> None:
        _short_lease(store, 0.4)
        s = store.open("call-1", agent="triage")
        for _ in range(4):
            time.sleep(0.15)
            assert s.heartbeat() is True
        with pytest.raises(OwnershipError, match="is live"):
            store.resume("call-1", agent="recovery", takeover=True)

    def test_async_sessions_renew_in_the_background_until_left(self, store: Store) -> None:
        _short_lease(store, 0.6)  # renewed every 0.2 s: slack for a loaded machine

        async def go() -> None:
            async with store.aopen("call-1", agent="triage"):
                await asyncio.sleep(1.3)  # over two leases, without a write
                with pytest.raises(OwnershipError, match="is live"):
                    await store.aresume("call-1", agent="recovery", takeover=True)
            await asyncio.sleep(0.7)  # left: no more renewals, the lease lapses
            w = await store.aresume("call-1", agent="recovery", takeover=True)
            assert w.epoch == 2

        asyncio.run(go())

    # -- fenced sessions and ending ------------------------------------------------

    def test_a_hang_up_from_outside_fences_quietly_and_end_is_a_no_op(self, store: Store) -> None:
        with store.open("call-1", agent="triage") as s:
            s.record(Note("before"))
            seq = store.append("call-1", CallEnded("caller hung up"))
            assert s.end("cleanup") == seq  # every worker's cleanup: no exception, same seq
            assert s.end() == seq
            assert s.fenced and s.state.ended and s.state.ended_reason == "caller hung up"
            with pytest.raises(FencedError, match="has ended"):
                s.record(Note("after"))
        # leaving did not raise; nothing of the refused write is anywhere
        assert [type(e).__name__ for e in store.events("call-1")][-1] == "CallEnded"

    def test_end_twice_by_the_owner(self, store: Store) -> None:
        s = store.open("call-1", agent="triage")
        seq = s.end("done")
        assert s.end("again") == seq and len(store.events("call-1")) == seq

    def test_end_by_a_deposed_owner_raises(self, store: Store) -> None:
        s = store.open("call-1", agent="triage")
        store.resume("call-1", agent="w", takeover=True, force=True)
        with pytest.raises(FencedError, match="no longer owns"):
            s.end("bye")
        assert not store.load("call-1").ended

    def test_a_fenced_session_discards_its_queue(self, store: Store) -> None:
        async def go() -> None:
            s = await store.aopen("call-1", agent="triage")
            packet = await s.ahandoff(to="billing")
            store.resume(packet, agent="billing")
            queued = s.record_nowait(AgentSpoke("are you still there?"))
            assert any(t.text == "are you still there?" for t in s.state.turns)  # applied locally at once
            await s.aflush()  # a barrier: nothing left to store, no exception
            assert [e.id for e in s.discarded] == [queued]
            assert s.state == store.load("call-1") and s.state.owner == "billing"
            with pytest.raises(FencedError):
                s.record_nowait(Note("zombie"))
            async with s:  # leaving a fenced session does not raise
                pass

        asyncio.run(go())

    # -- require_packet -------------------------------------------------------------

    def test_require_packet_refuses_the_bare_call_id(self, store: Store) -> None:
        store.config = attrs.evolve(store.config, require_packet=True)
        s = store.open("call-1", agent="triage")
        token = s.handoff(to="billing").to_token()
        with pytest.raises(OwnershipError, match="require_packet"):
            store.resume("call-1", agent="billing")
        assert store.resume(token, agent="billing").epoch == 2

    # -- watching ----------------------------------------------------------------

    def test_watch_replays_then_follows_until_the_end(self, store: Store) -> None:
        s = store.open("call-1", agent="triage")
        s.record(Note("first"))

        def later() -> None:
            time.sleep(0.05)
            s.record(ToolCalled("t1", "lookup", {}))
            store.append("call-1", ToolReturned("t1", result={"ok": True}))
            s.end("done")

        t = threading.Thread(target=later)
        t.start()
        seen = list(store.watch("call-1", timeout=10))
        t.join()
        assert [type(e).__name__ for e in seen] == [
            "CallStarted",
            "Note",
            "ToolCalled",
            "ToolReturned",
            "CallEnded",
        ]
        assert [e.seq for e in seen] == [1, 2, 3, 4, 5] and all(e.chain for e in seen)
        assert [type(e).__name__ for e in store.watch("call-1", after=3)] == ["ToolReturned", "CallEnded"]

    def test_watch_times_out_and_ends_when_the_call_is_deleted(self, store: Store) -> None:
        store.open("call-1", agent="triage")
        with pytest.raises(TimeoutError, match=r"within 0\.1 s"):
            list(store.watch("call-1", after=1, timeout=0.1))
        timer = threading.Timer(0.05, store.delete, ("call-1",))
        timer.start()
        assert list(store.watch("call-1", after=1, timeout=10)) == []
        timer.join()
        with pytest.raises(CallNotFound):
            list(store.watch("nope"))

    def test_the_sender_awaits_the_redemption_instead_of_polling(self, store: Store) -> None:
        async def go() -> list[Event]:
            s = await store.aopen("call-1", agent="triage")
            packet = await s.ahandoff(to="billing")

            async def receiver() -> None:
                await asyncio.sleep(0.05)
                b = await store.aresume(packet, agent="billing")
                await b.arecord(SlotsSet({"refund": "R-1"}))
                await store.aappend("call-1", CallEnded("hangup"))

            task = asyncio.create_task(receiver())
            seen = [ev async for ev in s.awatch()]
            await task
            assert s.fenced and s.state.slots["refund"] == "R-1" and s.state.ended
            return seen

        seen = asyncio.run(go())
        assert [type(e) for e in seen] == [OwnerChanged, SlotsSet, CallEnded]

    def test_store_awatch(self, store: Store) -> None:
        async def go() -> list[str]:
            s = await store.aopen("call-1", agent="triage")
            out: list[str] = []

            async def follow() -> None:
                async for ev in store.awatch("call-1"):
                    out.append(type(ev).__name__)

            task = asyncio.create_task(follow())
            await asyncio.sleep(0.02)
            await s.ahandoff(to="billing")
            await s.aend("done")
            await asyncio.wait_for(task, 10)
            return out

        assert asyncio.run(go()) == ["CallStarted", "HandedOff", "CallEnded"]

    # -- listing and retention -------------------------------------------------------

    def test_calls_lists_and_filters(self, store: Store) -> None:
        a = store.open("call-a", agent="triage")
        a.handoff(to="billing")
        store.open("call-b", agent="sales").end("done")
        store.open("call-c", agent="triage")
        infos = store.calls()
        assert [i.call_id for i in infos] == ["call-a", "call-b", "call-c"]
        by_id = {i.call_id: i for i in infos}
        assert (by_id["call-a"].status, by_id["call-a"].owner, by_id["call-a"].pending_to) == (
            "active",
            "triage",
            "billing",
        )
        assert (by_id["call-b"].status, by_id["call-b"].owner, by_id["call-b"].lease_until) == ("ended", None, 0.0)
        assert by_id["call-a"].seq == 2 and by_id["call-a"].epoch == 1
        assert by_id["call-a"].started_at <= by_id["call-a"].last_active_at <= time.time()
        assert [i.call_id for i in store.calls(status="active")] == ["call-a", "call-c"]
        assert [i.call_id for i in store.calls(status="ended")] == ["call-b"]
        assert [i.call_id for i in store.calls(owner="triage")] == ["call-a", "call-c"]
        assert [i.call_id for i in store.calls(limit=1, after="call-a")] == ["call-b"]
        assert store.calls(stale=True) == []

    def test_a_call_older_than_max_call_age_is_gone(self, store: Store) -> None:
        # An age long enough for a networked backend's open and load (several requests on a
        # slow server) to finish inside it, short enough for a test.
        store.config = attrs.evolve(store.config, max_call_age=1.5)
        store.open("call-1", agent="triage")
        assert store.load("call-1").seq == 1
        time.sleep(1.55)
        with pytest.raises(CallNotFound):
            store.load("call-1")
        assert store.calls() == []
        store.open("call-1", agent="again")  # the id is free again
        assert store.load("call-1").owner == "again"

    def test_an_ended_call_is_kept_for_its_retention(self, store: Store) -> None:
        store.config = attrs.evolve(store.config, retention=0.3)
        store.open("call-1", agent="triage").end("done")
        assert store.load("call-1").ended
        store.append("call-1", Note("post-call QA"))  # an outside write after the end keeps the expiry
        time.sleep(0.35)
        with pytest.raises(CallNotFound):
            store.load("call-1")

    # -- snapshots -------------------------------------------------------------------

    def test_resume_from_a_snapshot_sees_what_the_log_says(self, store: Store) -> None:
        store.config = attrs.evolve(store.config, snapshot_every=7)
        s = store.open("call-1", agent="triage", meta={"channel": "sip"})
        for i in range(12):
            s.record(AgentSpoke(f"turn {i}"), SlotsSet({f"k{i}": i}, scope="agent:triage" if i % 2 else "call"))
        s.record(ToolCalled("t1", "lookup", {"a": [1, 2]}))
        s.record(Note("a note"))
        packet = s.handoff(to="billing", reason="billing question")
        store.append("call-1", ToolReturned("t1", result={"rows": [1]}))
        b = store.resume(packet, agent="billing")
        got, want = b.state, s.refresh()
        assert (got.seq, got.chain, got.owner, got.epoch) == (want.seq, want.chain, "billing", 2)
        st = store.load("call-1")
        assert list(st.turns) == list(s.state.turns)
        assert dict(st.slots) == dict(s.state.slots) and dict(st.private_slots) == dict(s.state.private_slots)
        assert st.tools == s.state.tools and st.tools["t1"].status == "ok"
        assert [h.packet_id for h in st.handoffs] == [packet.packet_id]
        assert isinstance(st.handoffs[0], HandedOff) and st.notes[0].text == "a note"
        assert st.context("openai") == b.context("openai")
        # the receiver writes on, and hands off again from a snapshot-based session
        b.record(AgentSpoke("billing here"))
        inline = b.handoff(to="triage", inline=True)
        assert inline.state is not None and inline.state.seq == inline.seq
        assert list(inline.state.turns) == list(store.load("call-1").turns)

    def test_cleanup_aend_after_a_hang_up_with_queued_events(self, store: Store) -> None:
        async def go() -> None:
            s = await store.aopen("call-1", agent="triage")
            ended = store.append("call-1", CallEnded("caller hung up"))  # the SIP leg, elsewhere
            queued = s.record_nowait(AgentSpoke("one moment please"))  # the worker does not know yet
            await asyncio.sleep(0.05)  # the background drain meets the end: the queue is discarded
            assert await s.aend("worker cleanup") == ended
            assert [e.id for e in s.discarded] == [queued] and s.fenced

        asyncio.run(go())

    def test_watching_an_ended_call_from_its_end_returns_at_once(self, store: Store) -> None:
        s = store.open("call-1", agent="triage")
        seq = s.end("done")
        assert list(store.watch("call-1", after=seq, timeout=5)) == []
        store.append("call-1", Note("post-call QA"))
        assert [type(e).__name__ for e in store.watch("call-1", after=seq, timeout=5)] == ["Note"]
        assert list(s.watch(timeout=5)) == []  # the session knows the call ended

        async def go() -> list[Event]:
            return [ev async for ev in s.awatch()]

        assert asyncio.run(go()) == []

    def test_session_watch_is_the_sync_twin(self, store: Store) -> None:
        s = store.open("call-1", agent="triage")
        packet = s.handoff(to="billing")

        def receiver() -> None:
            time.sleep(0.05)
            b = store.resume(packet, agent="billing")
            b.end("resolved")

        t = threading.Thread(target=receiver)
        t.start()
        seen = [type(e) for e in s.watch(timeout=10)]
        t.join()
        assert OwnerChanged in seen and seen[-1] is CallEnded
        assert s.state.ended and s.fenced
        with pytest.raises(TimeoutError):
            list(store.open("call-2", agent="x").watch(timeout=0.05))


class GrownMultiProcessStoreConformance:
    """Mixed into :class:`MultiProcessStoreConformance`: watching across OS processes."""

    def test_a_watcher_in_another_process_follows_the_call_to_its_end(self, store: Store, store_url: str) -> None:
        s = store.open("call-1", agent="triage")
        s.record(Note("before the watcher"))
        results: list[Any] = []
        watcher = threading.Thread(target=lambda: results.extend(spawn(_proc_watch, [(store_url, "call-1")])))
        watcher.start()
        time.sleep(0.3)  # the child is watching by now (it replays from seq 0 anyway)
        packet = s.handoff(to="billing")
        [(status, seq)] = spawn(_proc_note_later, [(store_url, "call-1", 0.05)])
        watcher.join(60)
        assert status == "ok" and seq == 5
        assert results == [("ok", ["CallStarted", "Note", "HandedOff", "Note", "CallEnded"])]
        assert packet.seq == 3

    def test_the_sender_learns_of_a_redemption_in_another_process(self, store: Store, store_url: str) -> None:
        async def go() -> list[Event]:
            s = await store.aopen("call-1", agent="triage")
            packet = await s.ahandoff(to="billing")
            seen: list[Event] = []

            async def follow() -> None:
                async for ev in s.awatch():
                    seen.append(ev)
                    if isinstance(ev, OwnerChanged):
                        return

            task = asyncio.create_task(follow())
            result = await asyncio.to_thread(spawn, _proc_resume, [(store_url, packet.to_token(), "billing", False)])
            assert result == [("won", 2)]
            await asyncio.wait_for(task, 30)
            assert s.fenced and s.state.owner == "billing"
            return seen

        seen = asyncio.run(go())
        assert [type(e) for e in seen] == [OwnerChanged]
