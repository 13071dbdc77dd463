"""A triage session hands a call to a Crew in another OS process: the Crew's LLM sees the caller's
words and the facts, the Crew saves a memory into the call, and the session that takes the call
back sees the Crew's result and memory in its state and context. CrewAI's real classes, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kit import run_child

import voicestate as vs

CREW = """
import json, sys
sys.path.insert(0, {tests!r})
import voicestate as vs
from crewai import Agent, Crew, Process, Task
from crewai.memory import Memory
from kit import ScriptedLLM, embed
from voicestate_crewai import VoiceStateStorage, record_result

store = vs.open_store({url!r})
session = store.resume({call!r}, agent="refunds")  # redeems the handoff addressed to the Crew
llm = ScriptedLLM(model="scripted", answers=["Thought: INV-3 was billed twice\\nFinal Answer: Refund 42.50 for INV-3."])
memory = Memory(storage=VoiceStateStorage(store, session=session), llm=llm, embedder=embed)
agent = Agent(role="Refund specialist", goal="Settle double charges", backstory="Back office", llm=llm)
task = Task(
    description="Transcript:\\n{{transcript}}\\nFacts:\\n{{facts}}\\nWhy: {{handoff_reason}}\\nDecide the refund.",
    expected_output="A refund decision",
    agent=agent,
)
crew = Crew(agents=[agent], tasks=[task], process=Process.sequential, memory=memory)
result = crew.kickoff(inputs=session.context("crewai"))
record_result(session, result)  # a turn for the caller
memory.remember("INV-3 refund of 42.50 approved", scope="/refunds", categories=["decision"])
# the handoff's summary carries the Crew's memories into the next agent's context
kept = [r.content for r in memory.list_records("/refunds")]
session.handoff(to="triage", kind="return", reason="refund decided", summary="Crew memory: " + "; ".join(kept))
store.close()
task_input = next(str(m) for m in llm.seen if "Final Answer" in str(m))
print(json.dumps({{"llm_input": task_input, "result": result.raw}}))
"""


def test_a_crew_in_another_process_works_the_call_and_gives_it_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    store = vs.open_store(url)
    with store.open("call-9", agent="triage") as s:
        s.record(vs.UserSpoke("I was charged twice on invoice INV-3"))
        s.record(vs.AgentSpoke("Let me check your invoices and your account history"))
        s.record(vs.Interrupted(None, heard="Let me check your invoices", heard_ms=1200))
        s.record(vs.SlotsSet({"account": "A-77", "intent": "refund"}))
        s.handoff(to="refunds", reason="double charge")

    out = run_child(CREW.format(tests=str(Path(__file__).parent), url=url, call="call-9"), "llm_input")
    crew = json.loads(out.strip().splitlines()[-1])
    seen = crew["llm_input"]
    assert "I was charged twice on invoice INV-3" in seen  # the caller's words
    assert "account: A-77" in seen and "intent: refund" in seen  # the facts
    assert "double charge" in seen  # why the call came
    assert "Let me check your invoices" in seen and "account history" not in seen  # heard only
    assert crew["result"] == "Refund 42.50 for INV-3."

    back = store.resume("call-9", agent="triage")  # the return handoff
    state = back.state
    assert state.turns[-1].agent == "refunds" and state.turns[-1].text == "Refund 42.50 for INV-3."
    memories = {v["content"]: v for v in state.plugin_state["crewai"].values()}
    assert memories["INV-3 refund of 42.50 approved"]["categories"] == ["decision"]
    assert any("Refund 42.50 for INV-3." in c for c in memories)  # the Crew's own memory of its task
    context = back.context("openai")
    assert context[-1] == {"role": "assistant", "content": "Refund 42.50 for INV-3.", "name": "refunds"}
    assert "Crew memory: INV-3 refund of 42.50 approved" in context[0]["content"]  # via the handoff summary
    # and the voice agent reads the Crew's memory with the same storage, by meaning
    from kit import embed

    from voicestate_crewai import VoiceStateStorage

    found = VoiceStateStorage(store, session=back).search(embed(["refund approved"])[0], scope_prefix="/refunds")
    assert [r.content for r, _ in found] == ["INV-3 refund of 42.50 approved"]


def test_a_zombie_crew_is_fenced_and_stores_nothing() -> None:
    from crewai import Agent, Crew, Task
    from crewai.memory import Memory
    from kit import ScriptedLLM, embed

    from voicestate_crewai import VoiceStateStorage, record_result

    store = vs.open_store("memory://")
    with store.open("call-z", agent="triage") as s:
        s.record(vs.UserSpoke("Refund INV-3 please"))
        s.handoff(to="refunds")
    zombie = store.resume("call-z", agent="refunds")
    store.resume("call-z", agent="rescuer", takeover=True, force=True)  # the Crew's worker was thought dead
    before = [e.id for e in store.events("call-z")]

    llm = ScriptedLLM(model="scripted", answers=["Final Answer: Refund 42.50 for INV-3."])
    memory = Memory(storage=VoiceStateStorage(store, session=zombie), llm=llm, embedder=embed)
    agent = Agent(role="Refund specialist", goal="Settle double charges", backstory="Back office", llm=llm)
    task = Task(description="{transcript}\nDecide.", expected_output="A decision", agent=agent)
    try:
        result = Crew(agents=[agent], tasks=[task], memory=memory).kickoff(inputs=zombie.context("crewai"))
    except vs.FencedError:
        result = None  # CrewAI let the refused save through: the run stops, as it should
    with pytest.raises(vs.FencedError):
        memory.remember("a zombie's memory", scope="/refunds")
    if result is not None:
        with pytest.raises(vs.FencedError):
            record_result(zombie, result)
    assert zombie.fenced
    assert [e.id for e in store.events("call-z")] == before  # nothing of the zombie's run is stored
