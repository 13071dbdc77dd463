"""Context that does not mislead the next model: whose context it is (``ContextPolicy.agent``),
the summary of the handoff that brought the call to that agent and what changed since,
facts apart from the summary, system prompts that round-trip for their own agent only,
other agents' words attributed by name, and policy validation."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import memory_url

import voicestate as vs
import voicestate.plugins as vsp

KEYS = "t1:test-context-policy-secret-0123"
INTERRUPTION_NOTE = "[The caller interrupted the assistant here; they heard only the text above.]"
SUMMARY_PREFIX = "Handoff summary (as of the handoff): "
SINCE_PREFIX = "Since the handoff: "
FACTS_PREFIX = "Known facts: "
NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

Msgs = list[dict[str, Any]]


@pytest.fixture
def store() -> Iterator[vs.Store]:
    s = vs.open_store(memory_url("policy"), signing_keys=KEYS)
    try:
        yield s
    finally:
        s.close()


def _dump(msgs: Any) -> str:
    return json.dumps(msgs, ensure_ascii=False, sort_keys=True)


def _lines(msgs: Msgs) -> list[str]:
    """The lines of the summary message (the first system message holding our prefixes)."""
    for m in msgs:
        if m["role"] == "system" and m["content"].startswith((SUMMARY_PREFIX, FACTS_PREFIX)):
            lines: list[str] = m["content"].split("\n")
            return lines
    return []


def _answer(msgs: Msgs, call_id: str) -> Any:
    [content] = [m["content"] for m in msgs if m["role"] == "tool" and m["tool_call_id"] == call_id]
    return json.loads(content)


def _triage_call(store: vs.Store, call_id: str = "c1") -> vs.Session:
    s = store.open(call_id, agent="triage", meta={"channel": "sip"})
    s.record(vs.UserSpoke("I was charged twice"))
    t = s.record(vs.AgentSpoke("Let me pull up your invoices and"))
    s.record(vs.Interrupted(turn=t, heard="Let me pull up", heard_ms=910))
    s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))
    s.record(vs.ToolCalled("t2", "credit_check", {}))
    s.record(vs.SlotsSet({"account_id": "A-77", "verified": True}))
    return s


# --- the policy itself ----------------------------------------------------------------------


def test_defaults() -> None:
    p = vs.ContextPolicy()
    assert (p.last_turns, p.tools, p.heard_only, p.summary, p.mark_interruptions) == (None, True, True, True, True)
    assert (p.facts, p.attribute, p.agent) == (True, True, None)


@pytest.mark.parametrize("bad", ["x", {"last_turns": 2}, 3, object()], ids=repr)
def test_a_policy_that_is_not_a_context_policy_is_a_config_error(store: vs.Store, bad: Any) -> None:
    s = store.open("c1", agent="triage")
    for call in (
        lambda: s.context("openai", bad),
        lambda: s.context("openai", policy=bad),
        lambda: s.state.context("openai", bad),
        lambda: store.load("c1").context(policy=bad),
    ):
        with pytest.raises(vs.ConfigError, match=r"vs\.ContextPolicy"):
            call()


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("tools", "no"),
        ("heard_only", 0),
        ("summary", None),
        ("mark_interruptions", "yes"),
        ("facts", 1),
        ("attribute", "false"),
        ("last_turns", True),
        ("last_turns", -1),
        ("agent", ""),
        ("agent", 7),
    ],
)
def test_policy_fields_are_checked(field: str, bad: Any) -> None:
    with pytest.raises(vs.ConfigError, match=f"ContextPolicy.{field}"):
        vs.ContextPolicy(**{field: bad})


@pytest.mark.parametrize("bad", ["", 5])
def test_agent_argument_is_checked(store: vs.Store, bad: Any) -> None:
    s = store.open("c1", agent="triage")
    with pytest.raises(vs.ConfigError, match="agent"):
        s.state.context("openai", agent=bad)


class CapturePolicy:
    def __init__(self) -> None:
        self.seen: list[vs.ContextPolicy] = []

    @vsp.hookimpl
    def register_formats(self, register: Callable[..., None]) -> None:
        register("capture", lambda state, policy: self.seen.append(policy))


def test_formats_receive_the_policy_with_its_agent_filled_in(store: vs.Store, plugin: Callable[[object], None]) -> None:
    cap = CapturePolicy()
    plugin(cap)
    s = store.open("c1", agent="triage")
    s.context("capture")  # the owner
    s.state.context("capture", agent="billing")  # the agent= argument
    s.state.context("capture", vs.ContextPolicy(agent="sales"), agent="billing")  # the policy's agent wins
    s.end("done")
    store.load("c1").context("capture")  # nobody owns an ended call
    store.load("c1").context("capture", agent="triage")
    assert [p.agent for p in cap.seen] == ["triage", "billing", "sales", None, "triage"]
    assert all(p.tools and p.facts and p.attribute for p in cap.seen)


# --- summary and facts are separate ------------------------------------------------------------


def test_summary_and_facts_are_separate_switches(store: vs.Store) -> None:
    s = _triage_call(store)
    packet = s.handoff(to="billing", summary="Wants a refund.")
    b = store.resume(packet, agent="billing")
    facts = FACTS_PREFIX + json.dumps({"account_id": "A-77", "verified": True})
    summary = SUMMARY_PREFIX + "Wants a refund."
    cases = {
        (True, True): [summary, facts],
        (True, False): [summary],
        (False, True): [facts],
        (False, False): [],
    }
    for (with_summary, with_facts), lines in cases.items():
        msgs = b.context("openai", vs.ContextPolicy(summary=with_summary, facts=with_facts))
        assert _lines(msgs) == lines, (with_summary, with_facts)
        assert (FACTS_PREFIX in _dump(msgs)) is with_facts
        assert (SUMMARY_PREFIX in _dump(msgs)) is with_summary
        assert msgs[len(lines) > 0 :][0] == {"role": "user", "content": "I was charged twice"}


def test_private_slots_are_not_facts(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.SlotsSet({"pin": "4471"}, scope="agent:triage"), vs.SlotsSet({"pan": "x"}, scope="agent:billing"))
    assert s.context("openai") == []
    assert s.state.context("openai", agent="billing") == []


# --- the summary the viewer sees, and what changed since ----------------------------------------


def test_a_tool_running_at_the_handoff_is_shown_finished_once_it_is(store: vs.Store) -> None:
    s = _triage_call(store)
    packet = s.handoff(to="billing")  # the default summary: "Still running: lookup_invoices (t1) ..."
    assert "Still running: lookup_invoices (t1)" in (packet.summary or "")
    b = store.resume(packet, agent="billing")
    lines = _lines(b.context("openai"))
    assert lines[0].startswith(SUMMARY_PREFIX)  # what was true at the handoff, said so
    assert not any(line.startswith(SINCE_PREFIX) for line in lines)  # nothing changed yet
    # the result arrives from another process, then a failure, after more turns; then the call ends
    store.append("c1", vs.ToolReturned("t1", {"invoices": [101, 102]}, agent="worker"))
    store.append("c1", vs.ToolReturned("t2", None, error="bureau down", agent="worker"))
    b.refresh()
    b.record(vs.ToolCalled("t3", "refund", {}), vs.ToolReturned("t3", {"ok": True}))  # after the handoff
    b.record(vs.AgentSpoke("I see two charges."))
    b.end("resolved")
    msgs = store.load("c1").context("openai", agent="billing")
    lines = _lines(msgs)
    since = [line for line in lines if line.startswith(SINCE_PREFIX)]
    assert since == [
        SINCE_PREFIX + "lookup_invoices (t1), running at the handoff, has since returned.",
        SINCE_PREFIX + "credit_check (t2), running at the handoff, has since failed: bureau down.",
    ]
    assert lines[-1].startswith(FACTS_PREFIX)
    assert _answer(msgs, "t1") == {"invoices": [101, 102]}  # the tool message agrees
    assert "still running; its result will follow" not in _dump(msgs)
    # a tool still running is not said to have finished
    s2 = _triage_call(store, "c2")
    p2 = s2.handoff(to="billing")
    b2 = store.resume(p2, agent="billing")
    store.append("c2", vs.ToolCancelled("t2", "caller hung up"))
    b2.refresh()
    since2 = [line for line in _lines(b2.context("openai")) if line.startswith(SINCE_PREFIX)]
    assert since2 == [SINCE_PREFIX + "credit_check (t2), running at the handoff, was since cancelled: caller hung up."]


def test_facts_changed_since_the_handoff_are_called_out(store: vs.Store) -> None:
    s = _triage_call(store)
    s.record(vs.SlotsSet({"n": 1}))
    b = store.resume(s.handoff(to="billing"), agent="billing")
    b.record(vs.SlotsSet({"account_id": "A-78", "verified": None, "intent": "refund", "n": True}))
    lines = _lines(b.context("openai"))
    assert [line for line in lines if line.startswith(SINCE_PREFIX)] == [
        SINCE_PREFIX + 'account_id is now "A-78" (was "A-77").',
        SINCE_PREFIX + "n is now true (was 1).",  # 1 and True are different facts
        SINCE_PREFIX + 'intent is now "refund" (new).',
        SINCE_PREFIX + "verified was removed (was true).",
    ]
    assert json.loads(lines[-1][len(FACTS_PREFIX) :]) == {"account_id": "A-78", "intent": "refund", "n": True}
    # the same key set back to what it was at the handoff: nothing to call out
    b.record(vs.SlotsSet({"account_id": "A-77", "verified": True, "intent": None, "n": 1}))
    assert not any(line.startswith(SINCE_PREFIX) for line in _lines(b.context("openai")))


def test_the_owner_sees_the_summary_of_the_handoff_that_brought_the_call_to_it(store: vs.Store) -> None:
    s = _triage_call(store)
    assert s.state.owner_handoff is None
    packet = s.handoff(to="billing", summary="triage to billing")
    assert SUMMARY_PREFIX not in _dump(s.context("openai"))  # the sender does not read its own summary
    b = store.resume(packet, agent="billing")
    assert b.state.owner_handoff is not None and b.state.owner_handoff.packet_id == packet.packet_id
    assert _lines(b.context("openai"))[0] == SUMMARY_PREFIX + "triage to billing"
    # billing escalates: while pending, billing still reads the summary that brought the call to it;
    # the human it is addressed to reads the escalation's
    b.handoff(to="human", kind="escalate", summary="billing to human")
    assert _lines(b.context("openai"))[0] == SUMMARY_PREFIX + "triage to billing"
    human_view = b.state.context("openai", agent="human")
    assert _lines(human_view)[0] == SUMMARY_PREFIX + "billing to human"
    assert "triage to billing" not in _dump(human_view)
    # billing withdraws it and hands back instead: triage reads the return summary, not its own old one
    b.cancel_handoff()
    assert "billing to human" not in _dump(b.state.context("openai", agent="human"))
    back = b.handoff(to="triage", kind="return", summary="billing back to triage")
    t = store.resume(back, agent="triage")
    view = t.context("openai")
    assert _lines(view)[0] == SUMMARY_PREFIX + "billing back to triage"
    assert "triage to billing" not in _dump(view)
    assert "triage to billing" not in _dump(t.state.context("openai", agent="billing"))


def test_a_cancelled_or_replaced_offer_is_nobodys_summary(store: vs.Store) -> None:
    s = _triage_call(store)
    s.handoff(to="billing", summary="offer one")
    s.cancel_handoff()
    s.handoff(to="sales", summary="offer two")
    s.handoff(to="billing", summary="offer three")  # replaces offer two
    for agent, wanted in [("triage", None), ("sales", None), ("billing", "offer three")]:
        lines = _lines(s.state.context("openai", agent=agent))
        summaries = [line for line in lines if line.startswith(SUMMARY_PREFIX)]
        assert summaries == ([] if wanted is None else [SUMMARY_PREFIX + wanted]), agent


def test_a_takeover_keeps_the_summary_only_for_the_same_agent(store: vs.Store) -> None:
    s = _triage_call(store)
    store.resume(s.handoff(to="billing", summary="for billing"), agent="billing")
    # billing's worker died; another billing worker takes the call over: same agent, same summary
    b2 = store.resume("c1", agent="billing", takeover=True, force=True)
    assert _lines(b2.context("openai"))[0] == SUMMARY_PREFIX + "for billing"
    # a different agent takes it over: no handoff brought the call to it
    r = store.resume("c1", agent="recovery", takeover=True, force=True)
    assert r.state.owner_handoff is None
    assert SUMMARY_PREFIX not in _dump(r.context("openai"))


def test_an_ended_call_renders_the_last_owners_summary(store: vs.Store) -> None:
    s = _triage_call(store)
    b = store.resume(s.handoff(to="billing", summary="for billing"), agent="billing")
    b.end("resolved")
    st_ = store.load("c1")
    assert st_.owner is None and st_.owner_handoff is not None
    for msgs in (st_.context("openai"), st_.context("openai", agent="billing")):
        assert _lines(msgs)[0] == SUMMARY_PREFIX + "for billing"
    assert SUMMARY_PREFIX not in _dump(st_.context("openai", agent="triage"))


# --- system prompts ------------------------------------------------------------------------------


def test_a_system_prompt_round_trips_for_its_own_agent(store: vs.Store) -> None:
    messages = [
        {"role": "system", "content": "You are the billing agent.\nBe brief."},
        {"role": "user", "content": "I was charged twice"},
        {"role": "assistant", "content": "Let me check."},
    ]
    events = vs.parse_context("openai", messages)
    assert isinstance(events[0], vs.Note) and events[0].text == "[system prompt] You are the billing agent.\nBe brief."
    s = store.open("c1", agent="billing")
    s.record(*events)
    assert s.context("openai") == messages
    assert store.load("c1").context("openai") == messages
    # another agent does not receive it
    other = s.state.context("openai", agent="triage")
    assert "You are the billing agent." not in _dump(other)
    assert other[0] == {"role": "user", "content": "I was charged twice"}


def test_a_prompt_of_several_messages_and_a_replaced_prompt(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    first = [{"role": "system", "content": "v1"}, {"role": "developer", "content": "tools: none"}]
    s.record(*vs.parse_context("openai", first))
    s.record(vs.UserSpoke("hi"))
    assert s.context("openai")[:2] == first
    # recorded again right away: the new prompt replaces the old one, it is not appended to it
    s.record(*vs.parse_context("openai", [{"role": "system", "content": "v2"}]))
    s.record(*vs.parse_context("openai", [{"role": "system", "content": "v3"}]))
    msgs = s.context("openai")
    assert msgs == [{"role": "system", "content": "v3"}, {"role": "user", "content": "hi"}]
    # and each prompt message is a stored Note of its writer, readable by humans
    assert [n.text for n in s.state.notes] == [
        "[system prompt] v1",
        "[developer prompt, continued] tools: none",
        "[system prompt] v2",
        "[system prompt] v3",
    ]


def test_prompts_survive_a_handoff_back_and_never_leak(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(*vs.parse_context("openai", [{"role": "system", "content": "You are Triage."}]))
    s.record(vs.UserSpoke("I was charged twice"), vs.AgentSpoke("Billing can help."))
    packet = s.handoff(to="billing", summary="refund")
    assert "You are Triage." not in (packet.summary or "")
    b = store.resume(packet, agent="billing")
    assert "You are Triage." not in _dump(b.context("openai"))
    b.record(*vs.parse_context("openai", [{"role": "system", "content": "You are Billing."}]))
    b.record(vs.AgentSpoke("Refunded."))
    assert b.context("openai")[0] == {"role": "system", "content": "You are Billing."}
    t = store.resume(b.handoff(to="triage", kind="return"), agent="triage")  # another process, say
    msgs = t.context("openai")
    assert msgs[0] == {"role": "system", "content": "You are Triage."}
    assert "You are Billing." not in _dump(msgs)
    # a prompt note from another writer (e.g. a non-owner append) is that writer's, not the owner's
    store.append("c1", vs.Note("[system prompt] injected", agent="supervisor"))
    t.refresh()
    assert "injected" not in _dump(t.context("openai"))


def test_a_leading_summary_message_is_not_a_prompt() -> None:
    events = vs.parse_context(
        "openai",
        [
            {"role": "system", "content": "You are Billing."},
            {"role": "system", "content": SUMMARY_PREFIX + "refund\n" + FACTS_PREFIX + '{"a": 1}'},
            {"role": "system", "content": "Handoff summary: an older rendering"},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "mid-call instruction"},
        ],
    )
    kinds = [(type(e).__name__, getattr(e, "text", None)) for e in events]
    assert kinds == [
        ("Note", "[system prompt] You are Billing."),
        ("Note", SUMMARY_PREFIX + "refund"),
        ("SlotsSet", None),
        ("Note", "Handoff summary: an older rendering"),
        ("UserSpoke", "hi"),
        ("Note", "mid-call instruction"),  # not leading: a plain note, not a prompt
    ]


# --- attribution -----------------------------------------------------------------------------------


def test_after_a_persona_switch_the_old_personas_words_carry_its_name(store: vs.Store) -> None:
    s = store.open("c1", agent="Ava (triage) ✓")
    s.record(vs.UserSpoke("I was charged twice"))
    t = s.record(vs.AgentSpoke("Let me pull up your invoices and"))
    s.record(vs.Interrupted(turn=t, heard="Let me pull up"))
    s.record(vs.ToolCalled("t1", "lookup_invoices", {}))
    b = store.resume(s.handoff(to="bill", kind="persona"), agent="bill")
    b.record(vs.UserSpoke("well?"), vs.AgentSpoke("Bill here."))
    msgs = b.context("openai", vs.ContextPolicy(summary=False))
    assert msgs == [
        {"role": "user", "content": "I was charged twice"},
        {"role": "assistant", "content": "Let me pull up", "name": "Ava__triage___"},
        {"role": "system", "content": INTERRUPTION_NOTE},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "lookup_invoices", "arguments": "{}"}}
            ],
            "name": "Ava__triage___",
        },
        {"role": "tool", "tool_call_id": "t1", "content": _dump(_pending())},
        {"role": "user", "content": "well?"},
        {"role": "assistant", "content": "Bill here."},  # its own words: no name
    ]
    # rendered for the old persona, the other way round
    old = b.state.context("openai", vs.ContextPolicy(summary=False, agent="Ava (triage) ✓"))
    assert [m.get("name") for m in old if m["role"] == "assistant"] == [None, None, "bill"]
    # attribute=False: no names at all
    plain = b.context("openai", vs.ContextPolicy(summary=False, attribute=False))
    assert not any("name" in m for m in plain)
    assert plain == [{k: v for k, v in m.items() if k != "name"} for m in msgs]


def _pending() -> dict[str, str]:
    return {"status": "pending", "note": "This tool call is still running; its result will follow."}


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        ("sales", "sales"),
        ("sales-bot_2", "sales-bot_2"),
        ("Zoë", "Zo_"),
        ("a.b@c d", "a_b_c_d"),
        ("x" * 100, "x" * 64),
        ("助手", "__"),
    ],
)
def test_names_match_openais_pattern(store: vs.Store, agent: str, name: str) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.AgentSpoke("hello", agent=agent))
    [msg] = s.context("openai")
    assert msg == {"role": "assistant", "content": "hello", "name": name}
    assert NAME.match(msg["name"])


def test_user_turns_are_never_named(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("hi"))
    assert s.state.context("openai", agent="billing") == [{"role": "user", "content": "hi"}]


def test_a_named_message_parses_to_that_agents_event_and_round_trips(store: vs.Store) -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Ava speaking", "name": "ava"},
        {
            "role": "assistant",
            "content": None,
            "name": "ava",
            "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "crm", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "found"},
        {"role": "assistant", "content": "Bill here"},
    ]
    events = vs.parse_context("openai", messages)
    assert [(type(e).__name__, e.agent) for e in events] == [
        ("UserSpoke", None),
        ("AgentSpoke", "ava"),
        ("ToolCalled", "ava"),
        ("ToolReturned", None),
        ("AgentSpoke", None),
    ]
    s = store.open("c1", agent="bill")
    s.record(*events)
    assert [t.agent for t in s.state.turns] == ["bill", "ava", "bill"]
    assert s.context("openai") == messages
