"""A Flow's state and node survive a crash: saved in the call, restored into a new FlowManager."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kit import ScriptedLLM
from pipecat.flows import Flow, FlowConfig, FlowManager
from pipecat.frames.frames import EndFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.workers.runner import WorkerRunner

import voicestate as vs
from voicestate_pipecat import restore_flow, save_flow

FLOW = """
initial_node: greet
nodes:
  greet:
    task_messages:
      - role: developer
        content: Greet the caller and ask for their account.
  billing:
    task_messages:
      - role: developer
        content: "Help the caller with the bill of account {{ account }}."
"""


async def run_flow(session: vs.Session, body: Any) -> tuple[FlowManager, ScriptedLLM]:
    """A real pipeline and FlowManager, running while ``body(manager)`` does its work."""
    llm = ScriptedLLM(["Hello!", "Let me look at that bill.", "Sure."])
    pair = LLMContextAggregatorPair(session.context("pipecat"))
    worker = PipelineWorker(Pipeline([pair.user(), llm, pair.assistant()]), cancel_on_idle_timeout=False)
    manager = FlowManager(llm=llm, context_aggregator=pair, worker=worker)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(*_: Any) -> None:
        started.set()

    async def drive() -> None:
        await asyncio.wait_for(started.wait(), 5)
        try:
            await body(manager)
            await asyncio.sleep(0.2)
        finally:
            await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), 20)
    return manager, llm


@pytest.mark.parametrize("declarative", [True, False], ids=["Flow.node", "node-factory"])
async def test_flow_state_and_node_are_restored_after_a_crash(store: vs.Store, declarative: bool) -> None:
    flow = Flow(FlowConfig.from_yaml(FLOW), handlers={})
    nodes: Any = flow if declarative else (lambda name: flow.node(name))
    session = await store.aopen("call-1", agent="triage")

    async def first_worker(manager: FlowManager) -> None:
        await manager.initialize(flow.initial_node)
        manager.state["account"] = "A-77"
        await manager.set_node_from_config(flow.node("billing"))
        save_flow(session, manager)
        await session.aflush()

    await run_flow(session, first_worker)
    # The worker died; a new one takes the call over and rebuilds its flow from the store.
    recovered = await store.aresume("call-1", agent="triage", takeover=True, force=True)

    async def second_worker(manager: FlowManager) -> None:
        assert await restore_flow(recovered, manager, nodes) == "billing"

    manager, llm = await run_flow(recovered, second_worker)
    assert manager.state == {"account": "A-77"}
    assert manager.current_node == "billing"
    # Entering the node rendered its prompt from the restored state.
    assert any("account A-77" in str(m.get("content")) for m in llm.seen[-1])
    # The saved flow is the agent's own: other agents' context never shows it.
    assert "pipecat_flow" not in str(store.load("call-1").context("openai", agent="billing"))


async def test_nothing_saved_restores_nothing(store: vs.Store) -> None:
    session = await store.aopen("call-1", agent="triage")
    flow = Flow(FlowConfig.from_yaml(FLOW), handlers={})

    async def body(manager: FlowManager) -> None:
        assert await restore_flow(session, manager, flow) is None
        assert manager.current_node is None

    await run_flow(session, body)


async def test_a_flow_state_that_is_not_json_is_refused(store: vs.Store) -> None:
    session = await store.aopen("call-1", agent="triage")

    async def body(manager: FlowManager) -> None:
        manager.state["when"] = object()
        with pytest.raises(vs.InvalidArgument, match="JSON"):
            save_flow(session, manager)

    await run_flow(session, body)
    assert [e.TYPE for e in store.events("call-1")] == ["CallStarted"]


async def test_a_flow_goes_on_after_a_handoff_to_another_agent(store: vs.Store) -> None:
    flow = Flow(FlowConfig.from_yaml(FLOW), handlers={})
    triage = await store.aopen("call-1", agent="triage")

    async def first(manager: FlowManager) -> None:
        await manager.initialize(flow.initial_node)
        manager.state["account"] = "B-12"
        await manager.set_node_from_config(flow.node("billing"))
        save_flow(triage, manager)

    await run_flow(triage, first)
    packet = await triage.ahandoff("billing", reason="bill question")  # a barrier: the saved flow is stored
    billing = await store.aresume(packet, agent="billing")

    async def second(manager: FlowManager) -> None:
        assert await restore_flow(billing, manager, flow) is None  # billing saved nothing of its own
        assert await restore_flow(billing, manager, flow, agent="triage") == "billing"

    manager, _ = await run_flow(billing, second)
    assert (manager.state, manager.current_node) == ({"account": "B-12"}, "billing")
