"""Resuming a call into Pipecat: a tool running at the handoff, another OS process, a crash."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kit import WORD_SECS, Call, PlayoutTransport, ScriptedLLM, ScriptedTTS, until
from pipecat.frames.frames import InterruptionFrame, LLMRunFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.services.llm_service import FunctionCallParams
from pipecat.tests.utils import SleepFrame, run_test
from test_recording import ANSWER, user_says

import voicestate as vs
from voicestate_pipecat import VoiceStateProcessor, resume_call

CHILD = Path(__file__).with_name("child.py")


async def test_a_tool_running_at_the_handoff_is_pending_and_the_receiver_finishes_it(store: vs.Store) -> None:
    session = await store.aopen("call-1", agent="triage")
    release = asyncio.Event()

    async def lookup_invoices(params: FunctionCallParams) -> None:
        await release.wait()  # still running when the call is handed off
        await params.result_callback({"charges": ["late answer from the old process"]})

    llm = ScriptedLLM([Call("lookup_invoices", {"account": "A-77"}, "t1"), "Done."])
    llm.register_function("lookup_invoices", lookup_invoices, cancel_on_interruption=False)
    pair = LLMContextAggregatorPair(LLMContext())
    processor = VoiceStateProcessor(session)
    billing_result = {"charges": [42.10, 42.10]}

    async def hand_over() -> None:
        await until(lambda: bool(session.state.pending_tools()))
        packet = await session.ahandoff("billing", reason="double charge")
        billing = await store.aresume(packet, agent="billing")
        assert [t.call_id for t in billing.state.pending_tools()] == ["t1"]
        await billing.arecord(vs.ToolReturned("t1", billing_result))
        release.set()  # the old process's handler finishes too late: its result must not win

    frames = [*user_says("Why was I charged twice?"), SleepFrame(1.0)]
    await asyncio.gather(
        run_test(Pipeline([pair.user(), llm, processor, pair.assistant()]), frames_to_send=frames), hand_over()
    )
    await processor.flush()
    state = store.load("call-1")
    tool = state.tools["t1"]
    assert (tool.status, tool.result, tool.agent) == ("ok", billing_result, "triage")  # triage called it
    # The old process's late result was offered as a non-owner write and lost to the first result.
    late = [e for e in store.events("call-1") if isinstance(e, vs.ToolReturned)]
    assert [e.agent for e in late] == ["billing", "triage"]
    assert processor.session is session and session.fenced


async def test_a_pipeline_in_another_process_resumes_with_the_expected_context(sqlite_url: str) -> None:
    store = vs.open_store(sqlite_url)
    session = await store.aopen("call-1", agent="triage")
    pair = LLMContextAggregatorPair(LLMContext())
    processor = VoiceStateProcessor(session)
    frames = [*user_says("I was charged twice"), SleepFrame(8 * WORD_SECS + 0.1), InterruptionFrame(), SleepFrame(0.4)]
    pipeline = Pipeline(
        [pair.user(), ScriptedLLM([ANSWER]), ScriptedTTS(), PlayoutTransport(), processor, pair.assistant()]
    )
    await run_test(pipeline, frames_to_send=frames)
    await processor.flush()
    await session.arecord(vs.SlotsSet({"account_id": "A-77"}))
    packet = await session.ahandoff("billing", reason="double charge")
    heard = session.state.turns[-1].heard
    assert heard and heard != ANSWER

    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(CHILD), "resume", sqlite_url, packet.to_token()],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["pid"] != os.getpid() and report["epoch"] == 2
    # The child's LLM received exactly the context the policy renders for billing ...
    assert report["seen"] == report["expected"]
    assert report["expected"] == store.load("call-1").context("openai", agent="billing")[: len(report["expected"])]
    contents = [str(m.get("content")) for m in report["seen"]]
    assert "I was charged twice" in contents
    assert heard in [m.get("content") for m in report["seen"] if m.get("role") == "assistant"]
    assert all(ANSWER not in c for c in contents)  # ... with only what the caller heard of the cut turn
    assert any("A-77" in c for c in contents)  # the facts
    # What the child's pipeline said is in the call, as billing's.
    last = store.load("call-1").turns[-1]
    assert (last.agent, last.text) == ("billing", "I can see both charges. I have refunded the duplicate.")
    store.close()


async def test_a_restarted_pipeline_takes_over_after_the_worker_died(sqlite_url: str) -> None:
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(CHILD), "die", sqlite_url, "call-9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9 and "recorded" in proc.stdout, proc.stderr[-3000:]
    store = vs.open_store(sqlite_url, lease=1)
    assert store.load("call-9").owner == "triage"
    # At once, another worker's takeover is refused while the dead owner's lease may be live;
    # resume_call waits for it to lapse.
    session, context = await resume_call(store, "call-9", agent="triage", wait=5.0)
    assert session.epoch == 2
    messages = list(context.get_messages())
    assert {"role": "user", "content": "My internet bill is wrong."} in messages
    assert {"role": "assistant", "content": "Sorry to hear that. Which account is it?"} in messages
    # A second recovery worker for the same death loses.
    started = time.monotonic()
    with pytest.raises(vs.OwnershipError):
        await resume_call(store, "call-9", agent="triage", from_epoch=1, wait=10.0)
    assert time.monotonic() - started < 3  # at once: the epoch moved on, no point waiting
    # The restarted pipeline goes on with the caller's context.
    llm = ScriptedLLM(["Thanks for waiting. Let me look at your bill."])
    pair = LLMContextAggregatorPair(context)
    processor = VoiceStateProcessor(session)
    await run_test(
        Pipeline([pair.user(), llm, processor, pair.assistant()]), frames_to_send=[LLMRunFrame(), SleepFrame(0.3)]
    )
    await processor.flush()
    assert llm.seen[0][: len(messages)] == messages
    state = store.load("call-9")
    assert (state.owner, state.epoch, state.turns[-1].text) == (
        "triage",
        2,
        "Thanks for waiting. Let me look at your bill.",
    )
    store.close()


async def test_a_worker_in_another_process_redeems_the_token_from_the_bus_message(sqlite_url: str) -> None:
    from pipecat.bus.messages import BusActivateWorkerMessage
    from pipecat.bus.serializers.json import JSONMessageSerializer

    from voicestate_pipecat import context_messages, handoff_args

    store = vs.open_store(sqlite_url)
    session = await store.aopen("call-1", agent="sales")
    await session.arecord(vs.UserSpoke("My router blinks red."))
    await session.arecord(vs.AgentSpoke("Let me get you to technical support."))
    packet = await session.ahandoff("billing", reason="router")
    args = handoff_args(packet, context_messages(session))
    wire = JSONMessageSerializer().serialize(
        BusActivateWorkerMessage(source="sales", target="billing", args=args.to_dict())
    )
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(CHILD), "worker", sqlite_url, wire.hex()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (report["owner"], report["epoch"]) == ("billing", 2)
    # The worker's context is the call, rendered for it at redemption; the stale message is gone.
    assert report["messages"] == store.load("call-1").context("openai", agent="billing")
    assert {"role": "user", "content": "My router blinks red."} in report["messages"]
    assert "stale message from an earlier turn" not in str(report["messages"])
    with pytest.raises(vs.FencedError):
        await session.arecord(vs.Note("the sender was fenced by the redemption in the other process"))
    store.close()


async def test_resume_call_gives_up_at_once_on_an_ended_call(store: vs.Store) -> None:
    s = await store.aopen("call-1", agent="triage")
    await s.aend("caller hung up")
    started = time.monotonic()
    with pytest.raises(vs.OwnershipError):
        await resume_call(store, "call-1", agent="triage", wait=10.0)
    assert time.monotonic() - started < 3
