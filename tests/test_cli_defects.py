"""CLI defects fixed (issue 7, items 10 and 12): what ``packet`` says about input that is no
packet, where a genuine packet stands (``--offline``; redeemed is not INVALID), read-only
commands that never create a store, and who wrote an event appended from outside."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

import voicestate as vs

KEYS = "k1:cli-defects-secret-0123456789"
SKEW = 5.0  # voicestate's default allowance for clock skew, in seconds
EXPECTED = ("vs1. token", "packet's JSON", "@FILE", "- for standard input")


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICESTATE_")}
    env["NO_COLOR"] = "1"
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def _run(*args: str, stdin: bytes | None = None, cwd: Path | None = None, **env: str) -> Ran:
    proc = subprocess.run(
        [sys.executable, "-m", "voicestate", *args],
        input=stdin,
        capture_output=True,
        env=_env(env),
        cwd=cwd,
        timeout=120,
    )
    return Ran(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def _run_all(*calls: tuple[str, ...], **env: str) -> list[Ran]:
    """Independent runs, two at a time (each is a fresh interpreter), with the same environment."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda args: _run(*args, **env), calls))


def _verdict(ran: Ran) -> str:
    lines = [line for line in ran.stdout.splitlines() if line.startswith("verdict: ")]
    assert len(lines) == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    return lines[0]


def _one_error_line(ran: Ran, kind: str) -> str:
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert lines[0].startswith(f"voicestate: error: {kind}: "), ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    return lines[0]


# --- input that is no packet says what is expected ------------------------------------------------


def test_an_argument_that_is_no_packet_says_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "packet.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("hello\n")
    word, with_keys, file_named, text_file = (
        _run("packet", "verify", "hello"),
        _run("packet", "show", "hello", "--keys", KEYS),
        _run("packet", "verify", "packet.json", cwd=tmp_path),
        _run("packet", "verify", "@notes.txt", cwd=tmp_path),
    )
    for ran in (word, with_keys, file_named, text_file):
        assert ran.returncode == 1, ran
        line = _verdict(ran)
        assert line.startswith("verdict: INVALID (malformed): "), line
        assert "Expecting value" not in line
        for what in EXPECTED:
            assert what in line, (what, line)
    assert "'hello' is neither a vs1. token nor a packet's JSON" in _verdict(word)
    # the argument names a file: the @ it lacks
    assert "a file 'packet.json' exists: write @packet.json to read it" in _verdict(file_named)
    assert "'notes.txt' holds neither" in _verdict(text_file)
    assert "starts 'hello\\n'" in _verdict(text_file)


@pytest.mark.parametrize("stdin", [b"", b"\n  \n", b"hello\n"])
def test_standard_input_that_is_no_packet_says_what_is_expected(stdin: bytes) -> None:
    ran = _run("packet", "verify", "-", "--keys", KEYS, stdin=stdin)
    assert ran.returncode == 1, ran
    line = _verdict(ran)
    assert line.startswith("verdict: INVALID (malformed): standard input "), line
    assert ("is empty" in line) == (not stdin.strip()), line
    for what in EXPECTED:
        assert what in line, (what, line)


def test_a_damaged_json_packet_still_says_it_is_not_json() -> None:
    ran = _run("packet", "verify", '{"call_id": ', "--keys", KEYS)
    assert ran.returncode == 1
    assert _verdict(ran).startswith("verdict: INVALID (malformed): not a JSON packet"), ran.stdout


# --- where a genuine packet stands -------------------------------------------------------------------


class Calls(NamedTuple):
    url: str
    pending: vs.HandoffPacket
    redeemed: vs.HandoffPacket
    replaced: vs.HandoffPacket
    cancelled: vs.HandoffPacket
    cleared: vs.HandoffPacket
    ended: vs.HandoffPacket


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Calls]:
    """One call per fate of a handoff, in one SQLite store."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fates') / 'calls.db'}"
    store = vs.open_store(url, signing_keys=KEYS)
    try:
        packets: dict[str, vs.HandoffPacket] = {}
        for fate in Calls._fields[1:]:
            s = store.open(f"call-{fate}", agent="triage")
            s.record(vs.UserSpoke("I was charged twice"))
            packets[fate] = s.handoff(to="billing", reason="double charge")
            if fate == "redeemed":
                store.resume(packets[fate], agent="billing")
            elif fate == "replaced":
                s.handoff(to="dana", kind="escalate")
            elif fate == "cancelled":
                s.cancel_handoff()
            elif fate == "cleared":
                store.resume(s.call_id, agent="rescuer", takeover=True, force=True)
            elif fate == "ended":
                store.append(s.call_id, vs.CallEnded("caller hung up"))
        yield Calls(url, **packets)
    finally:
        store.close()


def test_a_redeemed_packet_is_redeemed_not_invalid(calls: Calls) -> None:
    """The reported defect: with VOICESTATE_STORE set, a legitimately redeemed packet was INVALID."""
    packet = calls.redeemed
    token, json_form, show = _run_all(
        ("packet", "verify", packet.to_token(), "--keys", KEYS),
        ("packet", "verify", packet.to_json(), "--keys", KEYS, "--agent", "billing"),
        ("packet", "show", packet.to_json(), "--keys", KEYS),
        VOICESTATE_STORE=calls.url,
    )
    for ran in (token, json_form, show):
        assert ran.returncode == 3, ran
        line = _verdict(ran)
        assert line.startswith("verdict: REDEEMED: genuine (signed with key 'k1'), redeemed by 'billing' at epoch 2")
        assert "INVALID" not in ran.stdout
        assert re.search(r"^\s+store\s+redeemed by 'billing' at epoch 2 \(seq \d+, \d{4}-\d\d-\d\d ", ran.stdout, re.M)
        assert re.search(r"^\s+now\s+owned by 'billing', epoch 2 \(\d+ events\)$", ran.stdout, re.M), ran.stdout
    assert re.search(r"^\s+handoff\s+transfer: triage -> billing\s*$", show.stdout, re.M)  # show still shows


def test_each_fate_of_a_handoff_has_its_verdict(calls: Calls) -> None:
    fates = ("pending", "replaced", "cancelled", "cleared", "ended")
    runs = _run_all(
        *(("packet", "verify", getattr(calls, fate).to_token(), "--keys", KEYS, "--store", calls.url) for fate in fates)
    )
    got = dict(zip(fates, runs, strict=True))
    assert got["pending"].returncode == 0, got["pending"]
    assert re.fullmatch(r"verdict: VALID: signed with key 'k1', expires in \d+ s", _verdict(got["pending"]))
    assert "pending, redeemable by 'billing' (offered by 'triage' at seq 3)" in got["pending"].stdout
    assert "  now " not in got["pending"].stdout  # as docs/cli.md shows it: the store line, the verdict
    expect = {
        "replaced": "verdict: REPLACED: genuine (signed with key 'k1'), but a later handoff to 'dana' replaced it",
        "cancelled": "verdict: CANCELLED: genuine (signed with key 'k1'), but 'triage' withdrew it; ask for a new",
        "cleared": "verdict: CLEARED: genuine (signed with key 'k1'), but 'rescuer' took the call over before it",
        "ended": "verdict: ENDED: genuine (signed with key 'k1'), but the call ended before it was redeemed",
    }
    for fate, start in expect.items():
        ran = got[fate]
        assert ran.returncode == 3, (fate, ran)
        assert _verdict(ran).startswith(start), (fate, ran.stdout)
        assert "INVALID" not in ran.stdout
    assert "replaced by another handoff (escalate to 'dana', packet " in got["replaced"].stdout
    assert "owned by 'triage', epoch 1" in got["replaced"].stdout
    assert "withdrawn by 'triage' (seq 4, " in got["cancelled"].stdout
    assert "cleared when 'rescuer' took the call over at epoch 2" in got["cleared"].stdout
    assert re.search(r"the call ended \(seq 4, [^)]*: caller hung up\) before it was redeemed", got["ended"].stdout)


def test_the_target_is_still_checked_against_the_store(calls: Calls) -> None:
    wrong, right = _run_all(
        ("packet", "verify", calls.redeemed.to_token(), "--keys", KEYS, "--agent", "sales"),
        ("packet", "verify", calls.pending.to_token(), "--keys", KEYS, "--agent", "billing"),
        VOICESTATE_STORE=calls.url,
    )
    assert wrong.returncode == 1
    assert _verdict(wrong) == "verdict: INVALID (wrong_target): addressed to 'billing', not 'sales'"
    assert right.returncode == 0, right
    assert _verdict(right).startswith("verdict: VALID")


def test_a_packet_from_another_store_is_invalid(calls: Calls, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    store = vs.open_store(other, signing_keys=KEYS)
    try:
        store.open("call-pending", agent="triage").handoff(to="billing")  # same call id, its own handoff
    finally:
        store.close()
    for ran in _run_all(
        ("packet", "verify", calls.pending.to_json(), "--keys", KEYS, "--store", other),
        ("packet", "verify", calls.pending.to_token(), "--keys", KEYS, "--store", other),
    ):
        assert ran.returncode == 1, ran
        line = _verdict(ran)
        assert line.startswith("verdict: INVALID (chain_mismatch): call 'call-pending' in "), line
        assert "has no handoff with packet id" in line
    absent = _run("packet", "verify", calls.redeemed.to_token(), "--keys", KEYS, "--store", other)
    assert absent.returncode == 1
    assert _verdict(absent).startswith("verdict: INVALID (CallNotFound): no call 'call-redeemed' in ")
    # a store that cannot be used is an error, not a verdict about the packet
    unknown = _run("packet", "verify", calls.pending.to_token(), "--keys", KEYS, "--store", "nope://x")
    assert unknown.returncode == 1
    assert "nope://" in _one_error_line(unknown, "UnknownBackend")
    assert "verdict" not in unknown.stdout


def test_offline_never_opens_a_store(calls: Calls, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    env = {"VOICESTATE_STORE": f"sqlite:///{missing}"}
    offline, online = _run_all(
        ("packet", "verify", calls.redeemed.to_token(), "--keys", KEYS, "--offline"),
        ("packet", "verify", calls.redeemed.to_token(), "--keys", KEYS),
        **env,
    )
    assert offline.returncode == 0, offline
    assert re.fullmatch(r"verdict: VALID: signed with key 'k1', expires in \d+ s", _verdict(offline))
    assert "store" not in offline.stdout
    # without --offline the variable is the store: it is read, and, missing, not created
    assert online.returncode == 1
    assert str(missing) in _one_error_line(online, "ConfigError")
    assert not missing.exists()


def test_offline_conflicts(calls: Calls) -> None:
    both, token_target = _run_all(
        ("packet", "verify", calls.pending.to_token(), "--keys", KEYS, "--offline", "--store", calls.url),
        ("packet", "verify", calls.pending.to_token(), "--keys", KEYS, "--offline", "--agent", "billing"),
    )
    assert both.returncode == 2
    assert "argument --store: not allowed with argument --offline" in both.stderr
    assert token_target.returncode == 1
    assert "--offline does not read" in _one_error_line(token_target, "ConfigError")


def test_an_expired_packet(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    store = vs.open_store(url, signing_keys=KEYS)
    try:
        packet = store.open("call-late", agent="triage").handoff(to="billing", ttl=0.05)
    finally:
        store.close()
    time.sleep(max(0.0, packet.expires_at + SKEW + 0.3 - time.time()))
    in_store, offline, nowhere = _run_all(
        ("packet", "verify", packet.to_token(), "--keys", KEYS, "--store", url),
        ("packet", "verify", packet.to_json(), "--keys", KEYS, "--offline"),
        ("packet", "verify", packet.to_json(), "--keys", KEYS),
    )
    assert in_store.returncode == 3, in_store
    assert re.match(
        r"verdict: EXPIRED: genuine \(signed with key 'k1'\), expired \d+ s ago without being redeemed; "
        r"'triage' still owns the call",
        _verdict(in_store),
    )
    assert "still offered to 'billing', but it expired" in in_store.stdout
    for ran, hint in ((offline, "drop --offline"), (nowhere, "pass --store URL or set VOICESTATE_STORE")):
        assert ran.returncode == 3, ran
        line = _verdict(ran)
        assert line.startswith("verdict: EXPIRED: signed with key 'k1', expired "), line
        assert hint in line


# --- read-only commands never create a store ---------------------------------------------------------


def test_inspect_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "calsl.db"
    runs = _run_all(
        ("inspect", "call-1", "--store", f"sqlite:///{missing}"),
        ("inspect", "call-1", "--store", f"memory:// sqlite:///{missing}?timeout=5"),  # tiers: each is checked
    )
    for ran in runs:
        assert ran.returncode == 1, ran
        line = _one_error_line(ran, "ConfigError")
        assert f"no store at {missing}" in line
        assert "voicestate inspect only reads; it never creates one" in line
        assert "check the path" in line
        assert ran.stdout == ""
    assert not missing.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_inspect_env_store_and_relative_paths(tmp_path: Path) -> None:
    ran = _run("inspect", "call-1", cwd=tmp_path, VOICESTATE_STORE="sqlite:///calls.db")
    assert ran.returncode == 1
    assert f"no store at {tmp_path / 'calls.db'}" in _one_error_line(ran, "ConfigError")
    assert not (tmp_path / "calls.db").exists()


def test_a_slash_too_few_is_named(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    vs.open_store(f"sqlite:///{db}", signing_keys=KEYS).close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    relative = str(db).lstrip("/")  # sqlite:/// + an absolute path without its slash: relative
    ran = _run("inspect", "call-1", "--store", f"sqlite:///{relative}", cwd=elsewhere)
    assert ran.returncode == 1
    line = _one_error_line(ran, "ConfigError")
    assert f"did you mean sqlite:///{db} ({db} exists)?" in line
    assert not (elsewhere / relative).exists()
    folder = _run("inspect", "call-1", "--store", f"sqlite:///{tmp_path}")
    assert folder.returncode == 1
    assert "is a directory, not a store file" in _one_error_line(folder, "ConfigError")


def test_packet_verify_against_a_missing_store_creates_nothing(calls: Calls, tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    ran = _run("packet", "verify", calls.pending.to_json(), "--keys", KEYS, "--store", f"sqlite:///{missing}")
    assert ran.returncode == 1
    line = _one_error_line(ran, "ConfigError")
    assert f"no store at {missing}" in line
    assert "voicestate packet only reads" in line
    assert not missing.exists()


# --- who wrote an event appended from outside the owner -------------------------------------------------


def test_writes_from_outside_the_owner_are_named_in_the_timeline(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    store = vs.open_store(url, signing_keys=KEYS)
    try:
        s = store.open("call-out", agent="triage")
        s.record(vs.ToolCalled("t1", "lookup", {}), vs.ToolCalled("t2", "sms", {}))
        store.append("call-out", vs.Note("be gentle"))
        store.append("call-out", vs.Note("noted", agent="dana"))
        store.append("call-out", vs.ToolReturned("t1", {"ok": True}))
        store.append("call-out", vs.ToolCancelled("t2", "timeout", agent="worker-7"))
        store.append("call-out", vs.CallEnded("caller hung up"))
    finally:
        store.close()
    ran = _run("inspect", "call-out", "--store", url)
    assert ran.returncode == 0, ran
    out = ran.stdout
    row = r"^\s+{seq}\s+\d+\.\d+\s+{who}\s+{what}\s+{detail}"
    for seq, who, what, detail in [
        (1, "triage", "call start", "owner triage"),
        (4, r"\(outside\)", "note", '"be gentle"'),
        (5, "dana", "note", '"noted"'),
        (6, r"\(outside\)", "tool result", "t1: "),
        (7, "worker-7", "tool cancel", "t2: timeout"),
        (8, r"\(outside\)", "call end", "caller hung up"),
    ]:
        assert re.search(row.format(seq=seq, who=who, what=what, detail=detail), out, re.M), (seq, out)
    assert not re.search(r"^\s+\d+\s+\d+\.\d+\s+\?\s", out, re.M), out
