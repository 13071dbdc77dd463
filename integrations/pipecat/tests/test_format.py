"""The "pipecat" format both ways, and the member found through the entry-point group alone."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pipecat.frames.frames import LLMMessagesUpdateFrame
from pipecat.processors.aggregators.llm_context import LLMContext, LLMSpecificMessage

import voicestate as vs
from voicestate_pipecat import context_messages, update_frame


def a_call(store: vs.Store) -> vs.Session:
    s = store.open("call-1", agent="triage")
    s.record(vs.UserSpoke("I was charged twice"))
    turn = s.record(vs.AgentSpoke("Let me pull up your invoices and check both charges."))
    s.record(vs.Interrupted(turn=turn, heard="Let me pull up", heard_ms=910))
    s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))
    s.record(vs.ToolCalled("t2", "check_card", {}))
    s.record(vs.ToolReturned("t2", {"ok": True}))
    s.record(vs.SlotsSet({"account_id": "A-77"}))
    return s


def test_the_context_is_an_llm_context_with_the_policy_applied(store: vs.Store) -> None:
    s = a_call(store)
    ctx = s.context("pipecat")
    assert isinstance(ctx, LLMContext)
    assert ctx.get_messages() == s.context("openai")
    contents = [str(m.get("content")) for m in ctx.get_messages()]
    assert "Let me pull up" in contents and not any("check both charges" in c for c in contents)
    short = s.context("pipecat", vs.ContextPolicy(last_turns=1, facts=False))
    assert short.get_messages() == s.context("openai", vs.ContextPolicy(last_turns=1, facts=False))
    assert context_messages(s) == ctx.get_messages()
    frame = update_frame(s, run_llm=True)
    assert isinstance(frame, LLMMessagesUpdateFrame) and frame.messages == ctx.get_messages() and frame.run_llm


def test_parse_then_render_gives_the_same_messages(store: vs.Store) -> None:
    s = a_call(store)
    ctx = s.context("pipecat", vs.ContextPolicy(summary=False))
    other = vs.open_store("memory://")
    s2 = other.open("call-2", agent="triage")
    s2.record(*vs.parse_context("pipecat", ctx))
    assert s2.context("pipecat", vs.ContextPolicy(summary=False)).get_messages() == ctx.get_messages()
    assert [t.call_id for t in s2.state.pending_tools()] == ["t1"]
    other.close()


def test_what_pipecats_aggregator_writes_parses_as_what_it_means() -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "t1", "content": "IN_PROGRESS"},
        {"role": "assistant", "content": None, "tool_calls": [{**call, "id": "t2"}]},
        {"role": "tool", "tool_call_id": "t2", "content": "CANCELLED"},
        {"role": "assistant", "content": None, "tool_calls": [{**call, "id": "t3"}]},
        {"role": "tool", "tool_call_id": "t3", "content": "COMPLETED"},
        LLMSpecificMessage(llm="google", message={"parts": []}),
    ]
    events = vs.parse_context("pipecat", LLMContext(messages=messages))
    kinds = [(e.TYPE, getattr(e, "call_id", None)) for e in events]
    assert kinds == [
        ("UserSpoke", None),
        ("ToolCalled", "t1"),  # still running: no result
        ("ToolCalled", "t2"),
        ("ToolCancelled", "t2"),
        ("ToolCalled", "t3"),
        ("ToolReturned", "t3"),
    ]


def test_bad_input_is_a_typed_error() -> None:
    with pytest.raises(vs.InvalidArgument, match="LLMContext"):
        vs.parse_context("pipecat", "hello")
    with pytest.raises(vs.InvalidEvent):
        vs.parse_context("pipecat", [{"role": "tool", "tool_call_id": "nope", "content": "CANCELLED"}])


def test_a_fresh_process_finds_the_member_through_the_entry_point_group() -> None:
    code = (
        "import sys, voicestate as vs\n"
        "s = vs.open_store().open('c', agent='a')\n"
        "print(type(s.context('pipecat')).__name__, 'voicestate_pipecat._format' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["LLMContext", "True"]
    # Opening a store alone does not import Pipecat.
    code = "import sys, voicestate as vs\nvs.open_store().close()\nprint('pipecat' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False"]


async def test_activation_args_without_a_token_are_a_packet_error(store: vs.Store) -> None:
    from kit import ScriptedLLM
    from pipecat.workers.llm import LLMWorker

    from voicestate_pipecat import receive_handoff

    worker = LLMWorker("billing", llm=ScriptedLLM())
    assert await receive_handoff(worker, {"messages": []}, store) is None  # activated without a handoff
    with pytest.raises(vs.PacketError) as caught:
        await receive_handoff(worker, {"metadata": {"voicestate": {"call_id": "c"}}}, store)
    assert caught.value.reason == "malformed"
    with pytest.raises(vs.PacketError):
        await receive_handoff(worker, {"metadata": {"voicestate": {"token": "vs1.garbage"}}}, store)
