"""VoiceStateStorage on a call: the Crew's memory is the call's, fenced; the call's facts are records."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from crewai.memory.storage.backend import EmbeddingDimensionMismatchError
from crewai.memory.types import MemoryRecord
from kit import embed

import voicestate as vs
from voicestate_crewai import VoiceStateStorage, record_result
from voicestate_crewai._events import Remembered


def _record(rid: str, text: str, scope: str = "/") -> MemoryRecord:
    return MemoryRecord(id=rid, content=text, scope=scope, embedding=embed([text])[0])


def test_the_calls_facts_are_records_the_crew_recalls() -> None:
    store = vs.open_store("memory://")
    s = store.open("call-1", agent="triage")
    s.record(vs.SlotsSet({"account": "A-77", "intent": "refund"}))
    s.record(vs.SlotsSet({"verified": True}, scope="agent:triage"))
    memory = VoiceStateStorage(store, session=s)
    facts = {r.id: r for r in memory.list_records("/call")}
    assert facts["fact:account"].content == "account: A-77"
    assert facts["fact:account"].scope == "/call/facts" and facts["fact:account"].categories == ["fact"]
    assert facts["fact@triage:verified"].scope == "/call/agents/triage"
    assert facts["fact@triage:verified"].metadata == {"key": "verified", "value": True}
    s.record(vs.SlotsSet({"intent": None}))  # a slot deleted is a record gone
    assert sorted(r.id for r in memory.list_records("/call/facts")) == ["fact:account"]
    assert memory.delete(record_ids=["fact:account"]) == 0  # the call's slots are read-only here
    assert memory.get_record("fact:account") is not None


def test_what_the_crew_saves_is_in_the_calls_log_and_state() -> None:
    store = vs.open_store("memory://")
    s = store.open("call-1", agent="crew")
    memory = VoiceStateStorage(store, session=s)
    memory.save([_record("m1", "The refund of 42.50 was approved", "/refunds")])
    state = store.load("call-1")
    assert state.plugin_state["crewai"]["m1"]["content"] == "The refund of 42.50 was approved"
    assert [type(e).TYPE for e in store.events("call-1")][-1] == "crewai.Remembered"
    assert store.events("call-1")[-1].agent == "crew"  # written by the owner
    memory.delete(record_ids=["m1"])
    assert "crewai" not in store.load("call-1").plugin_state
    # another storage on the same call (another worker, the next agent) reads the same memory
    memory.save([_record("m2", "The caller wants a receipt by email")])
    other = VoiceStateStorage(store, session=store.resume("call-1", agent="crew-2", takeover=True, force=True))
    assert [r.id for r, _ in other.search(embed(["receipt email"])[0], limit=1)] == ["m2"]


def test_a_zombie_crew_is_fenced_and_stores_nothing() -> None:
    store = vs.open_store("memory://")
    s = store.open("call-1", agent="crew")
    memory = VoiceStateStorage(store, session=s)
    memory.save([_record("m1", "first")])
    store.resume("call-1", agent="rescuer", takeover=True, force=True)  # the call moved on
    before = [e.id for e in store.events("call-1")]
    with pytest.raises(vs.FencedError):
        memory.save([_record("m2", "zombie memory")])
    with pytest.raises(vs.FencedError):
        record_result(s, "zombie answer")
    assert [e.id for e in store.events("call-1")] == before
    assert sorted(store.load("call-1").plugin_state["crewai"]) == ["m1"]


def test_a_plain_memory_is_a_call_of_its_own_per_tenant(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    acme = VoiceStateStorage(vs.open_store(url, tenant="acme"))
    globex = VoiceStateStorage(vs.open_store(url, tenant="globex"))
    acme.save([_record("a1", "acme's fact")])
    globex.save([_record("g1", "globex's fact")])
    assert [r.id for r in acme.list_records()] == ["a1"]
    assert [r.id for r in globex.list_records()] == ["g1"]
    assert acme.call_id != globex.call_id
    info = {c.call_id: c for c in vs.open_store(url, tenant="acme").calls()}[acme.call_id]
    assert (info.status, info.owner) == ("ended", None)
    # a second process's storage (a fresh one) reads what the first wrote
    assert VoiceStateStorage(vs.open_store(url, tenant="acme")).count() == 1
    conn = sqlite3.connect(tmp_path / "m.db")
    assert conn.execute("SELECT count(*) FROM vs_events WHERE call_id = ?", (acme.call_id,)).fetchone()[0] >= 3


def test_a_large_save_is_split_into_events_the_store_accepts() -> None:
    store = vs.open_store("memory://", max_event_bytes=64 * 1024)
    memory = VoiceStateStorage(store)
    memory.save([_record(f"r{i}", f"record number {i} " + "x" * 400) for i in range(600)])
    assert memory.count() == 600
    assert len(store.events(memory.call_id)) > 3


def test_bad_input_gets_a_precise_error() -> None:
    store = vs.open_store("memory://")
    with pytest.raises(vs.ConfigError, match="Store"):
        VoiceStateStorage("memory://")  # type: ignore[arg-type]
    s = store.open("c", agent="a")
    with pytest.raises(vs.ConfigError, match="not both"):
        VoiceStateStorage(store, session=s, memory_id="other")
    with pytest.raises(vs.InvalidArgument, match="text"):
        record_result(s, 42)
    with pytest.raises(vs.InvalidArgument, match="caller"):
        record_result(s, "hi", to="nobody")  # type: ignore[arg-type]
    memory = VoiceStateStorage(store)
    memory.save([_record("r1", "hello")])
    with pytest.raises(EmbeddingDimensionMismatchError):  # CrewAI's own error, as its backend raises
        memory.search([0.0, 1.0])
    with pytest.raises(EmbeddingDimensionMismatchError):
        memory.save([MemoryRecord(id="r2", content="x", embedding=[0.0, 1.0])])
    assert memory.count() == 1


def test_a_memory_deleted_and_created_anew_is_read_anew() -> None:
    store = vs.open_store("memory://")
    a, b = VoiceStateStorage(store), VoiceStateStorage(store)
    a.save([_record(f"a{i}", f"old {i}") for i in range(10)])
    assert a.count() == 10
    store.delete(a.call_id)  # erased: nothing of it may be served any more
    assert a.count() == 0 and a.get_record("a0") is None
    for i in range(12):  # a new log, longer than the old one
        b.save([_record(f"b{i}", f"new {i}")])
    assert sorted(r.id for r in a.list_records()) == sorted(f"b{i}" for i in range(12))


def test_a_malformed_record_from_another_writer_is_refused_or_skipped() -> None:
    store = vs.open_store("memory://")
    memory = VoiceStateStorage(store)
    memory.save([_record("ok", "a fine record")])
    with pytest.raises(vs.InvalidEvent, match="memory records"):
        store.append(memory.call_id, Remembered(records=[{"id": "x", "embedding": "AAA"}]))
    assert memory.count() == 1 and memory.search(embed(["fine"])[0], limit=5)[0][0].id == "ok"


def test_facts_stay_the_calls_and_ids_do_not_collide() -> None:
    store = vs.open_store("memory://")
    s = store.open("call-1", agent="crew")
    s.record(
        vs.SlotsSet({"triage:verified": "call slot"}), vs.SlotsSet({"verified": "agent slot"}, scope="agent:triage")
    )
    memory = VoiceStateStorage(store, session=s)
    ids = sorted(r.id for r in memory.list_records("/call"))
    assert ids == ["fact:triage:verified", "fact@triage:verified"]
    fact = memory.get_record("fact:triage:verified")
    assert fact is not None
    memory.update(fact.model_copy(update={"content": "rewritten by a Crew"}))  # consolidation: ignored
    assert memory.get_record("fact:triage:verified").content == "triage:verified: call slot"  # type: ignore[union-attr]
    assert "crewai" not in store.load("call-1").plugin_state
    assert memory.delete(record_ids=["fact:triage:verified", "fact:triage:verified"]) == 0


def test_a_reset_memory_takes_another_embedder() -> None:
    memory = VoiceStateStorage(vs.open_store("memory://"))
    memory.save([_record("r1", "sixteen dimensions")])
    memory.reset()
    memory.save([MemoryRecord(id="r2", content="three", embedding=[1.0, 0.0, 0.0])])
    assert [r.id for r, _ in memory.search([1.0, 0.0, 0.0], limit=1)] == ["r2"]


def test_two_storages_on_one_session_and_the_apps_own_writes_do_not_collide() -> None:
    import threading

    store = vs.open_store("memory://")
    s = store.open("call-1", agent="crew")
    crew, agent = VoiceStateStorage(store, session=s), VoiceStateStorage(store, session=s)
    errors: list[BaseException] = []

    def run(fn: Any) -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    jobs = [
        lambda: [crew.save([_record(f"c{i}", f"crew {i}")]) for i in range(60)],
        lambda: [agent.save([_record(f"a{i}", f"agent {i}")]) for i in range(60)],
        lambda: [s.record(vs.UserSpoke(f"caller {i}")) for i in range(60)],
    ]
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert crew.count() == 120
    assert len(store.load("call-1").turns) == 60


def test_a_result_for_the_next_agent_and_the_async_twin() -> None:
    import asyncio

    from voicestate_crewai import arecord_result

    store = vs.open_store("memory://", signing_keys="t:crewai-result-test-secret-0123")

    class Output:  # a CrewOutput's shape: its text in .raw
        raw = "  Refund approved for INV-3.  "

    async def main() -> None:
        async with store.aopen("c", agent="crew") as s:
            await arecord_result(s, Output())
            await arecord_result(s, "check the card on file", to="next agent")
            with pytest.raises(vs.InvalidArgument, match="arecord_result"):
                await arecord_result(s, "x", to="nobody")  # type: ignore[arg-type]

    asyncio.run(main())
    with store.resume("c", agent="crew", takeover=True, force=True) as s:
        record_result(s, "a note", to="next agent")
    state = store.load("c")
    assert [t.text for t in state.turns] == ["Refund approved for INV-3."]
    assert [n.text for n in state.notes] == ["check the card on file", "a note"]
