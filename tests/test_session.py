"""Session behaviour: record_nowait, races with non-owner writes, fencing of queued
events, sync/async mixing, aopen/aresume, context rendering, bad input and open_store."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import voicestate as vs
import voicestate.backend as vsb
from voicestate.backend import genesis, verify_chain
from voicestate.plugins import decode_event

KEYS = "k1:session-tests-secret-0123456789"
_names = itertools.count()


def _memory_url() -> str:
    return f"memory://session-{uuid.uuid4().hex[:8]}-{next(_names)}"


@pytest.fixture
def mem_store() -> Iterator[vs.Store]:
    store = vs.open_store(_memory_url(), signing_keys=KEYS)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(params=["memory", "sqlite"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[vs.Store]:
    url = _memory_url() if request.param == "memory" else f"sqlite:///{tmp_path / 'calls.db'}"
    store = vs.open_store(url, signing_keys=KEYS)
    try:
        yield store
    finally:
        store.close()


def _deciding_log(store: vs.Store, call_id: str) -> list[vsb.StoredEvent]:
    return list(store.tiers.deciding.backend.load(call_id))


def _assert_gapless_and_chained(store: vs.Store, call_id: str) -> list[vsb.StoredEvent]:
    log = _deciding_log(store, call_id)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert verify_chain(genesis(call_id), log) == -1
    meta = store.tiers.deciding.backend.get_meta(call_id)
    assert meta is not None
    assert (meta.seq, meta.head) == (log[-1].seq, log[-1].chain)
    return log


def _ids_in_any_tier(store: vs.Store, call_id: str, ids: set[str]) -> dict[str, set[str]]:
    """Tier URL -> which of ``ids`` that tier holds (for the call)."""
    out = {}
    for tier in store.tiers.all:
        held = {e.id for e in tier.backend.load(call_id)} & ids
        if held:
            out[tier.url] = held
    return out


def _texts(state: vs.CallState) -> list[str]:
    return [t.text for t in state.turns]


# --- 1. record_nowait ---------------------------------------------------------------


def test_record_nowait_applies_at_once_and_is_durable_after_aflush(mem_store: vs.Store) -> None:
    cid = "nowait-1"

    async def go() -> None:
        s = await mem_store.aopen(cid, agent="triage")
        evs = [vs.UserSpoke("hello"), vs.AgentSpoke("hi, how can I help?"), vs.Note("queued note")]
        ids = [s.record_nowait(ev) for ev in evs]
        assert ids == [ev.id for ev in evs]
        # applied locally at once
        st = s.state
        assert st.seq == 4
        assert _texts(st) == ["hello", "hi, how can I help?"]
        assert [t.seq for t in st.turns] == [2, 3]
        assert [n.text for n in st.notes] == ["queued note"]
        # ... but nothing is in the store until the loop yields
        assert [e.seq for e in _deciding_log(mem_store, cid)] == [1]
        assert mem_store.load(cid).seq == 1
        await s.aflush()
        log = _assert_gapless_and_chained(mem_store, cid)
        assert [e.id for e in log[1:]] == ids
        loaded = mem_store.load(cid)
        assert loaded == s.state
        assert _texts(loaded) == _texts(s.state)
        assert [t.seq for t in loaded.turns] == [2, 3]

    asyncio.run(go())


def test_record_nowait_drains_in_the_background(mem_store: vs.Store) -> None:
    cid = "nowait-bg"

    async def go() -> None:
        s = await mem_store.aopen(cid, agent="triage")
        last = s.record_nowait(vs.UserSpoke("a"), vs.UserSpoke("b"))
        for _ in range(200):  # no aflush: the background drain must get there alone
            if len(_deciding_log(mem_store, cid)) == 3:
                break
            await asyncio.sleep(0.001)
        log = _assert_gapless_and_chained(mem_store, cid)
        assert len(log) == 3
        assert log[-1].id == last
        assert _texts(mem_store.load(cid)) == ["a", "b"]

    asyncio.run(go())


def test_record_nowait_burst_is_stored_in_order_with_gapless_seqs(any_store: vs.Store) -> None:
    cid = "nowait-burst"

    async def go() -> None:
        s = await any_store.aopen(cid, agent="triage")
        ids = [s.record_nowait(vs.UserSpoke(f"utterance {i}")) for i in range(100)]
        assert s.state.seq == 101
        assert len(_deciding_log(any_store, cid)) == 1
        # Watch the stored length while the drain runs: a burst queued without
        # yielding goes in as one (or few) appends, never one per event.
        seen = []
        for _ in range(2000):
            n = len(_deciding_log(any_store, cid))
            if not seen or seen[-1] != n:
                seen.append(n)
            if n == 101:
                break
            await asyncio.sleep(0.001)
        assert seen[-1] == 101, seen
        assert len(seen) <= 4, f"the burst went in as many appends: stored lengths seen {seen}"
        await s.aflush()
        log = _assert_gapless_and_chained(any_store, cid)
        assert [e.id for e in log[1:]] == ids
        st = any_store.load(cid)
        assert _texts(st) == [f"utterance {i}" for i in range(100)]
        assert [t.seq for t in st.turns] == list(range(2, 102))
        assert st == s.state

    asyncio.run(go())


def test_record_nowait_outside_a_loop_records_synchronously(mem_store: vs.Store) -> None:
    cid = "nowait-sync"
    s = mem_store.open(cid, agent="triage")
    ev = vs.UserSpoke("no loop here")
    assert s.record_nowait(ev) == ev.id
    log = _deciding_log(mem_store, cid)
    assert [e.id for e in log] == [log[0].id, ev.id]
    assert s._queue == []
    assert mem_store.load(cid) == s.state
    assert s.record(vs.Note("after")) == 3


# --- 2. record_nowait racing a non-owner write -------------------------------------------


@pytest.mark.parametrize("how", ["direct", "thread"])
def test_record_nowait_racing_a_non_owner_write(any_store: vs.Store, how: str) -> None:
    cid = "nowait-race"

    async def go() -> None:
        s = await any_store.aopen(cid, agent="triage")
        await s.arecord(vs.UserSpoke("before"))  # seq 2
        spoke = vs.AgentSpoke("Let me check your account and the invoices")
        queued = [
            vs.UserSpoke("queued 1"),
            spoke,
            vs.Interrupted(turn=spoke, heard="Let me check", heard_ms=500),
            vs.ToolCalled("t1", "lookup", {"account": "A-1"}),
            vs.SlotsSet({"account_id": "A-1"}),
        ]
        for ev in queued:
            s.record_nowait(ev)
        assert s.state.seq == 7
        assert [t.seq for t in s.state.turns] == [2, 3, 4]
        note = vs.Note("supervisor: careful", agent="supervisor")
        if how == "direct":
            note_seq = any_store.append(cid, note)
        else:  # from another thread, while the loop is not running the drain
            out: list[int] = []
            worker = threading.Thread(target=lambda: out.append(any_store.append(cid, note)))
            worker.start()
            worker.join(30)
            [note_seq] = out
        assert note_seq == 3  # the queued batch was not stored yet: the note took seq 3
        await s.aflush()

        log = _assert_gapless_and_chained(any_store, cid)
        assert [e.id for e in log[2:]] == [note.id, *[ev.id for ev in queued]]
        loaded = any_store.load(cid)
        st = s.state
        assert (st.seq, st.chain) == (loaded.seq, loaded.chain) == (8, log[-1].chain)
        assert [(n.seq, n.text) for n in st.notes] == [(3, "supervisor: careful")]
        assert [(n.seq, n.text) for n in loaded.notes] == [(3, "supervisor: careful")]
        assert [(t.seq, t.text, t.heard) for t in st.turns] == [(t.seq, t.text, t.heard) for t in loaded.turns]
        assert [(t.seq, t.text) for t in st.turns] == [
            (2, "before"),
            (4, "queued 1"),
            (5, "Let me check your account and the invoices"),
        ]
        assert st.turns[2].interrupted and st.turns[2].heard == "Let me check"
        assert st.tools["t1"].seq == loaded.tools["t1"].seq == 7
        assert dict(st.slots) == dict(loaded.slots) == {"account_id": "A-1"}
        # every stored event decodes with its own seq
        assert [decode_event(e.data, e.seq, e.chain).seq for e in log] == list(range(1, 9))
        # and the owner goes on writing after the race
        assert await s.arecord(vs.UserSpoke("after")) == 9
        _assert_gapless_and_chained(any_store, cid)

    asyncio.run(go())


def test_record_nowait_racing_notes_from_a_worker_thread(any_store: vs.Store) -> None:
    """Real interleaving: notes appended via asyncio.to_thread while bursts drain.

    Run on five fresh calls: with a backend whose async twins suspend (SQLite),
    queued events, in-flight appends and catch-ups interleave differently each time.
    """

    async def one(cid: str) -> None:
        s = await any_store.aopen(cid, agent="triage")
        mine: list[str] = []
        notes: list[str] = []
        for round_ in range(5):
            mine += [s.record_nowait(vs.UserSpoke(f"r{round_} u{i}")) for i in range(3)]
            note = vs.Note(f"note {round_}", agent="supervisor")
            notes.append(note.id)
            await asyncio.to_thread(any_store.append, cid, note)
        await s.aflush()
        log = _assert_gapless_and_chained(any_store, cid)
        ids = [e.id for e in log[1:]]
        assert sorted(ids) == sorted(mine + notes)
        assert [i for i in ids if i in set(mine)] == mine  # the owner's events in the order recorded
        loaded = any_store.load(cid)
        await s.arefresh()  # a note that landed after the last flush is seen at refresh
        assert (s.state.seq, s.state.chain) == (loaded.seq, loaded.chain) == (21, log[-1].chain)
        assert [(t.seq, t.text) for t in s.state.turns] == [(t.seq, t.text) for t in loaded.turns]
        assert [(n.seq, n.text) for n in s.state.notes] == [(n.seq, n.text) for n in loaded.notes]

    async def go() -> None:
        for k in range(5):
            await one(f"nowait-race-many-{k}")

    asyncio.run(go())


@pytest.mark.parametrize("conflict", [False, True])
def test_record_nowait_while_the_drain_is_in_flight(tmp_path: Path, conflict: bool) -> None:
    """The point of record_nowait: keep recording while earlier events are being written."""
    store = vs.open_store(f"sqlite:///{tmp_path / 'inflight.db'}", signing_keys=KEYS)
    cid = "nowait-inflight"

    async def go() -> None:
        s = await store.aopen(cid, agent="triage")
        a = s.record_nowait(vs.UserSpoke("A"))
        note = vs.Note("from outside")
        if conflict:
            store.append(cid, note)
        # Another writer holds SQLite's lock: the drain's append cannot run inline on the loop, so
        # it waits in the backend's worker thread, and the session keeps recording meanwhile.
        other = sqlite3.connect(tmp_path / "inflight.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        for _ in range(1000):  # until the background drain is writing
            if s._busy:
                break
            await asyncio.sleep(0)
        assert s._busy
        b = s.record_nowait(vs.UserSpoke("B"))
        other.execute("COMMIT")
        other.close()
        await s.aflush()
        assert s._queue == []
        log = _assert_gapless_and_chained(store, cid)
        assert [e.id for e in log[1:]] == ([note.id] if conflict else []) + [a, b]
        loaded = store.load(cid)
        assert (s.state.seq, s.state.chain) == (loaded.seq, loaded.chain)
        assert [(t.seq, t.text) for t in s.state.turns] == [(t.seq, t.text) for t in loaded.turns]
        assert _texts(loaded) == ["A", "B"]

    try:
        asyncio.run(go())
    finally:
        store.close()


def test_arecord_after_record_nowait_keeps_the_order(any_store: vs.Store) -> None:
    cid = "nowait-then-arecord"

    async def go() -> None:
        s = await any_store.aopen(cid, agent="triage")
        a = s.record_nowait(vs.UserSpoke("first"))
        b = s.record_nowait(vs.UserSpoke("second"))
        c = vs.UserSpoke("third, awaited")
        assert await s.arecord(c) == 4  # acknowledged behind the queued ones
        assert [e.id for e in _deciding_log(any_store, cid)[1:]] == [a, b, c.id]
        assert s._queue == []
        assert any_store.load(cid) == s.state

    asyncio.run(go())


# --- 3. a failure while events are queued --------------------------------------------------


@pytest.fixture
def tiered_store(tmp_path: Path) -> Iterator[vs.Store]:
    store = vs.open_store(_memory_url(), f"sqlite:///{tmp_path / 'decide.db'}", signing_keys=KEYS)
    try:
        yield store
    finally:
        store.close()


@pytest.mark.parametrize("first", ["arecord", "aflush", "ahandoff"])
def test_queued_events_are_fenced_when_the_call_changes_hands(tiered_store: vs.Store, first: str) -> None:
    store = tiered_store
    cid = f"fenced-{first}"

    async def go() -> None:
        s = await store.aopen(cid, agent="triage")
        await s.arecord(vs.UserSpoke("I was charged twice"))
        packet = await s.ahandoff(to="billing")
        queued = [vs.UserSpoke("are you there?"), vs.Note("queued zombie note")]
        ids = {s.record_nowait(ev) for ev in queued}
        # billing redeems before the queued events are flushed
        b = store.resume(packet, agent="billing")
        assert b.epoch == 2

        calls: dict[str, Any] = {
            "arecord": lambda: s.arecord(vs.Note("zombie arecord")),
            "aflush": lambda: s.aflush(),
            "ahandoff": lambda: s.ahandoff(to="sales"),
        }
        if first == "aflush":  # a barrier, not an owner write: it does not raise
            await calls[first]()
        else:
            with pytest.raises(vs.FencedError):
                await calls[first]()
        # Fenced: read-only, the queued events listed as discarded (not silently dropped), and
        # the local state is the store's: nothing refused stays visible.
        assert s.fenced
        assert {ev.id for ev in s.discarded} == ids
        assert not s._queue
        assert s.state == store.load(cid)
        assert not any(t.text == "are you there?" for t in s.state.turns)
        for name in ("arecord", "ahandoff"):  # every owner write keeps failing
            with pytest.raises(vs.FencedError):
                await calls[name]()
        await s.aflush()  # a barrier has nothing left to store: it does not raise

        st = store.load(cid)
        assert (st.owner, st.epoch) == ("billing", 2)
        assert _ids_in_any_tier(store, cid, ids) == {}
        for tier in store.tiers.all:
            assert not any(b"zombie" in e.data for e in tier.backend.load(cid)), tier.url
        _assert_gapless_and_chained(store, cid)
        assert not s.owner

    asyncio.run(go())


# --- 4. mixing sync and async writes of one session -------------------------------------------


def test_sync_record_while_nowait_drain_is_in_flight(mem_store: vs.Store) -> None:
    cid = "mix-nowait"

    async def go() -> None:
        s = await mem_store.aopen(cid, agent="triage")
        s.record_nowait(vs.UserSpoke("queued"))
        with pytest.raises(vs.VoiceStateError, match="arecord"):
            s.record(vs.UserSpoke("sync while async is in flight"))
        with pytest.raises(vs.VoiceStateError, match="aflush"):
            s.flush()
        await s.aflush()
        assert _texts(mem_store.load(cid)) == ["queued"]
        assert s.record(vs.UserSpoke("now fine")) == 3  # nothing in flight any more

    asyncio.run(go())


def test_sync_record_while_arecord_is_in_flight(tmp_path: Path) -> None:
    # Another writer holds SQLite's lock, so the async append waits in the backend's worker
    # thread: the arecord really is pending.
    store = vs.open_store(f"sqlite:///{tmp_path / 'mix.db'}", signing_keys=KEYS)
    cid = "mix-arecord"

    async def go() -> None:
        s = await store.aopen(cid, agent="triage")
        other = sqlite3.connect(tmp_path / "mix.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(s.arecord(vs.UserSpoke("async one")))
        await asyncio.sleep(0)
        assert not task.done()
        with pytest.raises(vs.VoiceStateError) as err:
            s.record(vs.UserSpoke("sync one"))
        assert "arecord" in str(err.value)
        assert not isinstance(err.value, vs.FencedError)
        other.execute("COMMIT")
        other.close()
        assert await task == 2
        assert _texts(store.load(cid)) == ["async one"]

    try:
        asyncio.run(go())
    finally:
        store.close()


# --- 5. aopen / aresume: awaitable and async context managers -----------------------------------


def test_aopen_and_aresume_are_awaitable_and_context_managers(mem_store: vs.Store) -> None:
    async def go() -> None:
        s = await mem_store.aopen("ctx-await", agent="triage")
        assert isinstance(s, vs.Session)
        assert (s.state.owner, s.epoch) == ("triage", 1)

        opening = mem_store.aopen("ctx-with", agent="triage")
        assert isinstance(opening, vs.Opening)
        async with opening as s2:
            assert isinstance(s2, vs.Session)
            s2.record_nowait(vs.UserSpoke("queued inside the block"))
            packet = await s2.ahandoff(to="billing")
            s2.record_nowait(vs.UserSpoke("still holding"))
        # leaving flushed the queue but did not end the call
        st = mem_store.load("ctx-with")
        assert _texts(st) == ["queued inside the block", "still holding"]
        assert (st.status, st.owner) == ("active", "triage")
        assert st == s2.state

        async with mem_store.aresume(packet, agent="billing") as b:
            assert (b.state.owner, b.epoch) == ("billing", 2)
            b.record_nowait(vs.AgentSpoke("billing here"))
            back = await b.ahandoff(to="triage", kind="return")
        st = mem_store.load("ctx-with")
        assert (st.status, st.owner, st.epoch) == ("active", "billing", 2)
        assert _texts(st)[-1] == "billing here"

        t = await mem_store.aresume(back.to_token(), agent="triage")
        assert isinstance(t, vs.Session)
        assert (t.state.owner, t.epoch, t.state.status) == ("triage", 3, "active")

    asyncio.run(go())


def test_sync_with_flushes_and_never_ends(mem_store: vs.Store) -> None:
    with mem_store.open("ctx-sync", agent="triage") as s:
        s.record(vs.UserSpoke("hello"))
    st = mem_store.load("ctx-sync")
    assert (st.status, st.owner, st.seq) == ("active", "triage", 2)
    with mem_store.resume("ctx-sync", agent="w", takeover=True, force=True) as w:
        w.record(vs.Note("took over"))
    st = mem_store.load("ctx-sync")
    assert (st.status, st.owner, st.epoch) == ("active", "w", 2)


class _BodyError(Exception):
    pass


def test_exception_inside_async_with_propagates_unchanged(mem_store: vs.Store) -> None:
    raised = _BodyError("from the body")

    async def in_block() -> None:
        async with mem_store.aopen("ctx-err", agent="triage") as s:
            s.record_nowait(vs.UserSpoke("queued before the error"))
            raise raised

    async def in_fenced_block(packet: vs.HandoffPacket) -> None:
        async with mem_store.aresume(packet, agent="billing") as b:
            b.record_nowait(vs.Note("billing queued"))
            mem_store.resume("ctx-err-fenced", agent="rescuer", takeover=True, force=True)
            raise raised

    async def go() -> None:
        with pytest.raises(_BodyError) as err:
            await in_block()
        assert err.value is raised
        st = mem_store.load("ctx-err")
        assert (st.status, st.owner) == ("active", "triage")
        assert _texts(st) == ["queued before the error"]  # leaving still flushed

        # even when the flush on the way out fails (fenced), the body's error is the one seen
        s2 = await mem_store.aopen("ctx-err-fenced", agent="triage")
        packet = await s2.ahandoff(to="billing")
        with pytest.raises(_BodyError) as err2:
            await in_fenced_block(packet)
        assert err2.value is raised
        assert mem_store.load("ctx-err-fenced").owner == "rescuer"
        assert not any(b"billing queued" in e.data for e in _deciding_log(mem_store, "ctx-err-fenced"))

    asyncio.run(go())


def test_exception_inside_sync_with_propagates_unchanged(mem_store: vs.Store) -> None:
    raised = _BodyError("sync body")

    def in_block() -> None:
        with mem_store.open("ctx-err-sync", agent="triage") as s:
            s.record(vs.UserSpoke("hi"))
            raise raised

    with pytest.raises(_BodyError) as err:
        in_block()
    assert err.value is raised
    st = mem_store.load("ctx-err-sync")
    assert (st.status, st.owner, st.seq) == ("active", "triage", 2)


# --- 6. context("openai") ---------------------------------------------------------------------

FULL = "Let me pull up your invoices and check both charges for you."
HEARD = "Let me pull up"
UNHEARD = "your invoices and check both charges"


def _conversation(store: vs.Store, cid: str) -> vs.Session:
    s = store.open(cid, agent="triage")
    s.record(vs.UserSpoke("I was charged twice"))
    turn = s.record(vs.AgentSpoke(FULL))
    s.record(vs.Interrupted(turn=turn, heard=HEARD, heard_ms=910))
    s.record(vs.UserSpoke("It's account A-77."))
    s.record(vs.SlotsSet({"account_id": "A-77"}))
    s.record(vs.SlotsSet({"pin_hint": "triage-private-7781"}, scope="agent:triage"))
    s.record(vs.ToolCalled("t0", "verify_caller", {"account": "A-77"}))
    s.record(vs.ToolReturned("t0", {"verified": True}))
    s.record(vs.ToolCalled("t2", "refund_preview", {"account": "A-77"}))
    s.record(vs.ToolReturned("t2", None, error="service down"))
    s.record(vs.ToolCalled("t3", "send_sms", {"to": "+1"}))
    s.record(vs.ToolCancelled("t3", reason="caller declined"))
    s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))  # stays pending
    s.record(vs.UserSpoke("Okay, go ahead."))
    return s


def _check_tool_pairs(messages: list[dict[str, Any]]) -> list[str]:
    """Every assistant tool call is answered by the very next tool message; returns the ids."""
    ids = []
    for i, m in enumerate(messages):
        for tc in m.get("tool_calls") or []:
            nxt = messages[i + 1]
            assert nxt["role"] == "tool" and nxt["tool_call_id"] == tc["id"], (tc, nxt)
            ids.append(tc["id"])
    answered = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert sorted(answered) == sorted(ids)
    return ids


def _spoken(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (m["role"], m["content"]) for m in messages if m["role"] in ("user", "assistant") and not m.get("tool_calls")
    ]


def test_context_openai_heard_only_by_default(mem_store: vs.Store) -> None:
    s = _conversation(mem_store, "ctx-openai")
    messages = s.context("openai")
    assert messages == s.state.context("openai") == mem_store.load("ctx-openai").context()
    dump = json.dumps(messages)
    assert UNHEARD not in dump
    assert "check both charges" not in dump
    idx = next(i for i, m in enumerate(messages) if m["role"] == "assistant" and m.get("content") == HEARD)
    note = messages[idx + 1]
    assert note["role"] == "system"
    assert "interrupt" in note["content"].lower()
    # the marker is never inside the assistant's own text
    for m in messages:
        if m["role"] == "assistant" and m.get("content"):
            assert "interrupt" not in m["content"].lower()
    assert _spoken(messages) == [
        ("user", "I was charged twice"),
        ("assistant", HEARD),
        ("user", "It's account A-77."),
        ("user", "Okay, go ahead."),
    ]
    ids = _check_tool_pairs(messages)
    assert ids == ["t0", "t2", "t3", "t1"]
    by_id = {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}
    assert json.loads(by_id["t0"]) == {"verified": True}
    assert "pending" in by_id["t1"]
    assert "service down" in by_id["t2"]
    assert "cancelled" in by_id["t3"]
    # summary (default): the call's slots, in a leading system message
    assert messages[0]["role"] == "system"
    assert "A-77" in messages[0]["content"]


def test_context_openai_full_text_when_not_heard_only(mem_store: vs.Store) -> None:
    s = _conversation(mem_store, "ctx-full")
    messages = s.context("openai", vs.ContextPolicy(heard_only=False))
    assert ("assistant", FULL) in _spoken(messages)
    assert ("assistant", HEARD) not in _spoken(messages)


def test_context_policy_switches(mem_store: vs.Store) -> None:
    s = _conversation(mem_store, "ctx-policy")
    default = s.context("openai")

    last = s.context("openai", vs.ContextPolicy(last_turns=1))
    assert _spoken(last) == [("user", "Okay, go ahead.")]
    assert HEARD not in json.dumps(last)
    # a pending tool call must survive any trimming; finished ones before the kept turn go
    assert _check_tool_pairs(last) == ["t1"]

    no_tools = s.context("openai", vs.ContextPolicy(tools=False))
    assert not any(m["role"] == "tool" or m.get("tool_calls") for m in no_tools)
    assert _spoken(no_tools) == _spoken(default)

    assert s.context("openai", vs.ContextPolicy(summary=False)) == default  # no handoff: only facts, and they stay
    no_summary = s.context("openai", vs.ContextPolicy(summary=False, facts=False))
    assert len(no_summary) == len(default) - 1
    assert no_summary == default[1:]
    assert "A-77" not in json.dumps([m for m in no_summary if m["role"] == "system"])

    unmarked = s.context("openai", vs.ContextPolicy(mark_interruptions=False))
    assert len(unmarked) == len(default) - 1
    assert not any(m["role"] == "system" and "interrupt" in m["content"].lower() for m in unmarked)
    assert ("assistant", HEARD) in _spoken(unmarked)  # still heard_only
    assert UNHEARD not in json.dumps(unmarked)


def test_context_handoff_summary_and_private_slots(mem_store: vs.Store) -> None:
    s = _conversation(mem_store, "ctx-private")
    packet = s.handoff(to="billing", summary="Caller was double charged in March")
    assert "double charged in March" not in json.dumps(s.context("openai"))  # the sender's own outgoing summary
    assert "double charged in March" in s.state.context("openai", agent="billing")[0]["content"]
    b = mem_store.resume(packet, agent="billing")
    b.record(vs.SlotsSet({"refund_code": "billing-private-4411"}, scope="agent:billing"))
    assert "triage-private-7781" in json.dumps(
        {k: dict(v) for k, v in b.state.private_slots.items()}
    )  # it is in the state...
    billing_view = json.dumps(b.context("openai"))
    assert "triage-private-7781" not in billing_view  # ... but never in another agent's context
    assert "double charged in March" in billing_view
    assert "billing-private-4411" not in json.dumps(s.refresh().context("openai"))
    for policy in (vs.ContextPolicy(), vs.ContextPolicy(heard_only=False, last_turns=2)):
        dump = json.dumps(mem_store.load("ctx-private").context("openai", policy))
        assert "triage-private-7781" not in dump
        assert "billing-private-4411" not in dump
    assert "double charged" not in json.dumps(b.context("openai", vs.ContextPolicy(summary=False)))


def test_context_unknown_format(mem_store: vs.Store) -> None:
    s = _conversation(mem_store, "ctx-unknown")
    with pytest.raises(vs.ConfigError, match="no-such-format"):
        s.context("no-such-format")
    with pytest.raises(vs.ConfigError):
        mem_store.load("ctx-unknown").context("no-such-format")


# --- 7. bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("call_id", ["", "x" * 129, "{x", "vs1.abc", "a\nb"])
def test_bad_call_ids(mem_store: vs.Store, call_id: str) -> None:
    with pytest.raises(vs.ConfigError):
        mem_store.open(call_id, agent="triage")

    async def go() -> None:
        with pytest.raises(vs.ConfigError):
            await mem_store.aopen(call_id, agent="triage")

    asyncio.run(go())
    assert mem_store.tiers.deciding.backend.get_meta(call_id) is None
    assert mem_store.tiers.deciding.backend.load(call_id) == []
    assert mem_store.tiers.deciding.backend.url.startswith("memory://")
    assert mem_store.tiers.deciding.backend._calls == {}


def test_call_id_limits_are_inclusive(mem_store: vs.Store) -> None:
    assert mem_store.open("x" * 128, agent="triage").state.seq == 1
    assert mem_store.open("y", agent="triage").state.seq == 1


@pytest.mark.parametrize("agent", ["", 123, None, "a\nb"])
def test_bad_agent_names(mem_store: vs.Store, agent: Any) -> None:
    with pytest.raises(vs.ConfigError):
        mem_store.open("agent-check", agent=agent)
    assert mem_store.tiers.deciding.backend.get_meta("agent-check") is None
    s = mem_store.open("agent-check", agent="triage")  # nothing was created before
    with pytest.raises(vs.ConfigError):
        mem_store.resume("agent-check", agent=agent, takeover=True, force=True)
    with pytest.raises(vs.ConfigError):
        s.handoff(to=agent)
    st = mem_store.load("agent-check")
    assert (st.owner, st.epoch, st.seq, st.pending_handoff) == ("triage", 1, 1, None)


def test_bad_handoff_kind_and_ttl(mem_store: vs.Store) -> None:
    s = mem_store.open("handoff-bad", agent="triage")
    with pytest.raises(vs.InvalidEvent):
        s.handoff(to="billing", kind="bogus")
    for ttl in (0, -1, 0.0):
        with pytest.raises(vs.InvalidEvent):
            s.handoff(to="billing", ttl=ttl)

    async def go() -> None:
        with pytest.raises(vs.InvalidEvent):
            await s.ahandoff(to="billing", kind="bogus")
        with pytest.raises(vs.InvalidEvent):
            await s.ahandoff(to="billing", ttl=0)

    asyncio.run(go())
    st = mem_store.load("handoff-bad")
    assert (st.seq, st.pending_handoff, len(st.handoffs)) == (1, None, 0)
    assert s.state.seq == 1


def test_record_needs_events(mem_store: vs.Store) -> None:
    s = mem_store.open("empty-record", agent="triage")
    with pytest.raises(vs.InvalidEvent):
        s.record()
    with pytest.raises(vs.InvalidEvent):
        s.record_nowait()

    async def go() -> None:
        with pytest.raises(vs.InvalidEvent):
            await s.arecord()
        with pytest.raises(vs.InvalidEvent):
            s.record_nowait()
        assert s._queue == []

    asyncio.run(go())
    assert mem_store.load("empty-record").seq == 1


@pytest.mark.parametrize(
    "event",
    [
        vs.OwnerChanged(owner="mallory", epoch=9),
        vs.CallStarted(meta={"x": 1}),
        vs.HandedOff(to_agent="mallory", packet_id="p" * 32, expires_at=9e9),
        vs.HandoffCancelled(packet_id="p" * 32),
    ],
    ids=lambda e: type(e).__name__,
)
def test_reserved_types_cannot_be_recorded(mem_store: vs.Store, event: vs.Event) -> None:
    s = mem_store.open("reserved", agent="triage")
    ok = vs.UserSpoke("would be fine alone")
    with pytest.raises(vs.InvalidEvent):
        s.record(event)
    with pytest.raises(vs.InvalidEvent):
        s.record(ok, event)  # the whole batch is refused

    async def go() -> None:
        with pytest.raises(vs.InvalidEvent):
            await s.arecord(event)
        with pytest.raises(vs.InvalidEvent):
            s.record_nowait(ok, event)
        assert s._queue == []

    asyncio.run(go())
    st = mem_store.load("reserved")
    assert (st.seq, st.owner, st.epoch, st.turns, st.pending_handoff) == (1, "triage", 1, [], None)
    assert s.state.seq == 1


def test_duplicate_ids_in_one_record(mem_store: vs.Store) -> None:
    s = mem_store.open("dup-ids", agent="triage")
    ev = vs.UserSpoke("twice")
    with pytest.raises(vs.InvalidEvent):
        s.record(ev, ev)
    with pytest.raises(vs.InvalidEvent):
        s.record(vs.UserSpoke("a", id="same"), vs.Note("b", id="same"))

    async def go() -> None:
        with pytest.raises(vs.InvalidEvent):
            await s.arecord(ev, ev)
        with pytest.raises(vs.InvalidEvent):
            s.record_nowait(ev, ev)

    asyncio.run(go())
    assert mem_store.load("dup-ids").seq == 1
    assert s.record(ev) == 2


def test_resume_rejects_other_types(mem_store: vs.Store) -> None:
    mem_store.open("typed", agent="triage")
    for bad in (12345, 1.5, ["typed"], None):
        with pytest.raises(TypeError):
            mem_store.resume(bad, agent="billing")  # type: ignore[arg-type]
    assert mem_store.load("typed").owner == "triage"


# --- 8. open_store --------------------------------------------------------------------------------


def test_open_store_reads_voicestate_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mem = _memory_url()
    db = tmp_path / "env.db"
    monkeypatch.setenv("VOICESTATE_STORE", f"  {mem}   sqlite:///{db} ")
    store = vs.open_store(signing_keys=KEYS)
    try:
        assert [t.url for t in store.tiers.all] == [mem, f"sqlite:///{db}"]
        assert store.tiers.deciding.backend.url.startswith("sqlite://")
        assert [t.backend.url.split(":")[0] for t in store.tiers.hot] == ["memory"]
        store.open("env-call", agent="triage").record(vs.UserSpoke("via env"))
    finally:
        store.close()
    other = vs.open_store(f"sqlite:///{db}", signing_keys=KEYS)
    try:
        assert _texts(other.load("env-call")) == ["via env"]
    finally:
        other.close()
    # explicit URLs win over the variable
    explicit = vs.open_store("memory://", signing_keys=KEYS)
    try:
        assert [t.url for t in explicit.tiers.all] == ["memory://"]
    finally:
        explicit.close()


def test_open_store_default_is_in_process_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICESTATE_STORE", raising=False)
    a = vs.open_store(signing_keys=KEYS)
    b = vs.open_store(signing_keys=KEYS)
    try:
        assert len(a.tiers.all) == 1
        assert a.tiers.deciding.backend.url.startswith("memory://")
        assert a.tiers.deciding.url.startswith("memory://")
        a.open("default-call", agent="triage")
        assert a.load("default-call").owner == "triage"
        with pytest.raises(vs.CallNotFound):  # each default store is private
            b.load("default-call")
    finally:
        a.close()
        b.close()


def test_open_store_reads_signing_keys_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICESTATE_SIGNING_KEYS", "envkid:env-secret-0123456789abcdef,old:older-secret-0123456789")
    url = _memory_url()
    with warnings.catch_warnings():
        warnings.simplefilter("error", vs.EphemeralKeyWarning)
        store = vs.open_store(url)
    assert store.keys.current == "envkid"
    assert not store.keys.ephemeral
    assert set(store.keys.keys) == {"envkid", "old"}
    packet = store.open("env-keys", agent="triage").handoff(to="billing")
    assert packet.key_id == "envkid"
    # a store given the same key explicitly verifies the packet
    monkeypatch.delenv("VOICESTATE_SIGNING_KEYS")
    verifier = vs.open_store(url, signing_keys="envkid:env-secret-0123456789abcdef")
    assert verifier.resume(packet.to_json(), agent="billing").epoch == 2
    # and a store with another key does not
    other = vs.open_store(_memory_url(), signing_keys=KEYS)
    with pytest.raises(vs.PacketError):
        vs.HandoffPacket.from_json(packet.to_json(), keys=other.keys)
    # with no keys anywhere, a store says it uses a per-process key
    with pytest.warns(vs.EphemeralKeyWarning):
        eph = vs.open_store(_memory_url())
    assert eph.keys.ephemeral
    # explicit keys win over the variable
    monkeypatch.setenv("VOICESTATE_SIGNING_KEYS", "envkid:env-secret-0123456789abcdef")
    assert vs.open_store(_memory_url(), signing_keys=KEYS).keys.current == "k1"


def test_open_store_packet_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in (0, -1, 0.0, -0.5):
        with pytest.raises(vs.ConfigError):
            vs.open_store(_memory_url(), signing_keys=KEYS, packet_ttl=bad)
    store = vs.open_store(_memory_url(), signing_keys=KEYS, packet_ttl=7.5)
    packet = store.open("ttl", agent="triage").handoff(to="billing")
    assert packet.expires_at - packet.issued_at == pytest.approx(7.5, abs=0.01)


def test_oversized_events_are_refused_and_nothing_is_stored() -> None:
    store = vs.open_store(_memory_url(), signing_keys=KEYS, max_event_bytes=4096)
    s = store.open("big", agent="triage")
    s.record(vs.UserSpoke("fine"))
    before = store.events("big")
    for attempt in (
        lambda: s.record(vs.UserSpoke("x" * 5000)),  # the inline fast path
        lambda: s.record(vs.ToolCalled("t1", "dump", {"blob": "y" * 5000})),
        lambda: store.append("big", vs.Note("z" * 5000)),
    ):
        with pytest.raises(vs.InvalidEvent, match="over this store's limit of 4,096"):
            attempt()
    assert store.events("big") == before
    assert [t.text for t in s.state.turns] == ["fine"]
    with pytest.raises(vs.ConfigError, match="max_event_bytes"):
        vs.open_store(_memory_url(), signing_keys=KEYS, max_event_bytes=10)


def test_a_talking_async_session_sends_no_background_renewals() -> None:
    """An owner append renews the lease: the background heartbeat waits a third of a lease
    after the last renewal, so a call that keeps talking costs no renewal request, and an
    idle one still renews."""
    store = vs.open_store("memory://", signing_keys=KEYS, lease=0.6)  # a renewal due every 0.2 s
    backend = store.tiers.deciding.backend
    renewals: list[float] = []
    real = backend.arenew

    async def counting(*args: Any) -> Any:
        renewals.append(asyncio.get_running_loop().time())
        return await real(*args)

    backend.arenew = counting  # a spy on the real backend

    async def go() -> None:
        async with store.aopen("talking", agent="triage") as s:
            for i in range(20):  # 1 s of appends every 50 ms: never a third of a lease apart
                await s.arecord(vs.Note(f"turn {i}"))
                await asyncio.sleep(0.05)
            assert renewals == []
            await asyncio.sleep(0.9)  # idle: renewed in the background, about every 0.2 s
            assert 2 <= len(renewals) <= 6
        # the lease held throughout: nobody could take the call over while it talked
        meta = backend.get_meta("talking")
        assert meta is not None and meta.owner == "triage" and meta.epoch == 1

    asyncio.run(go())
    store.close()


def test_outside_appends_skip_the_metadata_read_and_survive_a_stale_one() -> None:
    """store.append remembers the metadata its last append left: the next one is one
    backend request, and when another writer moved the call meanwhile, the conflict brings
    the current metadata and the append goes through (stored once, in order)."""
    store = vs.open_store("memory://", signing_keys=KEYS)
    backend = store.tiers.deciding.backend
    reads: list[str] = []
    real = backend.get_meta

    def counting(call_id: str) -> Any:
        reads.append(call_id)
        return real(call_id)

    backend.get_meta = counting  # a spy on the real backend
    s = store.open("c1", agent="triage")
    reads.clear()
    store.append("c1", vs.Note("first"))  # unknown to this store yet: one read
    assert reads == ["c1"]
    store.append("c1", vs.Note("second"))
    store.append("c1", vs.Note("third"))
    assert reads == ["c1"]  # no read before the later appends
    s.record(vs.UserSpoke("the owner speaks in between"))
    seq = store.append("c1", vs.Note("after the owner"))  # stale: a conflict, then stored
    texts = [getattr(e, "text", None) for e in store.events("c1")]
    assert texts[-5:] == ["first", "second", "third", "the owner speaks in between", "after the owner"]
    assert seq == len(texts)
    store.delete("c1")
    with pytest.raises(vs.CallNotFound):
        store.append("c1", vs.Note("to a deleted call"))
    store.close()
