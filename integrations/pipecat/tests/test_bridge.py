"""Pipecat's bridged layout: one main pipeline records the call; LLM workers speak over the bus."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kit import Call, PlayoutTransport, ScriptedLLM, ScriptedTTS, run_workers, until
from pipecat.frames.frames import EndFrame, FunctionCallResultProperties
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.services.llm_service import FunctionCallParams
from pipecat.workers.llm import LLMWorker, LLMWorkerActivationArgs, tool
from pipecat.workers.runner import WorkerRunner
from test_workers import user_says

import voicestate as vs
from voicestate_pipecat import VoiceStateBridge, VoiceStateProcessor


class Acme(LLMWorker):
    """A bridged LLM worker (no pipeline of its own beyond the LLM), as in Pipecat's examples."""

    def __init__(self, name: str, script: list[Any]) -> None:
        self.llm_service = ScriptedLLM(script)
        super().__init__(name, llm=self.llm_service, bridged=())

    @tool(cancel_on_interruption=False)
    async def transfer_to_agent(self, params: FunctionCallParams, agent: str, reason: str) -> None:
        """Transfer the user to another agent.

        Args:
            agent (str): the agent.
            reason (str): why.
        """
        await params.result_callback({"to": agent}, properties=FunctionCallResultProperties(run_llm=False))
        note = LLMWorkerActivationArgs(messages=[{"role": "developer", "content": reason}])
        await self.activate_worker(agent, args=note, deactivate_self=True)


@pytest.mark.parametrize("speech", [False, True], ids=["text", "tts-and-playout"])
async def test_each_turn_is_recorded_as_the_worker_that_said_it(store: vs.Store, speech: bool) -> None:
    runner = WorkerRunner(handle_sigint=False)
    greeter = Acme(
        "greeter",
        [["Hi! Let me get you to support.", Call("transfer_to_agent", {"agent": "support", "reason": "boots"}, "x1")]],
    )
    support = Acme("support", ["Rocket boots are 299 dollars."])
    session = await store.aopen("call-1", agent="main")
    context = LLMContext()
    pair = LLMContextAggregatorPair(context)
    processor = VoiceStateProcessor(session)
    bridge = VoiceStateBridge(bus=runner.bus, worker_name="main")
    # With speech, the switch frame crosses the TTS and the output transport behind the greeter's audio.
    voice = [ScriptedTTS(), PlayoutTransport()] if speech else []
    main = PipelineWorker(Pipeline([pair.user(), bridge, *voice, processor, pair.assistant()]), name="main")
    started = asyncio.Event()

    @main.event_handler("on_pipeline_started")
    async def _started(*_: Any) -> None:
        started.set()

    async def conversation() -> None:
        await started.wait()
        await main.activate_worker("greeter")
        await until(lambda: processor.session is not None and processor.session.agent == "greeter")
        for frame in user_says("Tell me about the rocket boots."):
            await main.queue_frame(frame)
        await until(lambda: len(support.llm_service.seen) == 1, timeout=10)
        await until(lambda: bool(store.load("call-1").turns) and store.load("call-1").turns[-1].agent == "support")
        await processor.flush()
        for worker in (main, greeter, support):
            await worker.queue_frame(EndFrame())

    await runner.add_workers(greeter, support, main)
    await run_workers(runner, conversation)

    state = store.load("call-1")
    assert [(t.role, t.agent, t.text) for t in state.turns] == [
        ("user", "greeter", "Tell me about the rocket boots."),
        ("agent", "greeter", "Hi! Let me get you to support."),
        ("agent", "support", "Rocket boots are 299 dollars."),
    ]
    assert [(h.agent, h.to_agent) for h in state.handoffs] == [("main", "greeter"), ("greeter", "support")]
    assert (state.owner, state.epoch) == ("support", 3)
    # The transfer call is the greeter's, recorded before the call moved on.
    assert state.tools["x1"].agent == "greeter" and state.tools["x1"].status == "ok"
    order = [e.TYPE for e in store.events("call-1")]
    assert order.index("ToolCalled") < order.index("OwnerChanged", order.index("ToolCalled"))
    # The support worker's LLM saw the main pipeline's context: the caller and the greeter.
    seen = [str(m.get("content")) for m in support.llm_service.seen[0]]
    assert "Tell me about the rocket boots." in seen and "Hi! Let me get you to support." in seen
