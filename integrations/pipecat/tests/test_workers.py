"""Sales -> technical -> sales: LLMWorker handoffs through voicestate, in one process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kit import Call, ScriptedLLM, run_workers, until
from pipecat.frames.frames import (
    EndFrame,
    FunctionCallResultProperties,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.services.llm_service import FunctionCallParams
from pipecat.workers.llm import LLMWorker, tool
from pipecat.workers.runner import WorkerRunner

import voicestate as vs
from voicestate_pipecat import METADATA_KEY, VoiceStateProcessor, hand_off, handoff_args, receive_handoff


class Agent(LLMWorker):
    """An LLM worker with its own context, recorded by its own VoiceStateProcessor."""

    def __init__(self, name: str, store: vs.Store, script: list[Any], *, active: bool = False) -> None:
        self.store = store
        self.llm_service = ScriptedLLM(script)
        self.context = LLMContext()
        pair = LLMContextAggregatorPair(self.context)
        self.processor = VoiceStateProcessor(None)
        self.activations: list[dict[str, Any] | None] = []
        self.activated = asyncio.Event()
        pipeline = Pipeline([pair.user(), self.llm_service, self.processor, pair.assistant()])
        super().__init__(name, llm=self.llm_service, pipeline=pipeline, active=active)

    @tool(cancel_on_interruption=False)
    async def transfer(self, params: FunctionCallParams, to: str, reason: str) -> None:
        """Transfer the caller to another agent.

        Args:
            to (str): the agent's name.
            reason (str): why.
        """
        await params.result_callback({"transferred_to": to}, properties=FunctionCallResultProperties(run_llm=False))
        assert self.processor.session is not None
        await hand_off(self, self.processor.session, to, reason=reason, params=params)

    async def on_activated(self, args: dict[str, Any] | None) -> None:
        self.activations.append(None if args is None else dict(args))
        await receive_handoff(self, args, self.store, recorder=self.processor, context=self.context)
        await super().on_activated(args)
        self.activated.set()


def user_says(text: str) -> list[Any]:
    return [UserStartedSpeakingFrame(), TranscriptionFrame(text, "caller", ""), UserStoppedSpeakingFrame()]


async def test_sales_technical_sales_each_worker_sees_the_whole_call(store: vs.Store) -> None:
    sales = Agent(
        "sales",
        store,
        [
            [
                "Sorry about that. Let me get you to a technician.",
                Call("transfer", {"to": "technical", "reason": "wifi drops"}, "x1"),
            ],
            "Welcome back! Is there anything else about your plan?",
        ],
        active=True,
    )
    technical = Agent(
        "technical",
        store,
        [
            "Hi, this is technical support. Please restart your router.",
            Call("transfer", {"to": "sales", "reason": "fixed"}, "x2"),
        ],
    )
    sales.processor.session = await store.aopen("call-1", agent="sales")

    async def conversation() -> None:
        await sales.activated.wait()
        for frame in user_says("My wifi keeps dropping."):
            await sales.queue_frame(frame)
        await asyncio.wait_for(technical.activated.wait(), 5)
        await until(lambda: len(technical.llm_service.seen) == 1)
        await until(
            lambda: technical.processor.session is not None and len(technical.processor.session.state.turns) >= 3
        )
        sales.activated.clear()
        for frame in user_says("That fixed it, thanks. Back to sales please."):
            await technical.queue_frame(frame)
        await asyncio.wait_for(sales.activated.wait(), 5)
        await until(lambda: len(sales.llm_service.seen) == 2)
        await until(lambda: store.load("call-1").turns[-1].text.startswith("Welcome back"))
        for worker in (sales, technical):
            await worker.processor.flush()
            await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(sales, technical)
    await run_workers(runner, conversation)

    state = store.load("call-1")
    assert (state.owner, state.epoch) == ("sales", 3)
    assert [(t.role, t.agent) for t in state.turns] == [
        ("user", "sales"),
        ("agent", "sales"),
        ("agent", "technical"),
        ("user", "technical"),
        ("agent", "sales"),
    ]
    assert [e.to_agent for e in state.handoffs] == ["technical", "sales"]
    # Each handoff follows the turn and the tool call that asked for it.
    order = [(e.TYPE, getattr(e, "call_id", None)) for e in store.events("call-1")]
    assert order.index(("ToolCalled", "x1")) < order.index(("HandedOff", None))
    # The activation carried the token, and the target's first context was the whole call so far.
    (args,) = technical.activations
    assert args is not None and args["metadata"][METADATA_KEY]["token"].startswith("vs1.")
    first = technical.llm_service.seen[0]
    contents = [str(m.get("content")) for m in first]
    assert "My wifi keeps dropping." in contents
    assert "Sorry about that. Let me get you to a technician." in contents
    assert any(m.get("tool_calls") for m in first)  # the transfer call, finished
    # Back at sales: everything technical and the caller said, once each (its context was replaced, not appended).
    back = sales.llm_service.seen[-1]
    texts = [str(m.get("content")) for m in back]
    assert texts.count("My wifi keeps dropping.") == 1
    assert "Hi, this is technical support. Please restart your router." in texts
    assert "That fixed it, thanks. Back to sales please." in texts
    assert all(t.status == "ok" for t in state.tools.values())
    # The earlier owner's session is fenced: it refuses writes.
    old = technical.processor.session
    assert old is not None and old.agent == "technical"
    with pytest.raises(vs.FencedError):
        await old.arecord(vs.Note("technical again, after the call went back to sales"))


async def test_a_handoff_that_cannot_be_redeemed_goes_back_to_the_sender(store: vs.Store) -> None:
    from pipecat.bus.messages import BusActivateWorkerMessage

    sales = Agent("sales", store, ["Sorry, I could not transfer you. Let me help."], active=True)
    technical = Agent("technical", store, [])
    session = await store.aopen("call-1", agent="sales")
    sales.processor.session = session
    packet = await session.ahandoff("technical")
    await session.acancel_handoff()  # withdrawn before the target redeems it
    args = handoff_args(packet, [{"role": "user", "content": "hi"}]).to_dict()

    async def conversation() -> None:
        await sales.activated.wait()
        sales.activated.clear()
        await sales.send_bus_message(BusActivateWorkerMessage(source="sales", target="technical", args=args))
        await asyncio.wait_for(sales.activated.wait(), 5)  # bounced back
        await until(lambda: not technical.active)
        await until(lambda: len(sales.llm_service.seen) == 1)  # and told the caller
        for worker in (sales, technical):
            await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(sales, technical)

    await run_workers(runner, conversation)
    state = store.load("call-1")
    assert (state.owner, state.epoch) == ("sales", 1)  # the sender never lost the call
    assert (
        technical.activations[0] is not None and technical.activations[0]["metadata"]["voicestate"]["from"] == "sales"
    )
    assert technical.llm_service.seen == []  # the target never ran on a handoff it did not get
    note = sales.llm_service.seen[0][-1]
    assert note["role"] == "system" and "did not go through" in note["content"]
