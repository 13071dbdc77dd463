"""An in-process store chains the owner's utterances lazily: every reader still sees a chained log."""

from __future__ import annotations

import threading

import pytest
from conftest import memory_url

import voicestate as vs
import voicestate.backend as vsb
from voicestate.backend import genesis, verify_chain

PENDING = b""  # how the in-process tier marks an event it has not chained yet

KEYS = "t1:lazy-chain-secret-0123456789ab"


def _backend_log(store: vs.Store, call_id: str) -> list[vsb.StoredEvent]:
    return store.tiers.deciding.backend.load(call_id)


def test_the_record_path_defers_the_chain_and_readers_settle_it() -> None:
    store = vs.open_store(memory_url(), signing_keys=KEYS)
    s = store.open("c", agent="triage")
    for i in range(50):
        s.record(vs.UserSpoke(f"u{i}") if i % 2 else vs.AgentSpoke(f"a{i}"))
    raw = store.tiers.deciding.backend._calls["c"].events  # type: ignore[attr-defined]
    assert sum(1 for e in raw if e.chain == PENDING) == 50  # nothing hashed on the record path
    log = _backend_log(store, "c")  # a reader settles them
    assert all(e.chain != PENDING for e in log)
    assert verify_chain(genesis("c"), log) == -1
    assert s.state.chain == log[-1].chain == store.load("c").chain


def test_state_settles_without_another_reader() -> None:
    store = vs.open_store(memory_url(), signing_keys=KEYS)
    s = store.open("c", agent="triage")
    s.record(vs.UserSpoke("hello"))
    chain = s.state.chain
    assert chain != PENDING
    assert chain == store.tiers.deciding.backend.get_meta("c").head  # type: ignore[union-attr]


def test_non_owner_writes_between_unchained_records() -> None:
    store = vs.open_store(memory_url(), signing_keys=KEYS)
    s = store.open("c", agent="triage")
    s.record(vs.UserSpoke("one"))
    store.append("c", vs.Note("supervisor"))
    s.record(vs.AgentSpoke("two"))  # the fast path sees another last event and takes the general one
    s.record(vs.UserSpoke("three"))
    log = _backend_log(store, "c")
    assert [e.seq for e in log] == [1, 2, 3, 4, 5]
    assert verify_chain(genesis("c"), log) == -1
    assert [t.text for t in s.state.turns] == ["one", "two", "three"]
    assert s.state.chain == log[-1].chain


def test_a_session_of_a_deleted_call_cannot_append_unchained_to_its_successor() -> None:
    url = memory_url()
    store = vs.open_store(url, signing_keys=KEYS)
    other = vs.open_store(url, signing_keys=KEYS)  # the same named in-process backend
    s = store.open("c", agent="triage")
    s.record(vs.UserSpoke("old call"))
    other.delete("c")
    fresh = other.open("c", agent="triage")
    fresh.record(vs.UserSpoke("new call"))
    with pytest.raises(vs.FencedError, match="deleted and created anew"):
        s.record(vs.UserSpoke("ghost"))
    log = _backend_log(other, "c")
    assert [e.seq for e in log] == [1, 2]
    assert verify_chain(genesis("c"), log) == -1
    assert [t.text for t in other.load("c").turns] == ["new call"]


def test_handoff_after_unchained_records_carries_the_real_chain() -> None:
    store = vs.open_store(memory_url(), signing_keys=KEYS)
    s = store.open("c", agent="triage")
    for i in range(10):
        s.record(vs.UserSpoke(f"u{i}"))
    packet = s.handoff(to="billing", inline=True)
    log = _backend_log(store, "c")
    assert packet.chain == log[packet.seq - 1].chain
    assert packet.state is not None and packet.state.seq == packet.seq  # the inline chain verifies
    b = store.resume(packet.to_json(), agent="billing")
    assert [t.text for t in b.state.turns] == [f"u{i}" for i in range(10)]


def test_readers_in_other_threads_always_see_a_chained_log() -> None:
    store = vs.open_store(memory_url(), signing_keys=KEYS)
    s = store.open("c", agent="triage")
    stop = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            log = _backend_log(store, "c")
            if any(e.chain == PENDING for e in log) or verify_chain(genesis("c"), log) != -1:
                bad.append(f"unchained or broken log at {len(log)}")

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(3000):
            s.record(vs.UserSpoke(f"u{i}"))
    finally:
        stop.set()
        t.join(10)
    assert not bad, bad[:3]
    assert verify_chain(genesis("c"), _backend_log(store, "c")) == -1
    assert s.state.seq == 3001
