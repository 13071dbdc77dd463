"""``voicestate calls``: the real CLI against a real SQLite store holding active, ended and stale calls."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import attrs
import pytest

import voicestate as vs

KEYS = "k1:cli-calls-tests-secret-0123456789"


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Ran:
    base = {k: v for k, v in os.environ.items() if k not in ("VOICESTATE_STORE", "VOICESTATE_SIGNING_KEYS")}
    out = subprocess.run(
        [sys.executable, "-m", "voicestate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **(env or {})},
        cwd=cwd,
    )
    return Ran(out.returncode, out.stdout, out.stderr)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with four calls: two active (one with a handoff pending), one ended, one whose
    owner died (its lease ran out)."""
    path = tmp_path_factory.mktemp("calls") / "calls.db"
    url = f"sqlite:///{path}"
    with vs.open_store(url, signing_keys=KEYS, lease=600) as store:
        live = store.open("call-live", agent="billing")
        live.record(vs.UserSpoke("Where is my refund?"))
        live.handoff(to="dana", reason="refund")
        store.open("call-quiet", agent="triage").record(vs.UserSpoke("Hello?"))
        store.open("call-over", agent="triage").end("caller hung up")
    with vs.open_store(url, signing_keys=KEYS, lease=0.2) as short:
        short.open("call-dead", agent="triage").record(vs.UserSpoke("Hi"))  # then its worker "dies"
    time.sleep(0.4)
    return url


def _rows(out: str) -> dict[str, list[str]]:
    """The table's rows by call id: columns split on runs of two or more spaces."""
    lines = out.splitlines()
    header = ["CALL", "STATUS", "OWNER", "EPOCH", "SEQ", "LAST ACTIVE", "LEASE", "PENDING HANDOFF"]
    assert re.split(r"\s{2,}", lines[0].strip()) == header
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[1:] if line.startswith("call-")]
    return {r[0]: r for r in rows}


def test_lists_every_call_with_its_status_owner_lease_and_pending_handoff(url: str) -> None:
    ran = _run("calls", "--store", url)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    rows = _rows(ran.stdout)
    assert list(rows) == ["call-dead", "call-live", "call-over", "call-quiet"]  # call-id order
    dead, live, over, quiet = rows["call-dead"], rows["call-live"], rows["call-over"], rows["call-quiet"]
    assert live[:5] == ["call-live", "active", "billing", "1", "3"]
    assert re.fullmatch(r"\d+ s ago", live[5]), live
    assert re.fullmatch(r"live (\d+ s|\d+ min)", live[6]), live
    assert live[7] == "dana"
    assert dead[:5] == ["call-dead", "active", "triage", "1", "2"]
    assert re.fullmatch(r"lapsed \d+ s ago", dead[6]), dead
    assert dead[7] == "-"
    assert over[:5] == ["call-over", "ended", "-", "1", "2"]
    assert over[6:] == ["-", "-"]  # an ended call has no lease
    assert quiet[2] == "triage" and quiet[6].startswith("live ") and quiet[7] == "-"


def test_active_leaves_out_ended_calls(url: str) -> None:
    ran = _run("calls", "--store", url, "--active")
    assert ran.returncode == 0, ran.stderr
    assert list(_rows(ran.stdout)) == ["call-dead", "call-live", "call-quiet"]


def test_stale_lists_only_the_calls_whose_owner_lease_ran_out(url: str) -> None:
    ran = _run("calls", "--store", url, "--stale")
    assert ran.returncode == 0, ran.stderr
    assert list(_rows(ran.stdout)) == ["call-dead"]


def test_owner_filters_by_agent_and_combines_with_the_others(url: str) -> None:
    assert list(_rows(_run("calls", "--store", url, "--owner", "billing").stdout)) == ["call-live"]
    assert list(_rows(_run("calls", "--store", url, "--owner", "triage", "--active").stdout)) == [
        "call-dead",
        "call-quiet",
    ]
    none = _run("calls", "--store", url, "--owner", "billing", "--stale")
    assert none.returncode == 0, none.stderr
    assert none.stdout.strip() == f"no stale calls owned by 'billing' in {url}"


def test_limit_says_when_more_calls_match(url: str) -> None:
    ran = _run("calls", "--store", url, "--limit", "2")
    assert ran.returncode == 0, ran.stderr
    assert list(_rows(ran.stdout)) == ["call-dead", "call-live"]
    assert "more calls match: raise --limit" in ran.stdout
    exact = _run("calls", "--store", url, "--limit", "4")
    assert len(_rows(exact.stdout)) == 4 and "more calls" not in exact.stdout
    bad = _run("calls", "--store", url, "--limit", "0")
    assert bad.returncode == 2 and "--limit: '0' is not a positive whole number" in bad.stderr


def test_json_lists_the_callinfo_fields(url: str) -> None:
    ran = _run("calls", "--store", url, "--json")
    assert ran.returncode == 0, ran.stderr
    doc = json.loads(ran.stdout)
    fields = [f.name for f in attrs.fields(vs.CallInfo)]
    assert [list(d) for d in doc] == [[*fields, "stale"]] * 4
    with vs.open_store(url, signing_keys=KEYS) as store:
        expected = store.calls()
    assert [d["call_id"] for d in doc] == [i.call_id for i in expected]
    for d, info in zip(doc, expected, strict=True):
        assert {k: d[k] for k in ("status", "owner", "epoch", "seq", "pending_to")} == {
            "status": info.status,
            "owner": info.owner,
            "epoch": info.epoch,
            "seq": info.seq,
            "pending_to": info.pending_to,
        }
        assert d["started_at"] == info.started_at and d["lease_until"] == info.lease_until
    by_id = {d["call_id"]: d for d in doc}
    assert by_id["call-dead"]["stale"] is True and by_id["call-live"]["stale"] is False
    assert by_id["call-live"]["pending_to"] == "dana" and by_id["call-over"]["status"] == "ended"
    stale = json.loads(_run("calls", "--store", url, "--stale", "--json").stdout)
    assert [d["call_id"] for d in stale] == ["call-dead"]
    assert json.loads(_run("calls", "--store", url, "--owner", "nobody", "--json").stdout) == []


def test_store_defaults_to_the_environment(url: str) -> None:
    ran = _run("calls", "--stale", env={"VOICESTATE_STORE": url})
    assert ran.returncode == 0, ran.stderr
    assert list(_rows(ran.stdout)) == ["call-dead"]


def test_a_missing_sqlite_file_is_a_one_line_error_and_is_not_created(tmp_path: Path) -> None:
    ran = _run("calls", "--store", "sqlite:///nope.db", cwd=tmp_path)
    assert ran.returncode == 1
    assert ran.stdout == ""
    (line,) = ran.stderr.splitlines()
    assert line.startswith("voicestate: error: ConfigError: sqlite:///nope.db: no store at ")
    assert "voicestate calls only reads; it never creates one" in line
    assert not (tmp_path / "nope.db").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_one_process_store_is_refused(tmp_path: Path) -> None:
    ran = _run("calls", "--store", "memory://")
    assert ran.returncode == 1
    (line,) = ran.stderr.splitlines()
    assert line.startswith("voicestate: error: ConfigError: memory:// serves one process")
    assert "--store sqlite:///calls.db" in line


def test_calls_is_in_the_help() -> None:
    ran = _run("--help")
    assert re.search(r"^\s+calls\s+list a store's calls", ran.stdout, re.M), ran.stdout
