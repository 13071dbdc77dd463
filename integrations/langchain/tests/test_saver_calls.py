"""VoiceStateSaver on a voice call: a LangGraph agent resumes the call as its thread.

The call is started by a triage agent in another OS process (the caller speaks, barges in,
is handed off) on a shared SQLite store; the graphs are LangGraph's own classes
(``StateGraph(MessagesState)``, ``create_agent``) with LangChain's fake chat model and a
real tool, offline.
"""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from kit import CALLER_FIRST, CALLER_SECOND, HEARD, SPOKEN, run_child, run_triage, scripted, texts
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, interrupt

import voicestate as vs
from voicestate_langchain import VoiceStateSaver

CALL = "call-7"
CONFIG: Any = {"configurable": {"thread_id": CALL}}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'calls.db'}"


@pytest.fixture
def handed(url: str) -> vs.Store:
    """The store, once the triage agent (another process) has handed the call to billing."""
    run_triage(url, CALL)
    store = vs.open_store(url)
    yield store  # type: ignore[misc]
    store.close()


class Billing(MessagesState):
    steps: Annotated[int, operator.add]  # the graph's own channel: billing's private state in the call


def billing_graph(model: Any, saver: VoiceStateSaver) -> Any:
    def agent(state: Billing) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])], "steps": 1}

    builder = StateGraph(Billing).add_node("agent", agent).add_edge(START, "agent").add_edge("agent", END)
    return builder.compile(checkpointer=saver)


@tool
def lookup_invoices(account: str) -> dict[str, Any]:
    """The invoices of an account."""
    return {"account": account, "invoices": [{"id": "INV-3", "amount": 42.5}, {"id": "INV-4", "amount": 42.5}]}


def _owned_by(store: vs.Store, agent: str) -> list[vs.Event]:
    return [e for e in store.events(CALL) if e.agent == agent]


def _conversation(events: list[vs.Event]) -> list[tuple[str, str]]:
    out = []
    for e in events:
        if isinstance(e, vs.UserSpoke | vs.AgentSpoke):
            out.append((type(e).__name__, e.text))
        elif isinstance(e, vs.ToolCalled):
            out.append(("ToolCalled", f"{e.name}({e.arguments})"))
        elif isinstance(e, vs.ToolReturned):
            out.append(("ToolReturned", json.dumps(e.result, sort_keys=True)))
    return out


def test_a_graph_resumes_a_call_handed_off_in_another_process(handed: vs.Store) -> None:
    store = handed
    session = store.resume(CALL, agent="billing")
    model = scripted(AIMessage("I can see two charges of 42.50 on your March invoice."))
    graph = billing_graph(model, VoiceStateSaver(store, session=session))

    out = graph.invoke({"messages": []}, CONFIG)  # the caller's words are the call's already

    seen = texts(model.seen[0])
    assert CALLER_FIRST in seen and CALLER_SECOND in seen
    assert HEARD in seen and SPOKEN not in seen  # only what the caller heard of the cut turn
    assert out["messages"][-1].content == "I can see two charges of 42.50 on your March invoice."
    assert out["steps"] == 1
    # the reply is the call's: in its log, written by billing, and in the next agent's context
    assert _conversation(_owned_by(store, "billing")) == [
        ("AgentSpoke", "I can see two charges of 42.50 on your March invoice.")
    ]
    session.handoff(to="human", kind="escalate")
    human = store.resume(CALL, agent="human")
    assert human.context("openai")[-1] == {
        "role": "assistant",
        "content": "I can see two charges of 42.50 on your March invoice.",
        "name": "billing",
    }


async def test_create_agent_with_a_real_tool_records_its_call_in_order(handed: vs.Store) -> None:
    store = handed
    session = await store.aresume(CALL, agent="billing")
    call = {"name": "lookup_invoices", "args": {"account": "A-77"}, "id": "call_inv"}
    model = scripted(AIMessage("", tool_calls=[call]), AIMessage("You were charged twice; I refunded one."))
    agent = create_agent(
        model, [lookup_invoices], system_prompt="You are billing.", checkpointer=VoiceStateSaver(store, session=session)
    )

    await agent.ainvoke({"messages": [HumanMessage("Why twice?")]}, CONFIG)

    first = texts(model.seen[0])
    assert CALLER_FIRST in first and HEARD in first and SPOKEN not in first and "Why twice?" in first
    assert isinstance(model.seen[1][-1], ToolMessage) and "INV-4" in str(model.seen[1][-1].content)
    expected = [
        ("UserSpoke", "Why twice?"),  # the graph's input, recorded once
        ("ToolCalled", "lookup_invoices({'account': 'A-77'})"),
        ("ToolReturned", json.dumps(lookup_invoices.invoke({"account": "A-77"}), sort_keys=True)),
        ("AgentSpoke", "You were charged twice; I refunded one."),
    ]
    assert _conversation(_owned_by(store, "billing")) == expected
    assert store.load(CALL).tools["call_inv"].status == "ok"
    # nothing of the conversation is stored a second time, in a checkpoint
    lg = [e for e in store.events(CALL) if type(e).TYPE.startswith("lg.")]
    assert lg and not any("Why twice" in repr(e) or "refunded" in repr(e) or "INV-4" in repr(e) for e in lg)
    # the next agent gets it all
    await session.ahandoff(to="human", kind="escalate")
    human = await store.aresume(CALL, agent="human")
    ctx = human.context("openai")
    assert [m["role"] for m in ctx[-4:]] == ["user", "assistant", "tool", "assistant"]
    assert ctx[-3]["tool_calls"][0]["function"]["name"] == "lookup_invoices"


def test_a_zombie_run_is_fenced_and_stores_nothing(handed: vs.Store) -> None:
    store = handed
    session = store.resume(CALL, agent="billing")
    graph = billing_graph(
        scripted(AIMessage("first"), AIMessage("zombie reply")), VoiceStateSaver(store, session=session)
    )
    graph.invoke({"messages": [HumanMessage("hello")]}, CONFIG)
    # the worker is thought dead: another takes the call over
    store.resume(CALL, agent="billing-2", takeover=True, force=True)
    before = store.events(CALL)

    with pytest.raises(vs.FencedError):
        graph.invoke({"messages": [HumanMessage("zombie words")]}, CONFIG)

    assert session.fenced
    after = store.events(CALL)
    assert [e.id for e in after] == [e.id for e in before]
    assert "zombie" not in repr(after)


def test_the_graph_state_is_the_agents_across_stints_and_processes(url: str, handed: vs.Store) -> None:
    store = handed
    with store.resume(CALL, agent="billing") as session:
        graph = billing_graph(scripted(AIMessage("Refund started.")), VoiceStateSaver(store, session=session))
        graph.invoke({"messages": []}, CONFIG)
        session.handoff(to="triage", kind="return")
    # back at triage, in another process: the caller says more, then billing again
    run_child(
        f"""
        import voicestate as vs
        store = vs.open_store({url!r})
        with store.resume({CALL!r}, agent="triage") as s:
            s.record(vs.UserSpoke("Also my card expires next month"))
            s.handoff(to="billing", reason="card update")
        print("back")
        """,
        "back",
    )
    session = store.resume(CALL, agent="billing")
    model = scripted(AIMessage("I'll update the card."))
    graph = billing_graph(model, VoiceStateSaver(store, session=session))
    out = graph.invoke({"messages": []}, CONFIG)

    seen = texts(model.seen[0])
    assert "Refund started." in seen and "Also my card expires next month" in seen
    assert out["steps"] == 2  # billing's own channel came back from its checkpoint
    history = list(graph.get_state_history(CONFIG))
    assert [h.values["steps"] for h in history][:2] == [2, 1]


def test_a_worker_that_died_mid_call_is_resumed_by_another_process(url: str, handed: vs.Store) -> None:
    # the worker: a graph step in its own process, which then dies without a word
    run_child(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import voicestate as vs
        from langchain_core.messages import AIMessage
        from voicestate_langchain import VoiceStateSaver
        from test_saver_calls import billing_graph, CONFIG
        from kit import scripted
        store = vs.open_store({url!r})
        s = store.resume({CALL!r}, agent="billing")
        graph = billing_graph(scripted(AIMessage("Refund started.")), VoiceStateSaver(store, session=s))
        graph.invoke({{"messages": []}}, CONFIG)
        print("stepped", flush=True)
        os._exit(0)
        """,
        "stepped",
    )
    store = handed
    session = store.resume(CALL, agent="billing", takeover=True, force=True)  # its lease may still run
    graph = billing_graph(scripted(AIMessage("Done.")), VoiceStateSaver(store, session=session))
    state = graph.get_state(CONFIG)
    assert state.values["steps"] == 1
    assert state.values["messages"][-1].content == "Refund started."
    out = graph.invoke({"messages": []}, CONFIG)
    assert out["steps"] == 2 and out["messages"][-1].content == "Done."


def test_an_interrupt_waits_for_the_caller_on_the_call_thread(handed: vs.Store) -> None:
    store = handed
    session = store.resume(CALL, agent="billing")

    def confirm(state: MessagesState) -> dict[str, Any]:
        answer = interrupt("Refund 42.50 to the card ending 4242?")
        return {"messages": [AIMessage(f"Refund {'confirmed' if answer == 'yes' else 'cancelled'}.")]}

    def compiled() -> Any:
        builder = StateGraph(MessagesState).add_node("confirm", confirm).add_edge(START, "confirm")
        return builder.add_edge("confirm", END).compile(checkpointer=VoiceStateSaver(store, session=session))

    graph = compiled()
    first = graph.invoke({"messages": []}, CONFIG)
    assert first["__interrupt__"][0].value == "Refund 42.50 to the card ending 4242?"
    assert graph.get_state(CONFIG).next == ("confirm",)

    # the answer comes later, to another saver on the same call (it reads the pending interrupt)
    graph2 = compiled()
    out = graph2.invoke(Command(resume="yes"), CONFIG)
    assert out["messages"][-1].content == "Refund confirmed."
    assert _conversation(_owned_by(store, "billing")) == [("AgentSpoke", "Refund confirmed.")]


def test_a_voice_call_is_read_only_without_its_session(handed: vs.Store) -> None:
    store = handed
    saver = VoiceStateSaver(store)
    start = saver.get_tuple(CONFIG)
    assert start is not None
    msgs = start.checkpoint["channel_values"]["messages"]
    assert CALLER_FIRST in texts(msgs) and SPOKEN not in texts(msgs)
    before = len(store.events(CALL))
    graph = billing_graph(scripted(AIMessage("no")), saver)
    with pytest.raises(vs.OwnershipError, match="session"):
        graph.invoke({"messages": []}, CONFIG)
    assert len(store.events(CALL)) == before
    with pytest.raises(vs.InvalidArgument, match="append-only"):
        saver.prune([CALL])
    with pytest.raises(vs.InvalidArgument, match="append-only"):
        saver.copy_thread(CALL, "elsewhere")


def test_delete_thread_forgets_the_graph_state_but_not_the_call(handed: vs.Store) -> None:
    store = handed
    session = store.resume(CALL, agent="billing")
    saver = VoiceStateSaver(store, session=session)
    graph = billing_graph(scripted(AIMessage("Noted."), AIMessage("Again.")), saver)
    graph.invoke({"messages": []}, CONFIG)
    spoken = [e.text for e in store.events(CALL) if isinstance(e, vs.AgentSpoke)]

    saver.delete_thread(CALL)

    assert [e.text for e in store.events(CALL) if isinstance(e, vs.AgentSpoke)] == spoken
    state = graph.get_state(CONFIG)
    assert state.values.get("steps", 0) == 0  # billing's own channels are gone
    assert state.values["messages"][-1].content == "Noted."  # the conversation is the call's
    assert graph.invoke({"messages": []}, CONFIG)["steps"] == 1


def test_a_task_that_spoke_is_not_run_again_when_a_sibling_interrupts(handed: vs.Store) -> None:
    store = handed
    session = store.resume(CALL, agent="billing")
    runs: list[str] = []

    def refund(state: MessagesState) -> dict[str, Any]:
        runs.append("refund")  # a side effect
        return {"messages": [AIMessage("Refunded INV-4.")]}

    def confirm(state: MessagesState) -> dict[str, Any]:
        answer = interrupt("Send the receipt by email?")
        return {"messages": [AIMessage(f"Receipt: {answer}.")]}

    builder = StateGraph(MessagesState).add_node("refund", refund).add_node("confirm", confirm)
    builder.add_edge(START, "refund").add_edge(START, "confirm").add_edge("refund", END).add_edge("confirm", END)
    graph = builder.compile(checkpointer=VoiceStateSaver(store, session=session))
    graph.invoke({"messages": []}, CONFIG)
    graph.invoke(Command(resume="yes"), CONFIG)
    assert runs == ["refund"]
    spoken = [e.text for e in store.events(CALL) if isinstance(e, vs.AgentSpoke) and e.agent == "billing"]
    assert sorted(spoken) == ["Receipt: yes.", "Refunded INV-4."]


def test_messages_with_no_id_are_recorded_once(handed: vs.Store) -> None:
    class Plain(TypedDict):  # a list channel with no add_messages reducer: no ids given
        messages: Annotated[list[Any], operator.add]

    store = handed
    session = store.resume(CALL, agent="billing")
    builder = StateGraph(Plain).add_node("a", lambda s: {"messages": [AIMessage("first")]})
    builder.add_node("b", lambda s: {"messages": [AIMessage("second")]})
    graph = (
        builder.add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", END)
        .compile(checkpointer=VoiceStateSaver(store, session=session))
    )
    graph.invoke({"messages": []}, CONFIG)
    assert _conversation(_owned_by(store, "billing")) == [("AgentSpoke", "first"), ("AgentSpoke", "second")]
