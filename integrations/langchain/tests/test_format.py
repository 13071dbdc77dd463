"""The "langchain" format both ways, and the member found through the entry-point group alone."""

from __future__ import annotations

import subprocess
import sys

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

import voicestate as vs

CUT = "Let me pull up your invoices and check both charges."


def a_call(store: vs.Store) -> vs.Session:
    s = store.open("call-1", agent="triage")
    s.record(vs.Note("[system prompt] You are the triage agent."))
    s.record(vs.UserSpoke("I was charged twice"))
    turn = s.record(vs.AgentSpoke(CUT))
    s.record(vs.Interrupted(turn=turn, heard="Let me pull up", heard_ms=910))
    s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))
    s.record(vs.ToolCalled("t2", "check_card", {}))
    s.record(vs.ToolReturned("t2", {"ok": True}))
    s.record(vs.SlotsSet({"account_id": "A-77"}))
    return s


def test_the_context_is_langchain_messages_with_the_policy_applied(store: vs.Store) -> None:
    s = a_call(store)
    messages = s.context("langchain")
    kinds = [type(m).__name__ for m in messages]
    assert kinds == [
        "SystemMessage",  # triage's own prompt
        "SystemMessage",  # the facts
        "HumanMessage",
        "AIMessage",  # what the caller heard
        "SystemMessage",  # the interruption note
        "AIMessage",  # t1: still running ...
        "ToolMessage",  # ... and said so
        "AIMessage",
        "ToolMessage",
    ]
    assert messages[0] == SystemMessage("You are the triage agent.")
    assert messages[2] == HumanMessage("I was charged twice")
    assert messages[3].content == "Let me pull up"
    assert not any(CUT in str(m.content) for m in messages)
    t1 = messages[5]
    assert isinstance(t1, AIMessage) and t1.tool_calls[0]["name"] == "lookup_invoices"
    assert t1.tool_calls[0]["args"] == {"account": "A-77"} and t1.tool_calls[0]["id"] == "t1"
    assert isinstance(messages[6], ToolMessage) and "still running" in str(messages[6].content)
    # Another agent sees the turns as triage's (named), and never triage's prompt.
    billing = s.state.context("langchain", agent="billing")
    said = [m for m in billing if isinstance(m, AIMessage) and m.content]
    assert said[0].name == "triage"
    assert "You are the triage agent." not in [m.content for m in billing]


def test_parse_then_render_gives_back_equal_messages(store: vs.Store) -> None:
    s = a_call(store)
    messages = s.context("langchain", vs.ContextPolicy(summary=False, facts=False))
    other = vs.open_store("memory://")
    s2 = other.open("call-2", agent="triage")
    s2.record(*vs.parse_context("langchain", messages))
    assert s2.context("langchain", vs.ContextPolicy(summary=False, facts=False)) == messages
    assert [t.call_id for t in s2.state.pending_tools()] == ["t1"]
    turn = s2.state.turns[-1]
    assert (turn.text, turn.interrupted, turn.heard) == ("Let me pull up", True, "Let me pull up")
    other.close()


def test_an_agents_words_come_back_as_its_own() -> None:
    events = vs.parse_context(
        "langchain",
        [HumanMessage("hi"), AIMessage("Hello, sales here.", name="sales"), AIMessage("And I am billing.")],
    )
    assert [(type(e).__name__, e.agent) for e in events] == [
        ("UserSpoke", None),
        ("AgentSpoke", "sales"),
        ("AgentSpoke", None),
    ]


def test_bad_input_is_a_typed_error() -> None:
    with pytest.raises(vs.InvalidArgument, match="list of LangChain messages"):
        vs.parse_context("langchain", "hello")
    with pytest.raises(vs.InvalidArgument, match="message 1 is a dict"):
        vs.parse_context("langchain", [HumanMessage("hi"), {"role": "user", "content": "x"}])


def test_a_fresh_process_finds_the_member_through_the_entry_point_group() -> None:
    code = (
        "import sys, voicestate as vs\n"
        "s = vs.open_store().open('c', agent='a')\n"
        "s.record(vs.UserSpoke('hi'))\n"
        "print(type(s.context('langchain')[0]).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["HumanMessage"]
    code = (
        "import sys, voicestate as vs\n"
        "store = vs.open_store()\n"
        "store.open('c', agent='a').record(vs.Note('x'))\n"
        "print(store.events('c')[-1].TYPE, vs.Event.__subclasses__()[-1].TYPE)\n"  # the event types: registered
        "print('langchain_core' in sys.modules, 'langgraph' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["Note", "lg.Cleared", "False", "False"]
