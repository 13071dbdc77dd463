"""The ``"openai"`` context format: every ContextPolicy option, the OpenAI tool-call rule,
heard-only rendering, private slots, parse_context (round trips, a hand-written
conversation, bad input) and formats registered by plugins."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import pytest
from conftest import memory_url
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import voicestate as vs
import voicestate.plugins as vsp

# What the "openai" format promises (docs/concepts.md), spelled out here rather than imported.
INTERRUPTION_NOTE = "[The caller interrupted the assistant here; they heard only the text above.]"
PENDING_RESULT = {"status": "pending", "note": "This tool call is still running; its result will follow."}
SUMMARY_PREFIX = "Handoff summary (as of the handoff): "
SINCE_PREFIX = "Since the handoff: "
FACTS_PREFIX = "Known facts: "

KEYS = "t1:test-openai-format-secret-0123"

Msgs = list[dict[str, Any]]


def _dump(msgs: Any) -> str:
    return json.dumps(msgs, ensure_ascii=False, sort_keys=True)


def _tool_pairs_ok(msgs: Msgs) -> list[str]:
    """Check the OpenAI rule: every tool call is answered by a tool message right after it.

    Returns the tool call ids in order.
    """
    ids: list[str] = []
    answered: list[str] = []
    for i, m in enumerate(msgs):
        if m["role"] == "assistant" and m.get("tool_calls"):
            call_ids = [c["id"] for c in m["tool_calls"]]
            follow = msgs[i + 1 : i + 1 + len(call_ids)]
            assert [f["role"] for f in follow] == ["tool"] * len(call_ids), msgs
            assert [f["tool_call_id"] for f in follow] == call_ids, msgs
            for c in m["tool_calls"]:
                assert c["type"] == "function"
                assert isinstance(json.loads(c["function"]["arguments"]), dict)
            ids += call_ids
        elif m["role"] == "tool":
            answered.append(m["tool_call_id"])
            prev = msgs[i - 1]
            assert prev["role"] == "tool" or (prev["role"] == "assistant" and prev.get("tool_calls")), msgs
    assert answered == ids, msgs  # every answer belongs to a call, every call answered once
    return ids


def _tool_answer(msgs: Msgs, call_id: str) -> str:
    [content] = [m["content"] for m in msgs if m["role"] == "tool" and m["tool_call_id"] == call_id]
    assert isinstance(content, str)
    return content


def _call(store: vs.Store, call_id: str = "c1") -> vs.Session:
    """A call with a barge-in and tools in every state (pending, ok, error, cancelled, str result)."""
    s = store.open(call_id, agent="triage", meta={"channel": "sip"})
    s.record(vs.UserSpoke("I was charged twice"))  # 2
    t = s.record(vs.AgentSpoke("Let me pull up your invoices and check the zebra ledger"))  # 3
    s.record(vs.Interrupted(turn=t, heard="Let me pull up", heard_ms=910))  # 4
    s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))  # 5: stays pending
    s.record(vs.UserSpoke("the March one"))  # 6
    s.record(vs.ToolCalled("t2", "refund", {"amount": 12.5, "lines": [1, 2]}))  # 7
    s.record(vs.ToolReturned("t2", {"refund_id": "R-1"}))  # 8
    s.record(vs.ToolCalled("t3", "sms", {}))  # 9
    s.record(vs.ToolReturned("t3", None, error="no phone on file"))  # 10
    s.record(vs.ToolCalled("t4", "fax", {}))  # 11
    s.record(vs.ToolCancelled("t4", "caller hung up"))  # 12
    s.record(vs.ToolCalled("t5", "plain", {}), vs.ToolReturned("t5", "done"))  # 13, 14
    s.record(vs.AgentSpoke("Refund R-1 is on its way."))  # 15
    return s


EXPECTED_CALL = [
    {"role": "user", "content": "I was charged twice"},
    {"role": "assistant", "content": "Let me pull up"},
    {"role": "system", "content": INTERRUPTION_NOTE},
    ("t1", "lookup_invoices", {"account": "A-77"}, PENDING_RESULT),
    {"role": "user", "content": "the March one"},
    ("t2", "refund", {"amount": 12.5, "lines": [1, 2]}, {"refund_id": "R-1"}),
    ("t3", "sms", {}, {"status": "error", "error": "no phone on file"}),
    ("t4", "fax", {}, {"status": "cancelled", "error": "caller hung up"}),
    ("t5", "plain", {}, "done"),
    {"role": "assistant", "content": "Refund R-1 is on its way."},
]


def _expand(expected: Sequence[Any]) -> list[Any]:
    """Tool tuples in ``expected`` as (call message, answer) with JSON parsed, for comparison."""
    out: list[Any] = []
    for item in expected:
        if isinstance(item, tuple):
            cid, name, args, answer = item
            out.append(("call", cid, name, args))
            out.append(("answer", cid, answer))
        else:
            out.append(item)
    return out


def _normalize(msgs: Msgs) -> list[Any]:
    """Rendered messages with tool calls and answers decoded, in the shape of ``_expand``."""
    out: list[Any] = []
    for m in msgs:
        if m["role"] == "assistant" and m.get("tool_calls"):
            assert m["content"] is None
            [c] = m["tool_calls"]
            out.append(("call", c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])))
        elif m["role"] == "tool":
            content = m["content"]
            try:
                value = json.loads(content)
            except ValueError:
                value = content  # a string result, as is
            out.append(("answer", m["tool_call_id"], value))
        else:
            out.append(m)
    return out


@pytest.fixture
def store() -> Iterator[vs.Store]:
    s = vs.open_store(memory_url("openai"), signing_keys=KEYS)
    try:
        yield s
    finally:
        s.close()


# --- rendering: the documented shape --------------------------------------------------------


def test_default_render_in_seq_order(store: vs.Store) -> None:
    s = _call(store)
    msgs = s.context("openai")
    assert _normalize(msgs) == _expand(EXPECTED_CALL)
    # the same state loaded elsewhere renders the same; context() defaults to "openai"
    assert store.load("c1").context("openai") == msgs
    assert s.context() == msgs
    assert s.state.context("openai", vs.ContextPolicy()) == msgs
    # every message is plain JSON
    assert json.loads(json.dumps(msgs)) == msgs


def test_tool_answers_follow_their_calls(store: vs.Store) -> None:
    s = _call(store)
    msgs = s.context("openai")
    assert _tool_pairs_ok(msgs) == ["t1", "t2", "t3", "t4", "t5"]
    assert json.loads(_tool_answer(msgs, "t1")) == PENDING_RESULT
    assert _tool_answer(msgs, "t5") == "done"  # a string result as is, not JSON-quoted
    assert json.loads(_tool_answer(msgs, "t3")) == {"status": "error", "error": "no phone on file"}
    assert json.loads(_tool_answer(msgs, "t4")) == {"status": "cancelled", "error": "caller hung up"}


@pytest.mark.parametrize(
    "policy",
    [
        vs.ContextPolicy(),
        vs.ContextPolicy(last_turns=0),
        vs.ContextPolicy(last_turns=1),
        vs.ContextPolicy(last_turns=2),
        vs.ContextPolicy(heard_only=False, mark_interruptions=False),
        vs.ContextPolicy(summary=False),
        vs.ContextPolicy(facts=False, attribute=False),
    ],
    ids=repr,
)
def test_pending_tool_always_answered_under_every_policy(store: vs.Store, policy: vs.ContextPolicy) -> None:
    s = _call(store)
    s.record(vs.SlotsSet({"account_id": "A-77"}))
    s.record(vs.UserSpoke("hello?"), vs.AgentSpoke("Still here."))
    msgs = s.context("openai", policy)
    ids = _tool_pairs_ok(msgs)
    assert "t1" in ids  # the pending call stays, whatever the window
    assert json.loads(_tool_answer(msgs, "t1")) == PENDING_RESULT


def test_late_result_is_rendered_in_place_of_the_pending_answer(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("check my invoices"))
    s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))
    s.record(vs.AgentSpoke("One moment."), vs.UserSpoke("sure"))
    before = s.context("openai")
    assert json.loads(_tool_answer(before, "t1")) == PENDING_RESULT
    # the result arrives from another worker (a non-owner write), after more turns
    store.append("c1", vs.ToolReturned("t1", {"invoices": [101, 102]}, agent="worker"))
    s.refresh()
    after = s.context("openai")
    assert _tool_pairs_ok(after) == ["t1"]
    assert [m["role"] for m in after] == [m["role"] for m in before]  # same place, right after the call
    assert json.loads(_tool_answer(after, "t1")) == {"invoices": [101, 102]}
    assert "still running" not in _dump(after)
    # a second result loses (the first result wins)
    s.record(vs.ToolReturned("t1", {"invoices": []}))
    assert json.loads(_tool_answer(s.context("openai"), "t1")) == {"invoices": [101, 102]}


def test_late_error_and_cancel_answer_in_place(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("text me and fax me"))
    s.record(vs.ToolCalled("a", "x", {}), vs.ToolCalled("b", "y", {}))
    s.record(vs.UserSpoke("and?"))
    store.append("c1", vs.ToolReturned("a", None, error="boom"), vs.ToolCancelled("b", None))
    s.refresh()
    msgs = s.context("openai")
    assert _tool_pairs_ok(msgs) == ["a", "b"]
    assert json.loads(_tool_answer(msgs, "a")) == {"status": "error", "error": "boom"}
    assert json.loads(_tool_answer(msgs, "b")) == {"status": "cancelled", "error": None}
    assert msgs[-1] == {"role": "user", "content": "and?"}


def test_tool_calls_before_the_first_turn_stay_once_finished(store: vs.Store) -> None:
    # e.g. a CRM lookup fired when the call starts, before anyone spoke
    s = store.open("c1", agent="triage")
    s.record(vs.ToolCalled("crm", "lookup_caller", {"ani": "+15550100"}))
    s.record(vs.UserSpoke("hi"))
    assert _tool_pairs_ok(s.context("openai")) == ["crm"]  # pending: rendered
    store.append("c1", vs.ToolReturned("crm", {"name": "Ada"}))
    s.refresh()
    msgs = s.context("openai")
    assert _tool_pairs_ok(msgs) == ["crm"]  # finished: still rendered, with its result
    assert json.loads(_tool_answer(msgs, "crm")) == {"name": "Ada"}
    assert msgs[-1] == {"role": "user", "content": "hi"}


# --- every ContextPolicy option -----------------------------------------------------------


def test_last_turns_keeps_the_last_n_turns_and_pending_tools(store: vs.Store) -> None:
    s = _call(store)
    full = s.context("openai")
    # last 2 turns: "the March one" and the final agent turn; the tools after the window start
    # stay; t1 (before the window) stays because it is still pending
    two = s.context("openai", vs.ContextPolicy(last_turns=2))
    assert _normalize(two) == _expand(
        [("t1", "lookup_invoices", {"account": "A-77"}, PENDING_RESULT), *EXPECTED_CALL[4:]]
    )
    # last turn only: finished tools before it are dropped, the pending one stays
    one = s.context("openai", vs.ContextPolicy(last_turns=1))
    assert _normalize(one) == _expand([EXPECTED_CALL[3], EXPECTED_CALL[-1]])
    # zero turns: only what must stay (the pending call and its answer)
    zero = s.context("openai", vs.ContextPolicy(last_turns=0))
    assert _normalize(zero) == _expand([EXPECTED_CALL[3]])
    # more than the call holds: everything
    assert s.context("openai", vs.ContextPolicy(last_turns=100)) == full
    assert s.context("openai", vs.ContextPolicy(last_turns=None)) == full


def test_last_turns_zero_on_a_call_without_pending_tools(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("hi"), vs.AgentSpoke("hello"), vs.ToolCalled("t", "x", {}), vs.ToolReturned("t", 1))
    assert s.context("openai", vs.ContextPolicy(last_turns=0, summary=False)) == []


def test_last_turns_keeps_the_interruption_note_of_a_kept_turn(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("one"), vs.AgentSpoke("two"), vs.UserSpoke("three"))
    t = s.record(vs.AgentSpoke("four five six"))
    s.record(vs.Interrupted(turn=t, heard="four"))
    msgs = s.context("openai", vs.ContextPolicy(last_turns=2))
    assert msgs == [
        {"role": "user", "content": "three"},
        {"role": "assistant", "content": "four"},
        {"role": "system", "content": INTERRUPTION_NOTE},
    ]


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_last_turns_must_be_a_non_negative_int(bad: Any) -> None:
    with pytest.raises(vs.ConfigError, match="last_turns"):
        vs.ContextPolicy(last_turns=bad)


def test_tools_false_drops_every_tool_message(store: vs.Store) -> None:
    s = _call(store)
    msgs = s.context("openai", vs.ContextPolicy(tools=False))
    assert msgs == [m for m in _expand(EXPECTED_CALL) if isinstance(m, dict)]
    assert not any(m["role"] == "tool" or m.get("tool_calls") for m in msgs)
    dumped = _dump(msgs)
    assert "lookup_invoices" not in dumped and "still running" not in dumped


def test_heard_only_false_renders_the_whole_generated_text(store: vs.Store) -> None:
    s = _call(store)
    msgs = s.context("openai", vs.ContextPolicy(heard_only=False))
    expected = _expand(EXPECTED_CALL)
    expected[1] = {"role": "assistant", "content": "Let me pull up your invoices and check the zebra ledger"}
    assert _normalize(msgs) == expected  # the note still follows the cut turn


def test_mark_interruptions_false_drops_only_the_note(store: vs.Store) -> None:
    s = _call(store)
    msgs = s.context("openai", vs.ContextPolicy(mark_interruptions=False))
    expected = [m for m in _expand(EXPECTED_CALL) if m != {"role": "system", "content": INTERRUPTION_NOTE}]
    assert _normalize(msgs) == expected
    assert INTERRUPTION_NOTE not in _dump(msgs)
    assert "zebra" not in _dump(msgs)  # still heard-only


def test_summary_leads_with_the_facts(store: vs.Store) -> None:
    s = _call(store)
    s.record(vs.SlotsSet({"account_id": "A-77", "verified": True}))
    msgs = s.context("openai")
    first = msgs[0]
    assert first["role"] == "system"
    lines = first["content"].split("\n")
    facts = [line for line in lines if line.startswith(FACTS_PREFIX)]
    assert len(facts) == 1
    assert json.loads(facts[0][len(FACTS_PREFIX) :]) == {"account_id": "A-77", "verified": True}
    assert not any(line.startswith(SUMMARY_PREFIX) for line in lines)  # no handoff yet
    assert _normalize(msgs[1:]) == _expand(EXPECTED_CALL)
    # the facts are not the summary: summary=False keeps them, facts=False drops them
    assert s.context("openai", vs.ContextPolicy(summary=False)) == msgs
    off = s.context("openai", vs.ContextPolicy(facts=False))
    assert off == msgs[1:]
    assert FACTS_PREFIX not in _dump(off)


def test_no_summary_message_without_facts_or_handoff(store: vs.Store) -> None:
    s = _call(store)
    assert s.context("openai") == s.context("openai", vs.ContextPolicy(summary=False, facts=False))


def test_deleted_slot_leaves_the_facts(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.SlotsSet({"a": 1, "b": 2}))
    s.record(vs.SlotsSet({"a": None}))
    [first] = s.context("openai")
    assert first == {"role": "system", "content": FACTS_PREFIX + json.dumps({"b": 2})}


def test_handoff_summary_after_a_handoff(store: vs.Store) -> None:
    s = _call(store)
    s.record(vs.SlotsSet({"account_id": "A-77"}))
    packet = s.handoff(to="billing", reason="double charge", summary="Caller wants a refund.\nAccount A-77.")
    # the summary is addressed to the receiver: the sender, still the owner, does not read it
    sender = s.context("openai")
    assert sender[0] == {"role": "system", "content": FACTS_PREFIX + json.dumps({"account_id": "A-77"})}
    # the receiver reads it before it redeems the packet (rendering for it) and after
    for b_view in (s.state.context("openai", agent="billing"), store.resume(packet, agent="billing").context()):
        lines = b_view[0]["content"].split("\n")
        assert lines == [
            SUMMARY_PREFIX + "Caller wants a refund.",
            "Account A-77.",
            FACTS_PREFIX + json.dumps({"account_id": "A-77"}),
        ]
        # the rest is the conversation, triage's words and tool calls named as triage's
        assert [{k: v for k, v in m.items() if k != "name"} for m in b_view[1:]] == sender[1:]
        assert {m.get("name") for m in b_view if m["role"] == "assistant"} == {"triage"}
    # summary=False drops it, the facts stay
    b = store.load("c1")  # billing owns the call now
    kept = b.context("openai", vs.ContextPolicy(summary=False))
    assert SUMMARY_PREFIX not in _dump(kept)
    assert kept[0]["content"].startswith(FACTS_PREFIX)


def test_default_handoff_summary_is_rendered(store: vs.Store) -> None:
    s = _call(store)
    packet = s.handoff(to="billing")
    assert packet.summary
    b = store.resume(packet.to_token(), agent="billing")
    first = b.context("openai")[0]
    assert first["role"] == "system"
    assert first["content"].startswith(SUMMARY_PREFIX + packet.summary.split("\n")[0])
    for line in packet.summary.split("\n"):
        assert line in first["content"]


def test_the_latest_handoff_summary_wins(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("hi"))
    s.handoff(to="billing", summary="first summary")
    s.handoff(to="sales", summary="second summary")  # replaces the pending one
    for_sales = s.context("openai", vs.ContextPolicy(agent="sales"))[0]["content"]
    assert for_sales == SUMMARY_PREFIX + "second summary"
    # billing's offer was replaced: nothing of it is shown as current
    assert SUMMARY_PREFIX not in _dump(s.context("openai", vs.ContextPolicy(agent="billing")))


# --- heard only: the unheard remainder appears nowhere ----------------------------------------


def test_unheard_remainder_appears_nowhere(store: vs.Store) -> None:
    s = store.open("c1", agent="triage", meta={"channel": "sip"})
    s.record(vs.UserSpoke("I was charged twice"))
    a = s.record(vs.AgentSpoke("Let me pull up your invoices walrus and"))
    s.record(vs.Interrupted(turn=a, heard="Let me pull up", heard_ms=910))
    s.record(vs.UserSpoke("the March one"))
    b_ev = vs.AgentSpoke("I see two charges of ocelot twelve dollars")
    s.record(b_ev)
    s.record(vs.Interrupted(turn=b_ev, heard="I see two charges"))  # by the event itself
    s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))
    s.record(vs.SlotsSet({"account_id": "A-77"}))
    s.record(vs.AgentSpoke("Sorry, one more thing pangolin"), vs.Interrupted(turn=None, heard=""))  # nothing heard
    s.record(vs.UserSpoke("go on"))
    s.handoff(to="billing", reason="double charge")
    unheard = ["walrus", "your invoices", "ocelot", "twelve dollars", "pangolin", "one more thing"]
    for policy in [
        vs.ContextPolicy(),
        vs.ContextPolicy(mark_interruptions=False),
        vs.ContextPolicy(last_turns=3),
        vs.ContextPolicy(tools=False, summary=False),
    ]:
        msgs = s.context("openai", policy)
        dumped = _dump(msgs)
        for word in unheard:
            assert word not in dumped, (policy, word, msgs)
        for m in msgs:  # search every message's JSON, one by one too
            assert not any(word in _dump(m) for word in unheard), m
    msgs = s.context("openai")
    assistant = [m["content"] for m in msgs if m["role"] == "assistant" and not m.get("tool_calls")]
    assert assistant == ["Let me pull up", "I see two charges", ""]
    # the note is a separate system message right after each cut turn, never inside assistant text
    for i, m in enumerate(msgs):
        if m.get("content") == INTERRUPTION_NOTE:
            assert m["role"] == "system"
            assert msgs[i - 1]["role"] == "assistant" and not msgs[i - 1].get("tool_calls")
    assert sum(m.get("content") == INTERRUPTION_NOTE for m in msgs) == 3
    for text in assistant:
        assert "interrupt" not in text.lower() and "[" not in text
    # and the full text is still in the state, for whoever asks for it
    assert s.state.turns[1].text == "Let me pull up your invoices walrus and"
    assert "walrus" in _dump(s.context("openai", vs.ContextPolicy(heard_only=False)))


def test_reinterrupting_a_turn_renders_the_latest_heard(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    t = s.record(vs.AgentSpoke("alpha beta gamma"))
    s.record(vs.Interrupted(turn=t, heard="alpha beta"))
    s.record(vs.Interrupted(turn=t, heard="alpha"))
    assert s.context("openai") == [
        {"role": "assistant", "content": "alpha"},
        {"role": "system", "content": INTERRUPTION_NOTE},
    ]


# --- private slots ------------------------------------------------------------------------------


def test_private_slots_never_appear_call_slots_do(store: vs.Store) -> None:
    s = store.open("c1", agent="triage", meta={"channel": "sip"})
    s.record(vs.UserSpoke("my pin is in the notes"))
    s.record(vs.SlotsSet({"pin_hint": "kestrel-4471"}, scope="agent:sales"))
    s.record(vs.SlotsSet({"triage_scratch": "heron-9921"}, scope="agent:triage"))
    s.record(vs.SlotsSet({"account_id": "A-77", "intent": "refund"}))
    st_ = s.state
    assert dict(st_.private_slots["sales"]) == {"pin_hint": "kestrel-4471"}  # it is in the state
    secrets = ["pin_hint", "kestrel-4471", "triage_scratch", "heron-9921"]

    def check(msgs: Msgs) -> None:
        dumped = _dump(msgs)
        for word in secrets:
            assert word not in dumped, (word, msgs)
        facts = [
            line
            for m in msgs
            if m["role"] == "system"
            for line in m["content"].split("\n")
            if line.startswith(FACTS_PREFIX)
        ]
        assert [json.loads(f[len(FACTS_PREFIX) :]) for f in facts] == [{"account_id": "A-77", "intent": "refund"}]

    check(s.context("openai"))
    packet = s.handoff(to="billing")
    check(s.context("openai"))
    b = store.resume(packet, agent="billing")
    check(b.context("openai"))
    check(store.load("c1").context("openai"))
    assert all(word not in (packet.summary or "") for word in secrets)


# --- parse_context ----------------------------------------------------------------------------


def _fields(ev: vs.Event) -> tuple[Any, ...]:
    """An event as (type, its own fields), without id/at/agent/seq/chain."""
    skip = {"id", "at", "agent", "seq", "chain", "extra"}
    return (type(ev).__name__, *(getattr(ev, f.name) for f in attrs.fields(type(ev)) if f.name not in skip))


def _shape(events: Sequence[vs.Event]) -> list[tuple[Any, ...]]:
    """``_fields`` of each event, an Interrupted's turn id replaced by the index of that turn."""
    index = {e.id: i for i, e in enumerate(events)}
    out = []
    for e in events:
        if isinstance(e, vs.Interrupted):
            out.append(("Interrupted", index.get(e.turn, e.turn), e.heard, e.heard_ms))  # type: ignore[arg-type]
        else:
            out.append(_fields(e))
    return out


def test_parse_a_hand_written_conversation() -> None:
    pending = json.dumps(PENDING_RESULT, sort_keys=True)
    messages = [
        {"role": "system", "content": "You are a billing agent."},
        {"role": "user", "content": "I was charged twice"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "lookup_invoices", "arguments": '{"account": "A-77"}'},
                },
                {"id": "call_b", "type": "function", "function": {"name": "refund", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"invoices": [101, 102]}'},
        {"role": "tool", "tool_call_id": "call_b", "content": pending},
        {"role": "assistant", "content": "I found two charges on your account."},
        {"role": "system", "content": INTERRUPTION_NOTE},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Refund "},
                {"type": "image_url", "image_url": {"url": "data:,"}},
                {"type": "text", "text": "the second one"},
            ],
        },
        {"role": "system", "content": FACTS_PREFIX + '{"account_id": "A-77"}\nSupervisor: be kind'},
        {"role": "tool", "tool_call_id": "call_b", "content": '{"status": "error", "error": "declined"}'},
        {"role": "assistant", "content": "Done.", "tool_calls": [{"id": "call_c", "function": {"name": "sms"}}]},
        {"role": "tool", "tool_call_id": "call_c", "content": '{"error": "hung up", "status": "cancelled"}'},
        {"role": "tool", "tool_call_id": "call_a", "content": "plain text"},
    ]
    events = vs.parse_context("openai", messages)
    assert isinstance(events, list)
    got = [_fields(e) for e in events]
    assert got == [
        ("Note", "[system prompt] You are a billing agent."),  # the recording agent's own prompt
        ("UserSpoke", "I was charged twice", True, None, None),
        ("ToolCalled", "call_a", "lookup_invoices", {"account": "A-77"}),
        ("ToolCalled", "call_b", "refund", {}),
        ("ToolReturned", "call_a", {"invoices": [101, 102]}, None),
        # call_b's pending answer makes no event
        ("AgentSpoke", "I found two charges on your account."),
        ("Interrupted", events[5].id, "I found two charges on your account.", None),
        ("UserSpoke", "Refund the second one", True, None, None),
        ("SlotsSet", {"account_id": "A-77"}, "call"),
        ("Note", "Supervisor: be kind"),
        ("ToolReturned", "call_b", None, "declined"),
        ("AgentSpoke", "Done."),
        ("ToolCalled", "call_c", "sms", {}),
        ("ToolCancelled", "call_c", "hung up"),
        ("ToolReturned", "call_a", "plain text", None),
    ]
    assert isinstance(events[6], vs.Interrupted) and events[6].turn == events[5].id
    assert len({e.id for e in events}) == len(events)
    # the parsed events are recordable as they are, and fold as expected
    store = vs.open_store(memory_url("parse"), signing_keys=KEYS)
    try:
        s = store.open("c-parsed", agent="billing")
        s.record(*events)
        st_ = s.state
        assert [(t.role, t.text) for t in st_.turns] == [
            ("user", "I was charged twice"),
            ("agent", "I found two charges on your account."),
            ("user", "Refund the second one"),
            ("agent", "Done."),
        ]
        assert st_.turns[1].interrupted and st_.turns[1].heard == "I found two charges on your account."
        assert {k: t.status for k, t in st_.tools.items()} == {"call_a": "ok", "call_b": "error", "call_c": "cancelled"}
        assert st_.tools["call_a"].result == {"invoices": [101, 102]}  # the first result wins
        assert dict(st_.slots) == {"account_id": "A-77"}
        assert [n.text for n in st_.notes] == ["[system prompt] You are a billing agent.", "Supervisor: be kind"]
        msgs = s.context("openai")
        assert msgs[0] == {"role": "system", "content": "You are a billing agent."}  # billing's prompt, first
        assert "You are a billing agent." not in _dump(s.context("openai", vs.ContextPolicy(agent="sales")))
    finally:
        store.close()


def test_parse_the_pending_marker_makes_no_result(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.ToolCalled("t1", "lookup", {"q": 1}))
    msgs = s.context("openai")
    events = vs.parse_context("openai", msgs)
    assert [_fields(e) for e in events] == [("ToolCalled", "t1", "lookup", {"q": 1})]


def test_parse_known_facts_and_notes_from_one_system_message() -> None:
    events = vs.parse_context(
        "openai",
        [
            {"role": "developer", "content": "Be brief.\n\n" + FACTS_PREFIX + '{"a": 1, "b": [2]}'},
            {"role": "system", "content": FACTS_PREFIX + "not json"},
        ],
    )
    assert [_fields(e) for e in events] == [
        ("Note", "Be brief."),
        ("SlotsSet", {"a": 1, "b": [2]}, "call"),
        ("Note", FACTS_PREFIX + "not json"),
    ]


def test_parse_the_rendered_summary_message(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("hi"), vs.SlotsSet({"k": "v"}))
    s.handoff(to="billing", summary="Wants a refund.")
    events = vs.parse_context("openai", s.context("openai", vs.ContextPolicy(agent="billing")))
    assert [_fields(e) for e in events] == [
        ("Note", SUMMARY_PREFIX + "Wants a refund."),
        ("SlotsSet", {"k": "v"}, "call"),
        ("UserSpoke", "hi", True, None, None),
    ]


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "wizard", "content": "x"}],
        [{"role": "user", "content": "ok"}, {"role": "function", "content": "x"}],
        [{"content": "no role"}],
        ["just a string"],
        [{"role": "user", "content": 42}],
        {"role": "user", "content": "a dict, not a list"},
        "user: hi",
        b"[]",
        None,
        42,
    ],
    ids=repr,
)
def test_parse_bad_input_is_invalid_event(messages: Any) -> None:
    with pytest.raises(vs.InvalidEvent):
        vs.parse_context("openai", messages)


def test_parse_empty_list() -> None:
    assert vs.parse_context("openai", []) == []


# --- round trips ----------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=16)
SMALL_TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
JSON_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | SMALL_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SMALL_TEXT, inner, max_size=3),
    max_leaves=6,
)
OPS = st.sampled_from(
    [
        "user",
        "user",
        "agent",
        "agent",
        "interrupt",
        "tool_call",
        "tool_return",
        "tool_error",
        "tool_cancel",
        "slots",
        "note",
        "prompt",
        "other_prompt",
        "other_agent",
        "other_tool",
    ]
)
OTHERS = st.sampled_from(["sales", "sales bot", "Zoë", "x" * 70])
# A system prompt is any text but the summary message's (its lines have prefixes of their own).
PROMPT_TEXT = TEXT.filter(
    lambda t: (
        t != INTERRUPTION_NOTE
        and not any(line.startswith(("Handoff summary", SINCE_PREFIX, FACTS_PREFIX)) for line in t.split("\n"))
    )
)


def _record_random_call(data: st.DataObject, store: vs.Store, call_id: str) -> vs.Session:
    s = store.open(call_id, agent="triage")
    agent_turns: list[tuple[int, vs.AgentSpoke]] = []
    tools: list[str] = []
    for _ in range(data.draw(st.integers(1, 20), label="n_ops")):
        op = data.draw(OPS, label="op")
        if op == "user":
            s.record(vs.UserSpoke(data.draw(TEXT)))
        elif op == "agent":
            ev = vs.AgentSpoke(data.draw(TEXT))
            agent_turns.append((s.record(ev), ev))
        elif op == "other_agent":  # e.g. before a persona switch: another agent's words
            ev = vs.AgentSpoke(data.draw(TEXT), agent=data.draw(OTHERS))
            agent_turns.append((s.record(ev), ev))
        elif op == "prompt":  # one or more leading messages; recording them again replaces them
            roles = data.draw(st.lists(st.sampled_from(["system", "developer"]), min_size=1, max_size=2))
            s.record(*vs.parse_context("openai", [{"role": r, "content": data.draw(PROMPT_TEXT)} for r in roles]))
        elif op == "other_prompt":  # another agent's prompt never reaches this one
            s.record(vs.Note("[system prompt] " + data.draw(TEXT), agent=data.draw(OTHERS)))
        elif op == "interrupt":
            if not agent_turns:
                continue
            i = data.draw(st.integers(0, len(agent_turns) - 1))
            seq, ev = agent_turns[i]
            kinds = ["seq", "id", "event"] + (["latest"] if i == len(agent_turns) - 1 else [])
            kind = data.draw(st.sampled_from(kinds))
            ref: Any = {"seq": seq, "id": ev.id, "event": ev, "latest": None}[kind]
            heard = ev.text[: data.draw(st.integers(0, len(ev.text)))]
            s.record(vs.Interrupted(turn=ref, heard=heard, heard_ms=data.draw(st.none() | st.integers(0, 9999))))
        elif op == "tool_call":
            cid = data.draw(SMALL_TEXT.filter(lambda c: c not in tools), label="call_id")
            tools.append(cid)
            args = data.draw(st.dictionaries(SMALL_TEXT, JSON_VALUE, max_size=3))
            s.record(vs.ToolCalled(cid, data.draw(SMALL_TEXT), args))
        elif op == "other_tool":
            cid = data.draw(SMALL_TEXT.filter(lambda c: c not in tools), label="call_id")
            tools.append(cid)
            s.record(vs.ToolCalled(cid, data.draw(SMALL_TEXT), {}, agent=data.draw(OTHERS)))
        elif op in ("tool_return", "tool_error", "tool_cancel"):
            if not tools:
                continue
            cid = data.draw(st.sampled_from(tools))
            if op == "tool_return":
                ev2: vs.Event = vs.ToolReturned(cid, data.draw(JSON_VALUE))
            elif op == "tool_error":
                ev2 = vs.ToolReturned(cid, None, data.draw(TEXT))
            else:
                ev2 = vs.ToolCancelled(cid, data.draw(st.none() | TEXT))
            if data.draw(st.booleans()):
                s.record(ev2)
            else:  # a late result from another process
                store.append(call_id, attrs.evolve(ev2, agent="worker"))
                s.refresh()
        elif op == "slots":
            scope = data.draw(st.sampled_from(["call", "agent:triage", "agent:sales"]))
            s.record(
                vs.SlotsSet(data.draw(st.dictionaries(SMALL_TEXT, JSON_VALUE, min_size=1, max_size=2)), scope=scope)
            )
        elif op == "note":
            s.record(vs.Note(data.draw(TEXT)))
    return s


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_parse_then_render_round_trips(data: st.DataObject) -> None:
    # redact=False: a random text may hold a card number, and the round trip is not about redaction
    store = vs.open_store(memory_url("roundtrip"), signing_keys=KEYS, redact=False)
    try:
        s = _record_random_call(data, store, "original")
        policy = data.draw(st.sampled_from([vs.ContextPolicy(), vs.ContextPolicy(summary=False, facts=False)]))
        msgs = s.context("openai", policy)
        _tool_pairs_ok(msgs)
        for m in msgs:  # names are OpenAI's pattern, and only on other agents' messages
            if "name" in m:
                assert m["role"] == "assistant" and re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", m["name"]), m
                assert m["name"] != "triage"
        events = vs.parse_context("openai", msgs)
        # parse_context then context for the same agent: the same messages, system prompt included
        s2 = store.open("copy", agent="triage")
        if events:
            s2.record(*events)
        assert s2.context("openai", policy) == msgs
        assert store.load("copy").context("openai", policy) == msgs
        # and a second trip changes nothing more
        assert _shape(vs.parse_context("openai", s2.context("openai", policy))) == _shape(events)
        # another agent receives neither prompt
        sales = s2.context("openai", vs.ContextPolicy(agent="sales"))
        assert not any(m["role"] == "developer" for m in sales)
        for m in sales:
            if m["role"] == "system":
                assert m["content"] == INTERRUPTION_NOTE or m["content"].startswith(FACTS_PREFIX), m
    finally:
        store.close()


@pytest.mark.parametrize("result", ['"quoted"', "1.50", "NaN"], ids=repr)
def test_round_trip_of_a_string_result_that_looks_like_json(store: vs.Store, result: str) -> None:
    # A tool that returned the *string* ``result``: the format renders strings as is, so
    # parsing it back must not turn it into another value (or into an unrecordable one).
    s = store.open("original", agent="triage")
    s.record(vs.UserSpoke("echo it"))
    s.record(vs.ToolCalled("t1", "echo", {}), vs.ToolReturned("t1", result))
    policy = vs.ContextPolicy(summary=False)
    msgs = s.context("openai", policy)
    events = vs.parse_context("openai", msgs)
    s2 = store.open("copy", agent="billing")
    s2.record(*events)
    assert s2.context("openai", policy) == msgs
    assert s2.state.tools["t1"].result == result


# --- formats: unknown, plugins, render-only ----------------------------------------------------


def test_unknown_format_names_the_known_ones(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    for call in (
        lambda: s.context("langchian"),
        lambda: s.state.context("langchian"),
        lambda: vs.parse_context("langchian", []),
    ):
        with pytest.raises(vs.ConfigError) as err:
            call()
        assert "langchian" in str(err.value)
        assert "openai" in str(err.value)


def _render_plain(state: vs.CallState, policy: vs.ContextPolicy) -> str:
    lines = []
    for t in state.turns:
        text = t.heard if (t.interrupted and policy.heard_only) else t.text
        lines.append(f"{t.role}: {text}")
    return "\n".join(lines)


def _parse_plain(text: str) -> list[vs.Event]:
    out: list[vs.Event] = []
    for line in text.split("\n"):
        role, _, said = line.partition(": ")
        out.append(vs.UserSpoke(said) if role == "user" else vs.AgentSpoke(said))
    return out


class PlainFormat:
    @vsp.hookimpl
    def register_formats(self, register: Callable[..., None]) -> None:
        register("plain", _render_plain, _parse_plain)


class RenderOnlyFormat:
    @vsp.hookimpl
    def register_formats(self, register: Callable[..., None]) -> None:
        register("shout", lambda state, policy: [t.text.upper() for t in state.turns])


def test_plugin_format_renders_and_parses(store: vs.Store, plugin: Callable[[object], None]) -> None:
    plugin(PlainFormat())
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("hi there"))
    t = s.record(vs.AgentSpoke("hello, how can I help"))
    s.record(vs.Interrupted(turn=t, heard="hello"))
    assert s.context("plain") == "user: hi there\nagent: hello"
    assert s.context("plain", vs.ContextPolicy(heard_only=False)) == "user: hi there\nagent: hello, how can I help"
    assert store.load("c1").context("plain") == "user: hi there\nagent: hello"
    events = vs.parse_context("plain", "user: hi there\nagent: hello")
    assert [_fields(e) for e in events] == [("UserSpoke", "hi there", True, None, None), ("AgentSpoke", "hello")]
    s2 = store.open("c2", agent="billing")
    s2.record(*events)
    assert s2.context("plain") == "user: hi there\nagent: hello"
    # the core format is still there next to it
    assert s.context("openai")[0] == {"role": "user", "content": "hi there"}


def test_plugin_format_is_gone_once_unregistered(store: vs.Store) -> None:
    fmt = PlainFormat()
    vsp.register_plugin(fmt)
    try:
        assert vs.parse_context("plain", "user: x")[0].text == "x"  # type: ignore[attr-defined]
    finally:
        vsp.unregister_plugin(fmt)
    with pytest.raises(vs.ConfigError, match="plain"):
        vs.parse_context("plain", "user: x")
    with pytest.raises(vs.ConfigError):
        store.open("c1", agent="triage").context("plain")


def test_render_only_format_cannot_parse(store: vs.Store, plugin: Callable[[object], None]) -> None:
    plugin(RenderOnlyFormat())
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("hi"))
    assert s.context("shout") == ["HI"]
    with pytest.raises(vs.ConfigError) as err:
        vs.parse_context("shout", ["HI"])
    assert "shout" in str(err.value)
