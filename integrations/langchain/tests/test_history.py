"""VoiceStateChatMessageHistory: reads a call's context, writes through the owning session."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

import voicestate as vs
from voicestate_langchain import VoiceStateChatMessageHistory

CUT = "Let me pull up your invoices and check both charges."


def handed_to_billing(store: vs.Store) -> vs.HandoffPacket:
    s = store.open("call-1", agent="triage")
    s.record(vs.UserSpoke("I was charged twice"))
    turn = s.record(vs.AgentSpoke(CUT))
    s.record(vs.Interrupted(turn=turn, heard="Let me pull up", heard_ms=900))
    return s.handoff(to="billing", reason="double charge")


def test_it_reads_the_call_as_the_agent_sees_it(store: vs.Store) -> None:
    handed_to_billing(store)
    history = VoiceStateChatMessageHistory("call-1", store=store, agent="billing")
    messages = history.messages
    assert HumanMessage("I was charged twice") in messages
    assert AIMessage("Let me pull up", name="triage") in messages
    assert not any(CUT in str(m.content) for m in messages)
    assert str(messages[0].content).startswith("Handoff summary")  # the summary addressed to billing leads
    assert "Handed to billing by triage" in str(messages[0].content)


def test_a_write_redeems_the_handoff_and_is_recorded_as_the_agents(store: vs.Store) -> None:
    handed_to_billing(store)
    history = VoiceStateChatMessageHistory("call-1", store=store, agent="billing")
    history.add_messages([HumanMessage("Can you refund one?"), AIMessage("Yes, I've refunded the duplicate.")])
    state = store.load("call-1")
    assert (state.owner, state.epoch) == ("billing", 2)
    assert [(t.role, t.agent, t.text) for t in state.turns][-2:] == [
        ("user", "billing", "Can you refund one?"),
        ("agent", "billing", "Yes, I've refunded the duplicate."),
    ]
    assert history.session is not None and history.session.agent == "billing"


def test_a_new_call_is_opened_by_its_first_write(store: vs.Store) -> None:
    history = VoiceStateChatMessageHistory("call-9", store=store, agent="bot")
    history.add_user_message("hello")
    assert store.load("call-9").owner == "bot"
    assert history.messages == [HumanMessage("hello")]


def test_an_agent_that_does_not_own_the_call_cannot_write(store: vs.Store) -> None:
    handed_to_billing(store)
    history = VoiceStateChatMessageHistory("call-1", store=store, agent="sales")
    with pytest.raises(vs.OwnershipError, match="pass session="):
        history.add_messages([AIMessage("sales here")])
    assert [t.text for t in store.load("call-1").turns] == ["I was charged twice", CUT]


def test_a_fenced_writer_stores_nothing(store: vs.Store) -> None:
    packet = handed_to_billing(store)
    triage = store.resume(packet, agent="billing")  # billing takes the call
    old = VoiceStateChatMessageHistory("call-1", store=store, agent="triage", session=None)
    with pytest.raises(vs.OwnershipError):
        old.add_messages([AIMessage("triage again")])
    assert triage.state.owner == "billing"
    assert "triage again" not in str(store.load("call-1").turns)


def test_clear_is_refused_and_loses_nothing(store: vs.Store) -> None:
    handed_to_billing(store)
    history = VoiceStateChatMessageHistory("call-1", store=store, agent="billing")
    with pytest.raises(vs.InvalidArgument, match="append-only"):
        history.clear()
    assert len(store.load("call-1").turns) == 2


def test_bad_arguments_are_typed_errors(store: vs.Store) -> None:
    with pytest.raises(vs.ConfigError, match="Store"):
        VoiceStateChatMessageHistory("c", store="memory://", agent="a")  # type: ignore[arg-type]
    with pytest.raises(vs.ConfigError, match="agent"):
        VoiceStateChatMessageHistory("c", store=store, agent="")
    s = store.open("c", agent="a")
    with pytest.raises(vs.ConfigError, match="session"):
        VoiceStateChatMessageHistory("c", store=store, agent="b", session=s)


def test_runnable_with_message_history_on_a_call(store: vs.Store) -> None:
    """The legacy wiring: a runnable (a stand-in model) that answers from the history it is given."""
    handed_to_billing(store)
    seen: list[list[object]] = []

    def model(messages: list[object]) -> AIMessage:
        seen.append(list(messages))
        return AIMessage(f"I see {len(messages)} messages; the duplicate is refunded.")

    chain = RunnableWithMessageHistory(  # deprecated upstream, still widely used
        RunnableLambda(model),
        lambda session_id: VoiceStateChatMessageHistory(session_id, store=store, agent="billing"),
    )
    reply = chain.invoke([HumanMessage("Can you refund one?")], config={"configurable": {"session_id": "call-1"}})
    assert "refunded" in str(reply.content)
    # The model saw the call: the caller's words, only what was heard of the cut turn.
    texts = [str(getattr(m, "content", m)) for m in seen[0]]
    assert "I was charged twice" in texts and "Let me pull up" in texts
    assert not any(CUT in t for t in texts)
    state = store.load("call-1")
    assert [(t.agent, t.text) for t in state.turns][-2:] == [
        ("billing", "Can you refund one?"),
        ("billing", str(reply.content)),
    ]


async def test_the_async_twins(store: vs.Store) -> None:
    handed_to_billing(store)
    history = VoiceStateChatMessageHistory("call-1", store=store, agent="billing")
    before = await history.aget_messages()
    await history.aadd_messages([AIMessage("Async hello.")])
    after = await history.aget_messages()
    assert after[-1] == AIMessage("Async hello.") and len(after) == len(before) + 1
    with pytest.raises(vs.InvalidArgument):
        await history.aclear()
