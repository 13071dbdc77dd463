"""CallState: the fold of the log. Live fold == fold of the stored bytes, immutable
snapshots, the semantics of each event, and O(1) amortized folding."""

from __future__ import annotations

import asyncio
import copy
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from conftest import memory_url
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import voicestate as vs
from voicestate._codec import genesis
from voicestate._state import Folder

KEYS = "t1:test-fold-secret-0123456789"


def plain(st_: vs.CallState) -> dict[str, Any]:
    """A CallState as plain, deep-copied data (so later changes cannot leak in)."""
    return copy.deepcopy(
        {
            "call_id": st_.call_id,
            "tenant": st_.tenant,
            "owner": st_.owner,
            "epoch": st_.epoch,
            "seq": st_.seq,
            "status": st_.status,
            "chain": st_.chain,
            "meta": dict(st_.meta),
            "turns": [(t.seq, t.role, t.agent, t.text, t.heard, t.interrupted, t.heard_ms, t.at) for t in st_.turns],
            "n_turns": len(st_.turns),
            "tools": {
                cid: (t.call_id, t.name, dict(t.arguments), t.status, t.result, t.error, t.agent, t.seq)
                for cid, t in st_.tools.items()
            },
            "pending_tools": [t.call_id for t in st_.pending_tools()],
            "slots": dict(st_.slots),
            "private_slots": {k: dict(v) for k, v in st_.private_slots.items()},
            "notes": [(n.text, n.agent, n.seq, n.id) for n in st_.notes],
            "handoffs": [(h.packet_id, h.to_agent, h.kind, h.agent, h.seq) for h in st_.handoffs],
            "pending_handoff": None if st_.pending_handoff is None else st_.pending_handoff.packet_id,
            "ended_reason": st_.ended_reason,
        }
    )


# --- 1. the live fold equals the fold of the stored bytes: hypothesis -------------------------

SMALL_TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=16)
SMALL_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | SMALL_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SMALL_TEXT, inner, max_size=3),
    max_leaves=6,
)
SLOT_KEYS = st.sampled_from(["account", "intent", "verified", "lang", "amount"])
SLOT_VALUE = st.none() | st.integers(-5, 5) | SMALL_TEXT | st.lists(st.integers(0, 3), max_size=2) | st.booleans()
SCOPES = st.sampled_from(["call", "call", "agent:triage", "agent:billing", "agent:sales"])
AGENTS = st.sampled_from(["billing", "sales", "human", "triage"])
OPS = st.sampled_from(
    [
        "user",
        "user",
        "agent",
        "agent",
        "interrupt",
        "agent+interrupt",
        "tool_call",
        "tool_return",
        "tool_cancel",
        "slots",
        "note",
        "handoff",
        "cancel",
        "redeem",
        "takeover",
    ]
)


@attrs.define
class Model:
    """What the call should look like, computed independently of the library's fold."""

    owner: str
    epoch: int = 1
    turns: list[dict[str, Any]] = attrs.Factory(list)
    agent_turns: list[tuple[int, vs.AgentSpoke]] = attrs.Factory(list)  # (turn index, event)
    tools: dict[str, dict[str, Any]] = attrs.Factory(dict)
    slots: dict[str, Any] = attrs.Factory(dict)
    private: dict[str, dict[str, Any]] = attrs.Factory(dict)
    notes: list[str] = attrs.Factory(list)
    handoffs: list[str] = attrs.Factory(list)
    pending: vs.HandoffPacket | None = None
    status: str = "active"

    def merge(self, values: dict[str, Any], scope: str) -> None:
        target = self.slots if scope == "call" else self.private.setdefault(scope[6:], {})
        for k, v in values.items():
            if v is None:
                target.pop(k, None)
            else:
                target[k] = v

    def result(self, cid: str, status: str, result: Any = None, error: str | None = None) -> None:
        tool = self.tools[cid]
        if tool["status"] == "pending":
            tool.update(status=status, result=result, error=error)

    def check(self, p: dict[str, Any]) -> None:
        got_turns = [
            {k: t[i] for i, k in enumerate(["seq", "role", "agent", "text", "heard", "interrupted", "heard_ms"])}
            for t in p["turns"]
        ]
        assert got_turns == self.turns
        assert {cid: (t[1], t[2], t[3], t[4], t[5]) for cid, t in p["tools"].items()} == {
            cid: (t["name"], t["arguments"], t["status"], t["result"], t["error"]) for cid, t in self.tools.items()
        }
        assert p["pending_tools"] == [cid for cid, t in self.tools.items() if t["status"] == "pending"]
        assert p["slots"] == self.slots
        assert {k: v for k, v in p["private_slots"].items() if v} == {k: v for k, v in self.private.items() if v}
        assert [n[0] for n in p["notes"]] == self.notes
        assert [h[0] for h in p["handoffs"]] == self.handoffs
        assert p["pending_handoff"] == (None if self.pending is None else self.pending.packet_id)
        assert (p["owner"], p["epoch"], p["status"]) == (
            self.owner if self.status == "active" else None,
            self.epoch,
            self.status,
        )


def _run_ops(data: st.DataObject, store: vs.Store, cid: str) -> tuple[vs.Session, Model]:
    s = store.open(cid, agent="triage", meta=data.draw(st.dictionaries(SMALL_TEXT, SMALL_JSON, max_size=3)))
    m = Model(owner="triage")
    n_tools = 0
    for _ in range(data.draw(st.integers(1, 25))):
        op = data.draw(OPS)
        if op == "user":
            text, final = data.draw(SMALL_TEXT), data.draw(st.booleans())
            ev = vs.UserSpoke(text, final=final, confidence=data.draw(st.none() | st.floats(0, 1)))
            seq = s.record(ev)
            if final:
                m.turns.append(_turn(seq, "user", s.agent, text))
        elif op == "agent":
            ev = vs.AgentSpoke(data.draw(SMALL_TEXT))
            seq = s.record(ev)
            m.agent_turns.append((len(m.turns), ev))
            m.turns.append(_turn(seq, "agent", s.agent, ev.text))
        elif op == "interrupt":
            open_turns = [(i, ev) for i, ev in m.agent_turns if not m.turns[i]["interrupted"]]
            if not open_turns:
                continue
            idx, agent_ev = data.draw(st.sampled_from(open_turns))
            kinds = ["seq", "id", "object"] + (["none"] if idx == m.agent_turns[-1][0] else [])
            ref: Any = {
                "seq": m.turns[idx]["seq"],
                "id": agent_ev.id,
                "object": agent_ev,
                "none": None,
            }[data.draw(st.sampled_from(kinds))]
            heard = agent_ev.text[: data.draw(st.integers(0, len(agent_ev.text)))]
            heard_ms = data.draw(st.none() | st.integers(0, 60_000))
            s.record(vs.Interrupted(turn=ref, heard=heard, heard_ms=heard_ms))
            m.turns[idx].update(heard=heard, interrupted=True, heard_ms=heard_ms)
        elif op == "agent+interrupt":
            agent_ev = vs.AgentSpoke(data.draw(SMALL_TEXT))
            ref = data.draw(st.sampled_from([agent_ev, None]))
            heard = agent_ev.text[:1]
            seq = s.record(agent_ev, vs.Interrupted(turn=ref, heard=heard, heard_ms=5))
            m.agent_turns.append((len(m.turns), agent_ev))
            m.turns.append(_turn(seq - 1, "agent", s.agent, agent_ev.text) | {"heard": heard, "interrupted": True})
            m.turns[-1]["heard_ms"] = 5
        elif op == "tool_call":
            n_tools += 1
            cid_ = f"tool-{n_tools}"
            name = data.draw(SMALL_TEXT)
            args = data.draw(st.dictionaries(SMALL_TEXT, SMALL_JSON, max_size=3))
            s.record(vs.ToolCalled(cid_, name, args))
            m.tools[cid_] = {"name": name, "arguments": args, "status": "pending", "result": None, "error": None}
        elif op in ("tool_return", "tool_cancel"):
            if not m.tools:
                continue
            cid_ = data.draw(st.sampled_from(sorted(m.tools)))
            if op == "tool_return":
                error = data.draw(st.none() | SMALL_TEXT)
                result = data.draw(SMALL_JSON)
                ev2: vs.Event = vs.ToolReturned(cid_, result, error)
                m.result(cid_, "error" if error is not None else "ok", result, error)
            else:
                reason = data.draw(st.none() | SMALL_TEXT)
                ev2 = vs.ToolCancelled(cid_, reason)
                m.result(cid_, "cancelled", None, reason)
            if data.draw(st.booleans()):
                s.record(ev2)
            else:  # a late result from another process
                store.append(cid, attrs.evolve(ev2, agent="worker"))
        elif op == "slots":
            values = data.draw(st.dictionaries(SLOT_KEYS, SLOT_VALUE, min_size=1, max_size=3))
            scope = data.draw(SCOPES)
            s.record(vs.SlotsSet(values, scope=scope))
            m.merge(values, scope)
        elif op == "note":
            text = data.draw(SMALL_TEXT)
            if data.draw(st.booleans()):
                s.record(vs.Note(text))
            else:
                store.append(cid, vs.Note(text, agent="supervisor"))
            m.notes.append(text)
        elif op == "handoff":
            to = data.draw(AGENTS.filter(lambda a, s=s: a != s.agent))
            kind = data.draw(st.sampled_from(["transfer", "escalate", "persona", "return"]))
            m.pending = s.handoff(to=to, kind=kind, reason=data.draw(st.none() | SMALL_TEXT))
            m.handoffs.append(m.pending.packet_id)
        elif op == "cancel":
            assert s.cancel_handoff() is (m.pending is not None)
            m.pending = None
        elif op == "redeem":
            if m.pending is None:
                continue
            target: Any = data.draw(st.sampled_from([cid, m.pending, m.pending.to_json(), m.pending.to_token()]))
            s = store.resume(target, agent=m.pending.to_agent)
            m.owner, m.epoch, m.pending = s.agent, m.epoch + 1, None
        elif op == "takeover":
            s = store.resume(cid, agent=data.draw(AGENTS), takeover=True, force=True)
            m.owner, m.epoch, m.pending = s.agent, m.epoch + 1, None
    if data.draw(st.booleans()):
        s.end(data.draw(st.none() | SMALL_TEXT))
        m.status, m.pending = "ended", None
    return s, m


def _turn(seq: int, role: str, agent: str, text: str) -> dict[str, Any]:
    return {
        "seq": seq,
        "role": role,
        "agent": agent,
        "text": text,
        "heard": None,
        "interrupted": False,
        "heard_ms": None,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_live_fold_equals_fold_of_stored_bytes(data: st.DataObject) -> None:
    store = vs.open_store(memory_url(), signing_keys=KEYS)
    try:
        cid = "call-prop"
        s, model = _run_ops(data, store, cid)
        s.refresh()  # fold in late non-owner writes
        live = plain(s.state)
        loaded = store.load(cid)
        assert live == plain(loaded)
        assert plain(store.load(cid)) == plain(loaded)  # deterministic
        assert s.state == loaded  # same call, seq and chain head
        events = store.events(cid)
        assert live["seq"] == len(events) and [e.seq for e in events] == list(range(1, len(events) + 1))
        model.check(live)
        # a second process-like reader: a fresh Folder over the decoded events
        folder = Folder(cid, genesis(cid))
        for ev in events:
            assert ev.seq is not None and ev.chain is not None
            folder.apply(ev, ev.seq, ev.chain, ev.agent)
        assert plain(folder.snapshot()) == live
    finally:
        store.close()


# --- 2. snapshots are immutable ----------------------------------------------------------


def test_snapshots_never_change(store: vs.Store) -> None:
    s = store.open("c", agent="triage", meta={"channel": "sip"})
    taken: list[tuple[vs.CallState, dict[str, Any]]] = []

    def rec(*events: vs.Event) -> int:
        seq = s.record(*events)
        snap = s.state
        taken.append((snap, plain(snap)))
        return seq

    rec(vs.UserSpoke("I was charged twice"))
    t1 = rec(vs.AgentSpoke("Let me pull up your invoices and"))
    rec(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}), vs.ToolCalled("t2", "refund", {}))
    rec(vs.SlotsSet({"a": 1, "b": [1, 2]}), vs.SlotsSet({"p": 1}, scope="agent:triage"))
    rec(vs.Note("first note"))
    old = s.state
    before = plain(old)

    rec(vs.Interrupted(turn=t1, heard="Let me pull up", heard_ms=910))
    rec(vs.ToolReturned("t1", {"invoices": 2}))
    rec(vs.ToolCancelled("t2", "caller hung up"))
    rec(vs.SlotsSet({"a": None, "b": [3], "c": 4}))
    rec(vs.SlotsSet({"p": None, "q": 2}, scope="agent:triage"), vs.SlotsSet({"z": 1}, scope="agent:billing"))
    t2 = rec(vs.AgentSpoke("I found two charges"))
    rec(vs.UserSpoke("refund one"), vs.Note("second note"), vs.Interrupted(turn=None, heard="I found"))
    packet = s.handoff(to="billing")
    taken.append((s.state, plain(s.state)))

    assert plain(old) == before
    assert len(old.turns) == 2 and not old.turns[1].interrupted and old.turns[1].heard is None
    with pytest.raises(IndexError):
        old.turns[2]
    assert [t.text for t in old.turns[-2:]] == ["I was charged twice", "Let me pull up your invoices and"]
    assert {k: t.status for k, t in old.tools.items()} == {"t1": "pending", "t2": "pending"}
    assert [t.call_id for t in old.pending_tools()] == ["t1", "t2"]
    assert dict(old.slots) == {"a": 1, "b": [1, 2]}
    assert {k: dict(v) for k, v in old.private_slots.items()} == {"triage": {"p": 1}}
    assert [n.text for n in old.notes] == ["first note"]
    assert list(old.handoffs) == [] and old.pending_handoff is None

    new = s.state
    assert new.turns[1].interrupted and new.turns[1].heard == "Let me pull up" and new.turns[1].heard_ms == 910
    assert new.turns[-2].seq == t2 and new.turns[-2].heard == "I found"
    assert {k: t.status for k, t in new.tools.items()} == {"t1": "ok", "t2": "cancelled"}
    assert new.pending_tools() == []
    assert dict(new.slots) == {"b": [3], "c": 4}
    assert {k: dict(v) for k, v in new.private_slots.items()} == {"triage": {"q": 2}, "billing": {"z": 1}}
    assert [n.text for n in new.notes] == ["first note", "second note"]
    assert new.pending_handoff is not None and new.pending_handoff.packet_id == packet.packet_id

    # every snapshot taken along the way still shows what it showed then
    for snap, seen in taken:
        assert plain(snap) == seen
    assert plain(new) == plain(store.load("c"))


def test_snapshots_survive_redemption_and_end(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    s.record(vs.AgentSpoke("hello"))
    packet = s.handoff(to="billing")
    pending_snap = s.state
    seen = plain(pending_snap)
    b = store.resume(packet, agent="billing")
    b.record(vs.Interrupted(turn=None, heard="hel"), vs.SlotsSet({"x": 1}))
    b.end("resolved")
    s.refresh()
    assert plain(pending_snap) == seen
    assert pending_snap.pending_handoff is not None and pending_snap.owner == "triage"
    assert pending_snap.status == "active"
    assert (s.state.owner, s.state.status, s.state.pending_handoff) == (None, "ended", None)


def test_snapshots_survive_a_rollback_of_queued_events(store: vs.Store) -> None:
    async def go() -> None:
        s = await store.aopen("c", agent="triage")
        t = await s.arecord(vs.AgentSpoke("hello there"))
        s.record_nowait(vs.UserSpoke("queued one"), vs.Interrupted(turn=t, heard="hello"))
        snap1 = s.state
        seen1 = plain(snap1)
        store.append("c", vs.Note("supervisor", agent="sup"))  # the queued events must move
        s.record_nowait(vs.SlotsSet({"k": 1}))
        snap2 = s.state
        seen2 = plain(snap2)
        await s.aflush()
        assert plain(snap1) == seen1 and plain(snap2) == seen2
        final = s.state
        assert [n.text for n in final.notes] == ["supervisor"]
        assert [tt.text for tt in final.turns] == ["hello there", "queued one"]
        assert final.turns[0].interrupted and dict(final.slots) == {"k": 1}
        assert plain(final) == plain(await store.aload("c"))

    asyncio.run(go())


def test_callstate_attributes_cannot_be_set_or_deleted(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    s.record(vs.UserSpoke("hi"), vs.ToolCalled("t1", "f", {}))
    st_ = s.state
    for name in ("owner", "epoch", "seq", "status", "turns", "slots", "pending_handoff", "brand_new"):
        with pytest.raises(AttributeError):
            setattr(st_, name, None)
    for name in ("owner", "turns", "slots"):
        with pytest.raises(AttributeError):
            delattr(st_, name)
    with pytest.raises(AttributeError):
        st_.turns[0].text = "changed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        st_.tools["t1"].status = "ok"  # type: ignore[misc]
    assert st_.owner == "triage" and st_.turns[0].text == "hi"


def _try(action: Callable[[], object]) -> None:
    try:
        action()
    except (TypeError, AttributeError):
        pass  # read-only: as good as isolated


def test_changing_a_snapshots_containers_does_not_reach_the_call(store: vs.Store) -> None:
    s = store.open("c", agent="triage", meta={"channel": "sip"})
    s.record(vs.SlotsSet({"a": 1}), vs.SlotsSet({"p": 1}, scope="agent:triage"))
    s.record(vs.ToolCalled("t1", "f", {"q": 1}))
    st_ = s.state
    _try(lambda: st_.slots.__setitem__("injected", 1))  # type: ignore[index]
    _try(lambda: st_.private_slots["triage"].__setitem__("injected", 1))  # type: ignore[index]
    _try(lambda: st_.private_slots.__setitem__("intruder", {"x": 1}))  # type: ignore[index]
    _try(lambda: st_.meta.__setitem__("injected", 1))  # type: ignore[index]
    _try(lambda: st_.tools["t1"].arguments.__setitem__("injected", 1))  # type: ignore[index]
    s.record(vs.SlotsSet({"b": 2}), vs.SlotsSet({"r": 2}, scope="agent:triage"))
    now = s.state
    seen = (
        dict(now.slots),
        {k: dict(v) for k, v in now.private_slots.items()},
        dict(now.meta),
        dict(now.tools["t1"].arguments),
    )
    assert seen == ({"a": 1, "b": 2}, {"triage": {"p": 1, "r": 2}}, {"channel": "sip"}, {"q": 1})
    assert plain(now) == plain(store.load("c"))


def test_state_does_not_alias_the_callers_objects(store: vs.Store) -> None:
    meta = {"channel": "sip", "ids": ["a"]}
    s = store.open("c", agent="triage", meta=meta)
    args = {"account": "A-77", "filters": ["open"]}
    values = {"items": [1, 2], "who": {"name": "Ann"}}
    s.record(vs.ToolCalled("t1", "lookup", args), vs.SlotsSet(values))
    result = {"invoices": [1]}
    s.record(vs.ToolReturned("t1", result))
    # the caller reuses its objects afterwards
    meta["ids"].append("b")
    args["account"] = "B-00"
    args["filters"].append("closed")
    values["items"].append(3)
    values["who"]["name"] = "Bob"
    result["invoices"].append(2)
    st_ = s.state
    seen = (
        dict(st_.meta),
        dict(st_.tools["t1"].arguments),
        st_.tools["t1"].result,
        dict(st_.slots),
    )
    assert seen == (
        {"channel": "sip", "ids": ["a"]},
        {"account": "A-77", "filters": ["open"]},
        {"invoices": [1]},
        {"items": [1, 2], "who": {"name": "Ann"}},
    )
    assert plain(st_) == plain(store.load("c"))


# --- 3. semantics ------------------------------------------------------------------------


def test_turn_fields(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    u = vs.UserSpoke("hello", confidence=0.9, language="en", at=1000.5)
    seq_u = s.record(u)
    seq_a = s.record(vs.AgentSpoke("hi there", at=1001.25))
    for st_ in (s.state, store.load("c")):
        assert list(st_.turns) == [
            vs.Turn(seq_u, "user", "triage", "hello", None, False, None, 1000.5),
            vs.Turn(seq_a, "agent", "triage", "hi there", None, False, None, 1001.25),
        ]


@pytest.mark.parametrize("how", ["seq", "id", "object", "none"])
def test_interrupted_refers_to_a_turn(store: vs.Store, how: str) -> None:
    s = store.open("c", agent="triage")
    first = vs.AgentSpoke("The first answer is long")
    seq1 = s.record(first)
    s.record(vs.UserSpoke("wait"))
    latest = vs.AgentSpoke("The second answer")
    seq2 = s.record(latest)
    target_seq, ref = {
        "seq": (seq1, seq1),
        "id": (seq1, first.id),
        "object": (seq1, first),
        "none": (seq2, None),
    }[how]
    s.record(vs.Interrupted(turn=ref, heard="The", heard_ms=250))
    for st_ in (s.state, store.load("c")):
        by_seq = {t.seq: t for t in st_.turns}
        hit = by_seq[target_seq]
        assert (hit.interrupted, hit.heard, hit.heard_ms) == (True, "The", 250)
        for t in st_.turns:
            if t.seq != target_seq:
                assert (t.interrupted, t.heard, t.heard_ms) == (False, None, None)
        assert [t.text for t in st_.turns] == ["The first answer is long", "wait", "The second answer"]


def test_interrupted_in_the_same_batch_as_its_turn(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    s.record(vs.AgentSpoke("older"))
    a = vs.AgentSpoke("said in one go")
    s.record(a, vs.Interrupted(turn=None, heard="said"))
    b = vs.AgentSpoke("and again")
    s.record(b, vs.Interrupted(turn=b, heard=""))
    for st_ in (s.state, store.load("c")):
        assert [(t.text, t.interrupted, t.heard) for t in st_.turns] == [
            ("older", False, None),
            ("said in one go", True, "said"),
            ("and again", True, ""),
        ]


def test_interrupted_refuses_what_is_not_an_agent_turn(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    user_seq = s.record(vs.UserSpoke("hi"))
    with pytest.raises(vs.InvalidEvent):
        s.record(vs.Interrupted(turn=None, heard="x"))  # no agent turn yet
    with pytest.raises(vs.InvalidEvent):
        s.record(vs.Interrupted(turn=user_seq, heard="x"))
    with pytest.raises(vs.InvalidEvent):
        s.record(vs.Interrupted(turn="no-such-id", heard="x"))
    assert not any(t.interrupted for t in store.load("c").turns)


def test_interim_user_speech_makes_no_turn(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    s.record(vs.UserSpoke("I was char", final=False))
    s.record(vs.UserSpoke("I was charged twice"))
    s.record(vs.UserSpoke("and", final=False))
    for st_ in (s.state, store.load("c")):
        assert [(t.role, t.text) for t in st_.turns] == [("user", "I was charged twice")]
    # interim transcripts are not stored by default: the log holds the final one only
    assert [e.text for e in store.events("c") if isinstance(e, vs.UserSpoke)] == ["I was charged twice"]


def test_interim_user_speech_is_stored_when_asked(tmp_path: Any) -> None:
    store = vs.open_store(f"sqlite:///{tmp_path / 'c.db'}", signing_keys="k1:0123456789abcdef0123", store_interim=True)
    s = store.open("c", agent="triage")
    seq = s.record(vs.UserSpoke("I was char", final=False))
    s.record(vs.UserSpoke("I was charged twice"))
    assert seq == 2
    events = [e for e in store.events("c") if isinstance(e, vs.UserSpoke)]
    assert [(e.text, e.final) for e in events] == [("I was char", False), ("I was charged twice", True)]
    assert [t.text for t in store.load("c").turns] == ["I was charged twice"]
    store.close()


def test_tool_lifecycle_and_first_result_wins(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    s.record(
        vs.ToolCalled("ok", "lookup", {"account": "A-77"}),
        vs.ToolCalled("err", "charge", {"amount": 5}),
        vs.ToolCalled("cancel", "slow", {}),
        vs.ToolCalled("late", "remote", {}),
        vs.ToolCalled("pending", "forever", {"n": [1]}),
    )
    assert [t.call_id for t in s.state.pending_tools()] == ["ok", "err", "cancel", "late", "pending"]
    s.record(vs.ToolReturned("ok", {"invoices": 2}))
    s.record(vs.ToolReturned("ok", {"invoices": 99}))  # too late: the first result wins
    s.record(vs.ToolCancelled("ok", "too late too"))
    s.record(vs.ToolReturned("err", None, "card declined"))
    s.record(vs.ToolReturned("err", {"retry": "fine"}))
    s.record(vs.ToolCancelled("cancel", "caller hung up"))
    s.record(vs.ToolReturned("cancel", "after cancel"))
    store.append("c", vs.ToolReturned("late", [1, 2], agent="old-worker"))
    store.append("c", vs.ToolReturned("late", [3], agent="other-worker"))
    s.refresh()
    for st_ in (s.state, store.load("c")):
        tools = st_.tools
        assert list(tools) == ["ok", "err", "cancel", "late", "pending"]
        assert (tools["ok"].status, tools["ok"].result, tools["ok"].error) == ("ok", {"invoices": 2}, None)
        assert (tools["err"].status, tools["err"].result, tools["err"].error) == ("error", None, "card declined")
        assert tools["cancel"].status == "cancelled" and tools["cancel"].result is None
        assert (tools["late"].status, tools["late"].result) == ("ok", [1, 2])
        assert tools["pending"].status == "pending"
        assert (tools["ok"].name, dict(tools["ok"].arguments), tools["ok"].agent) == (
            "lookup",
            {"account": "A-77"},
            "triage",
        )
        assert [t.call_id for t in st_.pending_tools()] == ["pending"]
        assert len(tools) == 5 and "nope" not in tools
        with pytest.raises(KeyError):
            tools["nope"]


def test_pending_tool_survives_a_handoff(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    seq = s.record(vs.ToolCalled("t1", "lookup", {"a": 1}))
    b = store.resume(s.handoff(to="billing"), agent="billing")
    [pending] = b.state.pending_tools()
    assert (pending.call_id, pending.name, dict(pending.arguments), pending.agent, pending.seq) == (
        "t1",
        "lookup",
        {"a": 1},
        "triage",
        seq,
    )
    b.record(vs.ToolReturned("t1", "done"))
    assert b.state.pending_tools() == [] and store.load("c").tools["t1"].status == "ok"


def test_slots_merge_delete_and_private_scopes(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    s.record(vs.SlotsSet({"account": "A-77", "intent": "refund", "amount": 5}))
    s.record(vs.SlotsSet({"intent": None, "verified": True, "missing": None}))
    s.record(vs.SlotsSet({"note": "mine"}, scope="agent:triage"))
    s.record(vs.SlotsSet({"draft": [1, 2], "note": "billing's"}, scope="agent:billing"))
    s.record(vs.SlotsSet({"draft": None}, scope="agent:billing"))
    s.record(vs.SlotsSet({"amount": {"value": 5, "currency": "EUR"}}))
    for st_ in (s.state, store.load("c")):
        assert dict(st_.slots) == {"account": "A-77", "verified": True, "amount": {"value": 5, "currency": "EUR"}}
        assert dict(st_.private_slots["triage"]) == {"note": "mine"}
        assert dict(st_.private_slots["billing"]) == {"note": "billing's"}
        assert "note" not in st_.slots and "draft" not in st_.slots


def test_pending_handoff_lifecycle(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    assert s.state.pending_handoff is None

    p1 = s.handoff(to="billing", reason="double charge")
    st_ = s.state
    assert st_.pending_handoff is not None
    assert (st_.pending_handoff.packet_id, st_.pending_handoff.to_agent, st_.pending_handoff.reason) == (
        p1.packet_id,
        "billing",
        "double charge",
    )
    p2 = s.handoff(to="sales", kind="escalate")  # replaces the pending one
    assert s.state.pending_handoff is not None and s.state.pending_handoff.packet_id == p2.packet_id
    assert [h.packet_id for h in s.state.handoffs] == [p1.packet_id, p2.packet_id]
    assert store.load("c").pending_handoff.packet_id == p2.packet_id  # type: ignore[union-attr]

    assert s.cancel_handoff() is True  # cleared by cancel
    assert s.state.pending_handoff is None and store.load("c").pending_handoff is None
    assert len(s.state.handoffs) == 2

    p3 = s.handoff(to="billing")
    b = store.resume(p3, agent="billing")  # cleared by redemption
    for st_ in (b.state, store.load("c")):
        assert (st_.pending_handoff, st_.owner, st_.epoch) == (None, "billing", 2)
        assert [h.packet_id for h in st_.handoffs] == [p1.packet_id, p2.packet_id, p3.packet_id]

    b.handoff(to="human", kind="escalate")
    w = store.resume("c", agent="recovery", takeover=True, force=True)  # cleared by a takeover
    assert w.state.pending_handoff is None and store.load("c").pending_handoff is None

    w.handoff(to="billing")
    assert store.load("c").pending_handoff is not None
    store.append("c", vs.CallEnded("caller hung up", agent="telephony"))  # cleared by the end
    w.refresh()
    for st_ in (w.state, store.load("c")):
        assert (st_.pending_handoff, st_.status, st_.owner, st_.ended_reason) == (
            None,
            "ended",
            None,
            "caller hung up",
        )
        assert st_.ended and len(st_.handoffs) == 5


def test_handed_off_events_are_stamped(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    p = s.handoff(to="billing", reason="r", summary="s")
    for st_ in (s.state, store.load("c")):
        [h] = st_.handoffs
        assert (h.seq, h.agent, h.to_agent, h.kind, h.summary) == (p.seq, "triage", "billing", "transfer", "s")
        assert h.chain == st_.chain


def test_notes_from_anyone(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    s.record(vs.Note("from the owner"))
    seq = store.append("c", vs.Note("from a supervisor", agent="sup"))
    s.refresh()
    for st_ in (s.state, store.load("c")):
        assert [(n.text, n.agent) for n in st_.notes] == [("from the owner", "triage"), ("from a supervisor", "sup")]
        assert st_.notes[-1].seq == seq


def test_meta_tenant_and_ownership_fields(store: vs.Store) -> None:
    s = store.open("c", agent="triage", meta={"channel": "sip", "caller": "+331234"})
    for st_ in (s.state, store.load("c")):
        assert (st_.call_id, st_.owner, st_.epoch, st_.seq, st_.status) == ("c", "triage", 1, 1, "active")
        assert dict(st_.meta) == {"channel": "sip", "caller": "+331234"}
        assert st_.tenant is None and st_.ended_reason is None and not st_.ended


# --- 4. folding is O(1) amortized -------------------------------------------------------

N_EVENTS = 20_000
WINDOW = 1_000


def _workload(i: int) -> vs.Event:
    """A lively call: agent turns, barge-ins, slot changes, caller turns."""
    k = i % 4
    if k == 0:
        return vs.AgentSpoke(f"agent turn {i}")
    if k == 1:
        return vs.Interrupted(turn=None, heard="agent", heard_ms=i)
    if k == 2:
        return vs.SlotsSet({f"k{i % 16}": i})
    return vs.UserSpoke(f"caller turn {i}")


def _barge_in_workload(i: int) -> vs.Event:
    """Every agent turn is barged in on, with a slot change now and then."""
    if i % 2 == 0:
        return vs.AgentSpoke(f"agent turn {i}")
    if i % 10 == 5:
        return vs.SlotsSet({f"k{i % 16}": i})
    return vs.Interrupted(turn=None, heard="agent", heard_ms=i)


def test_taking_state_after_each_record_stays_flat(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    for i in range(50):  # warm up
        s.record(_workload(i))

    def window(start: int) -> list[float]:
        out = []
        gc.disable()
        try:
            for i in range(start, start + WINDOW):
                ev = _workload(i)
                t0 = time.perf_counter()
                s.record(ev)
                _ = s.state
                out.append(time.perf_counter() - t0)
        finally:
            gc.enable()
        return out

    first = window(50)
    for i in range(50 + WINDOW, N_EVENTS - WINDOW):
        s.record(_workload(i))
        _ = s.state
    last = window(N_EVENTS - WINDOW)
    assert s.state.seq == N_EVENTS + 1
    ratio = sum(last) / sum(first)
    assert ratio < 5, f"the last {WINDOW} records (+ state) took {ratio:.1f}x the first {WINDOW}"


def test_folding_one_event_after_a_snapshot_stays_flat(store: vs.Store) -> None:
    """The fold alone (what store.load and every session do): apply + snapshot per event."""
    s = store.open("c", agent="triage")
    batch = 500
    for i in range(0, N_EVENTS, batch):
        s.record(*[_barge_in_workload(j) for j in range(i, i + batch)])
    events = store.events("c")
    assert len(events) == N_EVENTS + 1

    folder = Folder("c", genesis("c"))

    def fold(lo: int, hi: int, timed: bool) -> list[float]:
        out = []
        for ev in events[lo:hi]:
            assert ev.seq is not None and ev.chain is not None
            t0 = time.perf_counter()
            folder.apply(ev, ev.seq, ev.chain, ev.agent)
            folder.snapshot()
            if timed and not isinstance(ev, vs.AgentSpoke):
                out.append(time.perf_counter() - t0)
        return out

    gc.disable()
    try:
        fold(0, 100, False)  # warm up
        first = fold(100, 100 + WINDOW, True)
        fold(100 + WINDOW, len(events) - WINDOW, False)
        last = fold(len(events) - WINDOW, len(events), True)
    finally:
        gc.enable()
    assert plain(folder.snapshot()) == plain(store.load("c"))
    ratio = statistics.median(last) / statistics.median(first)
    assert ratio < 5, (
        f"folding an Interrupted/SlotsSet after a snapshot costs {ratio:.1f}x more at {N_EVENTS} events "
        f"than at {WINDOW}: each one copies state that grows with the call"
    )
