"""A store with a tenant sees only its tenant's calls."""

from __future__ import annotations

from pathlib import Path

import pytest

import voicestate as vs

KEYS = "t1:tenant-tests-secret-0123456789"


def test_tenants_do_not_see_each_others_calls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    acme = vs.open_store(url, signing_keys=KEYS, tenant="acme")
    globex = vs.open_store(url, signing_keys=KEYS, tenant="globex")
    s = acme.open("call-1", agent="triage")
    s.record(vs.UserSpoke("hello"))
    assert acme.load("call-1").tenant == "acme"
    for attempt in (
        lambda: globex.load("call-1"),
        lambda: globex.events("call-1"),
        lambda: globex.append("call-1", vs.Note("peek")),
        lambda: globex.resume("call-1", agent="x", takeover=True),
    ):
        with pytest.raises(vs.CallNotFound, match="tenant 'globex'"):
            attempt()
    assert globex.delete("call-1") is False
    assert [type(e) for e in acme.events("call-1")] == [vs.CallStarted, vs.UserSpoke]  # untouched
    acme.close()
    globex.close()
