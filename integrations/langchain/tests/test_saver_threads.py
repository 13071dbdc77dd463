"""VoiceStateSaver on threads that are not voice calls, its compact checkpoints, and bad input."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kit import run_child, scripted
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
from langgraph.graph import END, START, MessagesState, StateGraph

import voicestate as vs
from voicestate_langchain import VoiceStateSaver
from voicestate_langchain._compact import (
    Names,
    names_of,
    pack_cp,
    pack_event,
    pack_meta,
    unpack_cp,
    unpack_event,
    unpack_meta,
)
from voicestate_langchain._events import Checkpointed

THREAD: Any = {"configurable": {"thread_id": "chat-1"}}


def chat_graph(saver: VoiceStateSaver, *replies: str) -> Any:
    model = scripted(*(AIMessage(r) for r in replies))

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    return (
        StateGraph(MessagesState)
        .add_node("agent", agent)
        .add_edge(START, "agent")
        .add_edge("agent", END)
        .compile(checkpointer=saver)
    )


def test_a_plain_thread_is_shared_by_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'threads.db'}"
    store = vs.open_store(url)
    saver = VoiceStateSaver(store)
    chat_graph(saver, "one").invoke({"messages": [HumanMessage("hi")]}, THREAD)
    assert [m.content for m in saver.get_tuple(THREAD).checkpoint["channel_values"]["messages"]] == ["hi", "one"]  # type: ignore[union-attr]

    run_child(  # another worker continues the thread
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import voicestate as vs
        from langchain_core.messages import HumanMessage
        from voicestate_langchain import VoiceStateSaver
        from test_saver_threads import chat_graph, THREAD
        store = vs.open_store({url!r})
        out = chat_graph(VoiceStateSaver(store), "two").invoke({{"messages": [HumanMessage("again")]}}, THREAD)
        print([m.content for m in out["messages"]])
        """,
        "['hi', 'one', 'again', 'two']",
    )
    # this saver had the thread folded: it reads the other worker's tail
    latest = saver.get_tuple(THREAD)
    assert latest is not None
    assert [m.content for m in latest.checkpoint["channel_values"]["messages"]] == ["hi", "one", "again", "two"]
    assert len(list(saver.list(THREAD))) == len(list(VoiceStateSaver(store).list(THREAD)))

    # the thread is an ended call of its own: no owner, no lease, not among live or stale calls
    info = {c.call_id: c for c in store.calls()}["chat-1"]
    assert (info.status, info.owner, info.stale) == ("ended", None, False)
    assert store.load("chat-1").meta == {"langgraph": "thread"}
    assert "chat-1" not in [c.call_id for c in store.calls(status="active")]
    store.close()


def test_a_thread_deleted_and_written_again_is_read_anew() -> None:
    store = vs.open_store("memory://")
    reader, writer = VoiceStateSaver(store), VoiceStateSaver(store)
    chat_graph(writer, "a", "b").invoke({"messages": [HumanMessage("1")]}, THREAD)
    chat_graph(writer, "b").invoke({"messages": [HumanMessage("2")]}, THREAD)
    assert len(reader.get_tuple(THREAD).checkpoint["channel_values"]["messages"]) == 4  # type: ignore[union-attr]

    writer.delete_thread("chat-1")
    assert reader.get_tuple(THREAD) is None
    assert list(reader.list(THREAD)) == []
    chat_graph(writer, "c").invoke({"messages": [HumanMessage("new")]}, THREAD)  # a shorter log, anew
    latest = reader.get_tuple(THREAD)
    assert latest is not None
    assert [m.content for m in latest.checkpoint["channel_values"]["messages"]] == ["new", "c"]


def test_a_thread_recreated_longer_elsewhere_is_not_taken_for_the_old_one() -> None:
    store = vs.open_store("memory://")
    a, b = VoiceStateSaver(store), VoiceStateSaver(store)
    chat_graph(a, "a1").invoke({"messages": [HumanMessage("old")]}, THREAD)  # a folds its own writes
    b.delete_thread("chat-1")
    for i in range(3):  # a new log, longer than the one a folded
        chat_graph(b, f"b{i}").invoke({"messages": [HumanMessage(f"new{i}")]}, THREAD)
    want = ["new0", "b0", "new1", "b1", "new2", "b2"]
    assert [m.content for m in a.get_tuple(THREAD).checkpoint["channel_values"]["messages"]] == want  # type: ignore[union-attr]
    assert len(list(a.list(THREAD))) == len(list(b.list(THREAD)))
    # and a write from the saver that had the old thread lands on the new one, readable by all
    out = chat_graph(a, "a2").invoke({"messages": [HumanMessage("q")]}, THREAD)
    assert [m.content for m in out["messages"]] == [*want, "q", "a2"]
    fresh = VoiceStateSaver(store).get_tuple(THREAD)
    assert [m.content for m in fresh.checkpoint["channel_values"]["messages"]] == [*want, "q", "a2"]  # type: ignore[union-attr]


def test_a_write_to_a_thread_deleted_meanwhile_is_stored_whole() -> None:
    store = vs.open_store("memory://")
    a, b = VoiceStateSaver(store), VoiceStateSaver(store)
    config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    cp = empty_checkpoint()
    cp["channel_values"], cp["channel_versions"] = {"x": 1}, {"x": 1}
    first = a.put(config, cp, {"source": "input", "step": -1}, {"x": 1})
    b.delete_thread("t")
    cp2 = create_checkpoint(cp, None, 0)
    cp2["channel_values"], cp2["channel_versions"] = {"x": 2}, {"x": 2}
    a.put(first, cp2, {"source": "loop", "step": 0}, {"x": 2})
    got = VoiceStateSaver(store).get_tuple({"configurable": {"thread_id": "t"}})
    assert got is not None and got.checkpoint["channel_values"] == {"x": 2}


def test_prune_refuses_a_rebuild_the_store_would_refuse_and_deletes_nothing() -> None:
    store = vs.open_store("memory://", max_event_bytes=2048)
    saver = VoiceStateSaver(store)
    config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    cp = empty_checkpoint()
    cp["channel_values"], cp["channel_versions"] = {"a": "x" * 1000}, {"a": 1}
    first = saver.put(config, cp, {"source": "input", "step": -1}, {"a": 1})
    cp2 = create_checkpoint(cp, None, 0)
    cp2["channel_values"], cp2["channel_versions"] = {"a": "x" * 1000, "b": "y" * 1000}, {"a": 1, "b": 2}
    saver.put(first, cp2, {"source": "loop", "step": 0}, {"b": 2})
    with pytest.raises(vs.InvalidArgument, match="max_event_bytes"):
        saver.prune(["t"])
    assert len(list(VoiceStateSaver(store).list({"configurable": {"thread_id": "t"}}))) == 2


def test_listing_every_thread_pages_through_the_store() -> None:
    store = vs.open_store("memory://")
    saver = VoiceStateSaver(store)
    for i in range(620):  # more than a page of calls
        saver.put({"configurable": {"thread_id": f"t{i:04}", "checkpoint_ns": ""}}, empty_checkpoint(), {"step": i}, {})
    assert len(list(saver.list(None))) == 620
    assert [t.metadata["step"] for t in saver.list(None, filter={"step": 619})] == [619]


def test_few_cached_threads_still_read_right() -> None:
    store = vs.open_store("memory://")
    saver = VoiceStateSaver(store, cache=1)
    configs = [{"configurable": {"thread_id": f"t{i}"}} for i in range(3)]
    for i, config in enumerate(configs):
        chat_graph(saver, f"reply {i}").invoke({"messages": [HumanMessage(f"q{i}")]}, config)
    for i, config in enumerate(configs):
        got = saver.get_tuple(config)  # type: ignore[arg-type]
        assert got is not None
        assert [m.content for m in got.checkpoint["channel_values"]["messages"]] == [f"q{i}", f"reply {i}"]


def test_metadata_that_is_not_json_round_trips() -> None:
    saver = VoiceStateSaver(vs.open_store("memory://"))
    cp = empty_checkpoint()
    config: Any = {"configurable": {"thread_id": "m", "checkpoint_ns": ""}}
    when = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    meta: Any = {"source": "input", "step": -1, "parents": {}, "when": when, "raw": b"\x00\x01"}
    saver.put(config, cp, meta, {})
    got = saver.get_tuple({"configurable": {"thread_id": "m"}})
    assert got is not None
    assert got.metadata["when"] == when and got.metadata["raw"] == b"\x00\x01"  # type: ignore[typeddict-item]
    assert got.metadata["step"] == -1


def test_bad_input_gets_a_precise_error_and_loses_nothing() -> None:
    store = vs.open_store("memory://")
    with pytest.raises(vs.ConfigError, match="Store"):
        VoiceStateSaver("memory://")  # type: ignore[arg-type]
    with pytest.raises(vs.ConfigError, match="cache"):
        VoiceStateSaver(store, cache=0)
    saver = VoiceStateSaver(store)
    with pytest.raises(vs.ConfigError, match="Session"):
        saver.bind(object())  # type: ignore[arg-type]
    chat_graph(saver, "kept").invoke({"messages": [HumanMessage("hi")]}, THREAD)
    before = store.events("chat-1")
    with pytest.raises(vs.InvalidArgument, match="thread_id"):
        saver.get_tuple({"configurable": {}})
    with pytest.raises(vs.ConfigError, match="call id"):
        saver.get_tuple({"configurable": {"thread_id": "{not a call id"}})
    with pytest.raises(vs.InvalidArgument, match="not an int"):
        saver.get_next_version("00000000000000000000000000000002.0.5", None)  # type: ignore[arg-type]
    with pytest.raises(vs.InvalidArgument, match="strategy"):
        saver.prune(["chat-1"], strategy="oldest")
    with pytest.raises(vs.InvalidArgument, match="checkpoint_id"):
        saver.put_writes(THREAD, [("x", 1)], "task")
    assert [e.id for e in store.events("chat-1")] == [e.id for e in before]
    assert VoiceStateSaver(store).get_tuple(THREAD).checkpoint["channel_values"]["messages"][-1].content == "kept"  # type: ignore[union-attr]


def test_a_checkpoint_stored_against_a_missing_base_is_an_integrity_error() -> None:
    store = vs.open_store("memory://")
    saver = VoiceStateSaver(store)
    chat_graph(saver, "x").invoke({"messages": [HumanMessage("hi")]}, THREAD)
    store.append("chat-1", Checkpointed(base=2, cp={"iu": "AAAAAAAAAAAAAAAAAAAAAA"}))  # seq 2 is no checkpoint
    with pytest.raises(vs.IntegrityError, match="seq 2"):
        VoiceStateSaver(store).get_tuple(THREAD)


# -- the compact form -----------------------------------------------------------------------


def _random_checkpoint(rng: random.Random, base: dict[str, Any] | None) -> dict[str, Any]:
    channels = ["messages", "__start__", "branch:to:agent", "tools", "steps", "x"]
    cp: dict[str, Any] = {
        "v": rng.choice([4, 4, 5]),
        "id": str(uuid.UUID(int=rng.getrandbits(128))) if rng.random() < 0.8 else f"custom-{rng.random()}",
        "ts": rng.choice(["2026-12-07T02:48:31.141386+00:00", "2026-12-07T02:48:31+00:00", "yesterday", None]),
        "channel_versions": {c: rng.randint(1, 9) for c in rng.sample(channels, rng.randint(0, 5))},
        "versions_seen": {
            n: {c: rng.randint(1, 9) for c in rng.sample(channels, rng.randint(0, 3))}
            for n in rng.sample(["__input__", "agent", "tools", "__start__"], rng.randint(0, 4))
        },
        "updated_channels": rng.choice([None, [], rng.sample(channels, 2)]),
    }
    if rng.random() < 0.2:
        cp["future_key"] = {"a": 1}
    if base is not None and rng.random() < 0.5:  # mostly like its base, as graph steps are
        cp = {**base, "id": cp["id"], "ts": cp["ts"]}
        cp["channel_versions"] = {**base["channel_versions"], "messages": rng.randint(10, 20)}
    return cp


def test_a_checkpoint_round_trips_through_its_compact_form() -> None:
    rng = random.Random(7)
    previous: dict[str, Any] | None = None
    for _ in range(500):
        base = previous if previous is not None and rng.random() < 0.8 else None
        cp = _random_checkpoint(rng, base)
        known = names_of(base) if base is not None else []
        packed = pack_cp(cp, base, Names(known))
        assert unpack_cp(packed, base, known) == {k: v for k, v in cp.items()}
        meta = {"source": rng.choice(["loop", "input"]), "step": rng.randint(-1, 3), "parents": {}}
        base_meta = {"source": "loop", "step": rng.randint(-1, 3), "parents": {}, "gone": 1}
        assert unpack_meta(pack_meta(meta, base_meta), base_meta) == meta
        previous = cp


class _Base:
    def __init__(self, cp: dict[str, Any], meta: Any, seq: int) -> None:
        self.id, self.cp, self.meta, self.seq, self.names = cp["id"], cp, meta, seq, names_of(cp)


def test_a_checkpoint_event_round_trips_against_any_base() -> None:
    rng = random.Random(11)
    previous: _Base | None = None
    kinds = ["vs", "empty", "null", "vsin", "msgpack"]
    for i in range(400):
        base = previous if previous is not None and rng.random() < 0.8 else None
        cp = _random_checkpoint(rng, base.cp if base is not None else None)
        cp["ts"] = rng.choice(["2026-12-07T02:48:31.141386+00:00", "2026-12-07T02:48:31+00:00", "not a time"])
        meta = {
            "source": rng.choice(["loop", "input"]),
            "step": i,
            "parents": {},
            **({"x": 1} if rng.random() < 0.3 else {}),
        }
        parent = rng.choice([None, base.id if base is not None else None, "some-other-id"])
        values = {}
        channels = [*sorted(cp["channel_versions"]), "extra"]
        for ch in rng.sample(channels, rng.randint(0, min(3, len(channels)))):
            kind = rng.choice(kinds)
            version = cp["channel_versions"].get(ch, 99) if rng.random() < 0.8 else 123
            data = "" if kind in ("vs", "empty", "null") else ("a2V5" if kind == "msgpack" else "")
            values[ch] = (version, kind, data)
        ev = pack_event(
            ns="",
            checkpoint=cp,
            meta=meta,
            parent=parent,
            values=values,
            base=base,
            implicit=rng.random() < 0.5,
            id_in_event=rng.random() < 0.5,
        )
        ev = Checkpointed(
            **{**{f: getattr(ev, f) for f in ("id", "at", "ns", "base", "cp", "meta", "parent", "orphan", "blobs")}}
        )
        got_cp, got_meta, got_parent, got_values = unpack_event(ev, base)
        assert got_cp == cp and got_meta == meta and got_parent == parent
        for ch, (version, kind, data) in values.items():
            if kind == "vsin" and version == cp["channel_versions"].get(ch):
                data = got_values[ch][2]  # the key comes from the checkpoint's id
            assert got_values[ch] == (version, kind, data)
        previous = _Base(cp, meta, i + 1)
