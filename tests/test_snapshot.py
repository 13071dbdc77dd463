"""Snapshots (whitebox): the folder restored from a snapshot is the folder that wrote it."""

from __future__ import annotations

import pytest

import voicestate as vs
import voicestate.plugins as vsp
from voicestate._snapshot import fold_from_snapshot, snapshot_of

KEYS = "t1:snapshot-tests-secret-0123456789"


def _varied_call(store: vs.Store) -> vs.Session:
    s = store.open("snap", agent="triage", meta={"channel": "sip", "nested": {"a": [1, 2.5, None]}})
    s.record(vs.UserSpoke("I was charged twice"))
    turn = s.record(vs.AgentSpoke("Let me pull up your invoices and check"))
    s.record(vs.Interrupted(turn=turn, heard="Let me pull up", heard_ms=910))
    s.record(vs.ToolCalled("t1", "lookup", {"account": "A-77", "rows": [{"x": 1}]}))
    s.record(vs.ToolCalled("t2", "refund", {"amount": 12.5}))
    s.record(vs.ToolReturned("t1", {"charges": 2}), vs.ToolCancelled("t2", "caller changed their mind"))
    s.record(vs.SlotsSet({"account_id": "A-77", "gone": 1}), vs.SlotsSet({"gone": None}))
    s.record(vs.SlotsSet({"private": True}, scope="agent:triage"))
    s.record(vs.Note("supervisor: be kind"))
    packet = s.handoff(to="billing", reason="double charge")
    b = store.resume(packet, agent="billing")
    b.record(vs.AgentSpoke("Billing here."))
    b.record(vs.ToolCalled("t3", "lookup", {}))
    b.handoff(to="sales", kind="persona")
    return b


def _plain(state: vs.CallState) -> object:
    return vsp.make_converter().unstructure(state)


def test_a_restored_folder_is_the_folder_that_wrote_it() -> None:
    store = vs.open_store("memory://", signing_keys=KEYS)
    s = _varied_call(store)
    folder = s._folder
    restored = fold_from_snapshot("snap", snapshot_of(folder))
    assert _plain(restored.snapshot()) == _plain(folder.snapshot())
    assert restored.snapshot().context("openai", agent="sales") == folder.snapshot().context("openai", agent="sales")
    assert restored.fates == folder.fates and restored.ended_seq == folder.ended_seq
    # it folds on exactly as the original does
    for f in (folder, restored):
        f.apply(vs.Interrupted(turn=None, heard="Billing"), f.seq + 1, b"x" * 32, "billing")
        f.apply(vs.ToolReturned("t3", {"ok": True}), f.seq + 1, b"y" * 32, "billing")
        f.apply(vs.CallEnded("bye"), f.seq + 1, b"z" * 32, "billing")
    assert _plain(restored.snapshot()) == _plain(folder.snapshot())
    again = fold_from_snapshot("snap", snapshot_of(restored))
    assert _plain(again.snapshot()) == _plain(folder.snapshot()) and again.ended_seq == folder.ended_seq


def test_an_empty_call_and_a_foreign_snapshot() -> None:
    store = vs.open_store("memory://", signing_keys=KEYS)
    s = store.open("empty", agent="triage")
    snap = snapshot_of(s._folder)
    assert _plain(fold_from_snapshot("empty", snap).snapshot()) == _plain(s.state)
    with pytest.raises(ValueError, match="another call"):
        fold_from_snapshot("other", snap)
    with pytest.raises(ValueError, match="unreadable"):
        fold_from_snapshot("empty", snap._replace(data=b"\xc1"))
