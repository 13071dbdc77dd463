"""Store conformance: ownership, handoff, fencing and non-owner writes over a backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, ClassVar, cast

import attrs
import pytest

from .._errors import CallNotFound, ConfigError, FencedError, InvalidEvent, OwnershipError, PacketError
from .._events import (
    AgentSpoke,
    CallEnded,
    Event,
    Interrupted,
    Note,
    SlotsSet,
    ToolCalled,
    ToolReturned,
    UserSpoke,
    register_event_type,
)
from .._open import open_store
from .._store import Store
from ._helpers import spawn
from ._store_grown import GrownMultiProcessStoreConformance, GrownStoreConformance, _proc_resume

KEYS = "t1:conformance-secret-0123456789"


@register_event_type
@attrs.frozen
class _OutsideMark(Event):
    """A plugin's event anyone may append (``OUTSIDE``), as a checkpointer's."""

    TYPE: ClassVar[str] = "voicestate.testing.OutsideMark"
    OUTSIDE: ClassVar[bool] = True
    label: str = ""


@register_event_type
@attrs.frozen
class _OwnerMark(Event):
    TYPE: ClassVar[str] = "voicestate.testing.OwnerMark"
    label: str = ""


def _all_tiers_hold(store: Store, call_id: str, text: str) -> list[str]:
    """URLs of the tiers whose stored bytes contain ``text``."""
    needle = text.encode()
    return [tier.url for tier in store.tiers.all if any(needle in e.data for e in tier.backend.load(call_id))]


class StoreConformance(GrownStoreConformance):
    """Subclass and provide a ``store_url`` fixture naming a fresh, empty store."""

    @pytest.fixture
    def store(self, store_url: str) -> Iterator[Store]:
        store = open_store(*store_url.split(), signing_keys=KEYS)
        try:
            yield store
        finally:
            store.close()

    def _triage(self, store: Store, call_id: str = "call-1") -> Any:
        s = store.open(call_id, agent="triage", meta={"channel": "sip"})
        s.record(UserSpoke("I was charged twice"))
        turn = s.record(AgentSpoke("Let me pull up your invoices and"))
        s.record(Interrupted(turn=turn, heard="Let me pull up", heard_ms=910))
        s.record(ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))
        s.record(SlotsSet({"account_id": "A-77"}))
        return s

    # -- open --------------------------------------------------------------------

    def test_open_creates_only(self, store: Store) -> None:
        s = store.open("call-1", agent="triage")
        assert (s.state.owner, s.state.epoch, s.state.seq, s.state.status) == ("triage", 1, 1, "active")
        with pytest.raises(OwnershipError, match="already exists"):
            store.open("call-1", agent="intruder")
        assert store.load("call-1").owner == "triage"

    def test_load_missing_call(self, store: Store) -> None:
        with pytest.raises(CallNotFound):
            store.load("nope")

    # -- handoff and resume ---------------------------------------------------------

    @pytest.mark.parametrize("form", ["object", "json", "bytes", "token", "call_id"])
    def test_handoff_and_resume(self, store: Store, form: str) -> None:
        s = self._triage(store)
        packet = s.handoff(to="billing", reason="double charge")
        target: Any = {
            "object": packet,
            "json": packet.to_json(),
            "bytes": packet.to_bytes(),
            "token": packet.to_token(),
            "call_id": "call-1",
        }[form]
        b = store.resume(target, agent="billing")
        st = b.state
        assert (st.owner, st.epoch, b.epoch) == ("billing", 2, 2)
        assert [t.text for t in st.turns] == ["I was charged twice", "Let me pull up your invoices and"]
        assert st.turns[1].interrupted and st.turns[1].heard == "Let me pull up"
        assert [t.call_id for t in st.pending_tools()] == ["t1"]
        assert dict(st.slots) == {"account_id": "A-77"}
        assert st.pending_handoff is None

    def test_warm_transfer_sender_keeps_recording(self, store: Store) -> None:
        s = self._triage(store)
        packet = s.handoff(to="billing")
        assert s.state.pending_handoff is not None
        s.record(UserSpoke("are you still there?"))  # the sender still owns the call
        b = store.resume(packet, agent="billing")
        assert b.state.turns[-1].text == "are you still there?"
        assert b.state.seq == packet.seq + 2  # the user turn, then OwnerChanged

    def test_redeem_twice_fails(self, store: Store) -> None:
        packet = self._triage(store).handoff(to="billing")
        store.resume(packet, agent="billing")
        with pytest.raises(OwnershipError, match="redeemed"):
            store.resume(packet, agent="billing")

    def test_wrong_target(self, store: Store) -> None:
        packet = self._triage(store).handoff(to="billing")
        with pytest.raises(PacketError) as err:
            store.resume(packet, agent="sales")
        assert err.value.reason == "wrong_target"
        with pytest.raises(PacketError) as err:
            store.resume(packet.to_token(), agent="sales")
        assert err.value.reason == "wrong_target"
        assert store.load("call-1").owner == "triage"

    def test_cancelled_packet_leaves_sender_in_charge(self, store: Store) -> None:
        s = self._triage(store)
        packet = s.handoff(to="billing")
        assert s.cancel_handoff() is True
        assert s.cancel_handoff() is False
        with pytest.raises(OwnershipError, match="cancelled"):
            store.resume(packet, agent="billing")
        with pytest.raises(OwnershipError, match="no pending handoff"):
            store.resume("call-1", agent="billing")
        s.record(Note("still mine"))
        assert store.load("call-1").owner == "triage"

    def test_replaced_packet(self, store: Store) -> None:
        s = self._triage(store)
        old = s.handoff(to="billing")
        new = s.handoff(to="sales", kind="transfer")
        with pytest.raises(OwnershipError, match="replaced"):
            store.resume(old, agent="billing")
        assert store.resume(new, agent="sales").state.owner == "sales"

    def test_expired_packet_leaves_sender_in_charge(self, store_url: str) -> None:
        store = open_store(*store_url.split(), signing_keys=KEYS, skew=0.0)
        try:
            s = self._triage(store)
            packet = s.handoff(to="billing", ttl=0.05)
            time.sleep(0.1)
            with pytest.raises(OwnershipError, match="expired"):
                store.resume("call-1", agent="billing")
            with pytest.raises(PacketError) as err:
                store.resume(packet.to_json(), agent="billing")
            assert err.value.reason == "expired"
            s.record(Note("still mine"))
            assert store.load("call-1").owner == "triage"
        finally:
            store.close()

    def test_takeover(self, store: Store) -> None:
        s = self._triage(store)
        packet = s.handoff(to="billing")
        w = store.resume("call-1", agent="recovery", takeover=True, force=True)
        assert (w.state.owner, w.state.epoch, w.state.pending_handoff) == ("recovery", 2, None)
        with pytest.raises(OwnershipError, match="took over"):
            store.resume(packet, agent="billing")
        with pytest.raises(FencedError):
            s.record(Note("zombie"))
        assert _all_tiers_hold(store, "call-1", "zombie") == []

    def test_takeover_from_a_stale_epoch_fails(self, store: Store) -> None:
        self._triage(store)
        store.resume("call-1", agent="w0", takeover=True, from_epoch=1, force=True)
        with pytest.raises(OwnershipError, match="took it over already"):
            store.resume("call-1", agent="w1", takeover=True, from_epoch=1, force=True)
        assert store.load("call-1").owner == "w0"

    def test_zombie_owner_is_fenced_everywhere(self, store: Store) -> None:
        s = self._triage(store)
        store.resume(s.handoff(to="billing"), agent="billing")
        with pytest.raises(FencedError, match="no longer owns"):
            s.record(Note("zombie write"))
        with pytest.raises(FencedError):
            s.handoff(to="sales")
        assert _all_tiers_hold(store, "call-1", "zombie write") == []
        assert s.state.owner == "billing"  # the zombie learned who owns the call

    def test_after_end_owner_writes_are_fenced(self, store: Store) -> None:
        s = self._triage(store)
        seq = s.end("resolved")
        with pytest.raises(FencedError, match="ended"):
            s.record(Note("late"))
        with pytest.raises(OwnershipError, match="ended"):
            store.resume("call-1", agent="x", takeover=True, force=True)
        assert store.append("call-1", CallEnded("again")) == seq  # a repeated hang-up is a no-op
        st = store.load("call-1")
        assert (st.status, st.owner, st.seq) == ("ended", None, seq)

    # -- non-owner writes ---------------------------------------------------------------

    def test_owner_folds_in_non_owner_writes(self, store: Store) -> None:
        s = self._triage(store)
        n = store.append("call-1", Note("supervisor: be nice", agent="supervisor"))
        seq = s.record(UserSpoke("hello"))  # no failure: the session folds the note in and retries
        assert seq == n + 1
        assert [x.text for x in s.state.notes] == ["supervisor: be nice"]
        assert [e.seq for e in store.events("call-1")] == list(range(1, seq + 1))

    def test_late_tool_result_from_old_process(self, store: Store) -> None:
        s = self._triage(store)
        b = store.resume(s.handoff(to="billing"), agent="billing")
        store.append("call-1", ToolReturned("t1", {"invoices": 2}, agent="triage-worker"))
        assert b.refresh().tools["t1"].status == "ok"
        store.append("call-1", ToolReturned("t1", {"invoices": 99}))  # the first result wins
        assert store.load("call-1").tools["t1"].result == {"invoices": 2}

    def test_append_refuses_owner_events(self, store: Store) -> None:
        self._triage(store)
        before = store.load("call-1")
        with pytest.raises(InvalidEvent, match="owner"):
            store.append("call-1", UserSpoke("spoofed"))
        assert store.load("call-1").seq == before.seq

    def test_append_takes_a_plugin_event_marked_outside(self, store: Store) -> None:
        s = self._triage(store)
        s.end("hung up")
        seq = store.append("call-1", _OutsideMark(label="after the end"))  # e.g. a graph checkpoint
        back = store.events("call-1")[-1]
        assert (type(back), back.seq, back.label) == (_OutsideMark, seq, "after the end")  # type: ignore[attr-defined]
        with pytest.raises(InvalidEvent, match="OUTSIDE"):
            store.append("call-1", _OwnerMark(label="x"))
        assert store.load("call-1").seq == seq

    def test_events_after_a_seq_are_the_tail(self, store: Store) -> None:
        s = self._triage(store)
        s.record(UserSpoke("one"), AgentSpoke("two"))
        every = store.events("call-1")
        for after in range(len(every) + 2):
            tail = store.events("call-1", after=after)
            assert [(e.id, e.seq, e.chain) for e in tail] == [(e.id, e.seq, e.chain) for e in every[after:]]
        assert [e.id for e in asyncio.run(store.aevents("call-1", after=1))] == [e.id for e in every[1:]]
        with pytest.raises(ConfigError):
            store.events("call-1", after=-1)
        with pytest.raises(CallNotFound):
            store.events("nope", after=3)

    def test_append_to_missing_call(self, store: Store) -> None:
        with pytest.raises(CallNotFound):
            store.append("nope", Note("x"))

    # -- idempotency ------------------------------------------------------------------

    def test_rerecording_an_event_is_a_no_op(self, store: Store) -> None:
        s = self._triage(store)
        ev = UserSpoke("once")
        seq = s.record(ev)
        s.record(Note("other"))
        assert s.record(ev) == seq
        events = store.events("call-1")
        assert [e.id for e in events].count(ev.id) == 1
        assert [e.seq for e in events] == list(range(1, len(events) + 1))

    def test_append_retry_is_stored_once(self, store: Store) -> None:
        self._triage(store)
        note = Note("from a supervisor")
        first = store.append("call-1", note)
        assert store.append("call-1", note) == first
        assert sum(1 for e in store.events("call-1") if e.id == note.id) == 1

    def test_a_batch_ending_in_a_stored_event_returns_that_events_seq(self, store: Store) -> None:
        s = self._triage(store)
        old = Note("stored first")
        at = s.record(old)
        new = Note("new")
        assert s.record(new, old) == at  # the seq of the last event given: it was stored at `at`
        assert store.append("call-1", Note("from outside"), old) == at
        events = store.events("call-1")
        assert [e.id for e in events].count(old.id) == 1
        assert new.id in {e.id for e in events} and "from outside" in {getattr(e, "text", "") for e in events}

    # -- bad input -----------------------------------------------------------------------

    def test_bad_input_leaves_the_call_untouched(self, store: Store) -> None:
        s = self._triage(store)
        before = store.events("call-1")
        bad: list[Any] = [
            UserSpoke(cast(Any, 123)),  # a number where text belongs
            Interrupted(turn=999, heard="x"),
            ToolCalled("t1", "again", {}),
            ToolReturned("nope", 1),
            SlotsSet({"k": object()}),
            SlotsSet({"k": 1}, scope="bogus"),
            "not an event",
        ]
        for ev in bad:
            with pytest.raises(InvalidEvent):
                s.record(ev)
        assert store.events("call-1") == before

    # -- async twins ---------------------------------------------------------------------

    def test_store_async_twins(self, store: Store) -> None:
        async def go() -> None:
            async with store.aopen("call-a", agent="triage") as s:
                t = await s.arecord(AgentSpoke("hello there"))
                await s.arecord(Interrupted(turn=t, heard="hello", heard_ms=300))
                ids = [s.record_nowait(UserSpoke(f"nowait {i}")) for i in range(3)]
                assert [x.text for x in s.state.turns][-3:] == [f"nowait {i}" for i in range(3)]
                packet = await s.ahandoff(to="billing")
            assert {e.id for e in await store.aevents("call-a")} >= set(ids)
            b = await store.aresume(packet, agent="billing")
            assert b.state.owner == "billing"
            await b.arecord(Note("async"))
            assert (await store.aload("call-a")).notes[-1].text == "async"
            assert await store.aappend("call-a", Note("x")) == b.state.seq + 1
            assert await store.adelete("call-a") is True

        asyncio.run(go())


# --- across processes ---------------------------------------------------------------


def _proc_append_same(url: str, call_id: str, note_id: str) -> Any:
    store = open_store(*url.split(), signing_keys=KEYS)
    try:
        return ("ok", store.append(call_id, Note("retried", id=note_id)))
    finally:
        store.close()


class MultiProcessStoreConformance(GrownMultiProcessStoreConformance, StoreConformance):
    """Races between OS processes: for backends processes share."""

    def test_two_processes_hand_over(self, store: Store, store_url: str) -> None:
        s = self._triage(store)
        packet = s.handoff(to="billing")
        s.record(UserSpoke("still holding"))
        [result] = spawn(_proc_resume, [(store_url, packet.to_json(), "billing", False)])
        assert result == ("won", 2)
        st = store.load("call-1")
        assert (st.owner, st.epoch, st.notes[-1].text) == ("billing", 2, "billing was here")
        with pytest.raises(FencedError):
            s.record(Note("zombie across processes"))
        assert _all_tiers_hold(store, "call-1", "zombie across processes") == []

    def test_four_processes_redeem_one_packet(self, store: Store, store_url: str) -> None:
        packet = self._triage(store).handoff(to="billing")
        results = spawn(_proc_resume, [(store_url, packet.to_json(), "billing", False)] * 4)
        assert sorted(r[0] for r in results) == ["lost", "lost", "lost", "won"], results
        assert all(r == ("lost", "OwnershipError") for r in results if r[0] == "lost")
        st = store.load("call-1")
        assert (st.owner, st.epoch, len(st.notes)) == ("billing", 2, 1)

    def _dead_owner(self, store: Store) -> Any:
        """The triage owner, whose lease (short here) has run out: it stopped renewing."""
        store.config = attrs.evolve(store.config, lease=0.2)
        s = self._triage(store)
        time.sleep(0.25)
        store.config = attrs.evolve(store.config, lease=10.0)
        return s

    def test_two_processes_take_over(self, store: Store, store_url: str) -> None:
        s = self._dead_owner(store)
        # both were sent for the owner that died at epoch 1
        results = spawn(_proc_resume, [(store_url, "call-1", f"w{i}", True, 1) for i in range(2)])
        assert sorted(r[0] for r in results) == ["lost", "won"], results
        st = store.load("call-1")
        assert st.epoch == 2 and st.owner in ("w0", "w1")
        with pytest.raises(FencedError):
            s.record(Note("zombie"))

    def test_recovery_workers_without_from_epoch_do_not_depose_each_other(self, store: Store, store_url: str) -> None:
        # The winner's OwnerChanged carries a fresh lease: a later worker is refused by it.
        for round_ in range(3):
            call_id = f"call-r{round_}"
            store.config = attrs.evolve(store.config, lease=0.2)
            self._triage(store, call_id)
            time.sleep(0.25)
            store.config = attrs.evolve(store.config, lease=10.0)
            results = spawn(_proc_resume, [(store_url, call_id, f"w{i}", True) for i in range(3)])
            assert sorted(r[0] for r in results) == ["lost", "lost", "won"], results
            st = store.load(call_id)
            assert st.epoch == 2, "a second recovery worker deposed the first"
        # the last round's winner took its call a few seconds ago, well inside its 10 s lease
        # (the first round's may have run out on a slow machine: spawning is slow there)
        late = spawn(_proc_resume, [(store_url, "call-r2", "late", True)])
        assert late == [("lost", "OwnershipError")]

    def test_append_retried_from_other_processes(self, store: Store, store_url: str) -> None:
        self._triage(store)
        note = Note("x")
        results = spawn(_proc_append_same, [(store_url, "call-1", note.id)] * 3)
        seqs = {r[1] for r in results}
        assert len(seqs) == 1, results
        events = store.events("call-1")
        assert [e.id for e in events].count(note.id) == 1
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
