"""The ``voicestate`` CLI tools: ``inspect``, ``packet show|verify``, and subcommands added
by a plugin through the ``voicestate`` entry-point group. Each runs in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

import voicestate as vs

KEYS = "k1:cli-tools-secret-0123456789"
OTHER_KID = "k2:cli-tools-secret-0123456789"
SAME_KID_OTHER_SECRET = "k1:another-secret-entirely-9876"


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICESTATE_")}
    env["NO_COLOR"] = "1"
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def _run(*args: str, stdin: bytes | None = None, **env: str) -> Ran:
    proc = subprocess.run(
        [sys.executable, "-m", "voicestate", *args],
        input=stdin,
        capture_output=True,
        env=_env(**env),
        timeout=120,
    )
    return Ran(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def _run_all(*calls: tuple[str, ...], **env: str) -> list[Ran]:
    """Several independent runs at once (each is a fresh interpreter), with the same environment."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda args: _run(*args, **env), calls))


def _one_error_line(ran: Ran, kind: str) -> str:
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert lines[0].startswith(f"voicestate: error: {kind}: "), ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    return lines[0]


# --- inspect --------------------------------------------------------------------------------


class Call(NamedTuple):
    url: str
    call_id: str
    seq: int
    context: list[dict[str, object]]


@pytest.fixture(scope="module")
def call(tmp_path_factory: pytest.TempPathFactory) -> Call:
    db = tmp_path_factory.mktemp("inspect") / "calls.db"
    url = f"sqlite:///{db}"
    store = vs.open_store(url, signing_keys=KEYS)
    try:
        s = store.open("call-42", agent="triage", meta={"channel": "sip", "caller": "+15550100"})
        s.record(vs.UserSpoke("I was charged twice"))
        t = s.record(vs.AgentSpoke("Let me pull up your invoices and"))
        s.record(vs.Interrupted(turn=t, heard="Let me pull up", heard_ms=910))
        s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))
        s.record(vs.ToolCalled("t2", "send_sms", {}), vs.ToolReturned("t2", {"sent": True}))
        s.record(vs.SlotsSet({"account_id": "A-77"}))
        store.append("call-42", vs.Note("supervisor: be gentle", agent="dana"))
        s.refresh()
        s.handoff(to="billing", reason="double charge")
        st_ = store.load("call-42")
        return Call(url, "call-42", st_.seq, st_.context("openai"))
    finally:
        store.close()


def test_inspect_prints_header_pending_items_and_timeline(call: Call) -> None:
    ran = _run("inspect", call.call_id, "--store", call.url)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = ran.stdout
    assert f"call {call.call_id}" in out
    assert f"tiers  {call.url} (deciding)" in out
    header = re.search(r"status (\w+)\s+owner (\S+)\s+epoch (\d+)\s+(\d+) events", out)
    assert header is not None, out
    assert header.groups() == ("active", "triage", "1", str(call.seq))
    assert re.search(r"running tools: t1 lookup_invoices\s*$", out, re.M), out  # t2 finished: not listed
    assert "t2 send_sms" not in out.split("running tools:", 1)[1].split("\n", 1)[0]
    assert re.search(r"pending handoff to billing \(transfer\), expires in \d+ s", out), out
    assert 'facts  {"account_id": "A-77"}' in out
    seqs = [int(x) for x in re.findall(r"^\s+(\d+)\s+\d+\.\d+\s+\S", out, re.M)]
    assert seqs == list(range(1, call.seq + 1)), out
    assert re.search(r"barges in\s+cuts turn 3 at 910 ms", out), out
    assert 'caller heard only "Let me pull up"' in out
    assert re.search(r"handoff\s+transfer to 'billing': double charge \(pending\)", out), out
    assert re.search(r"dana\s+note\s+\"supervisor: be gentle\"", out), out
    assert ran.stderr == ""


def test_inspect_json(call: Call) -> None:
    ran = _run("inspect", call.call_id, "--store", call.url, "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    doc = json.loads(ran.stdout)
    assert doc["state"]["seq"] == len(doc["events"]) == call.seq
    assert doc["state"]["call_id"] == call.call_id
    assert (doc["state"]["owner"], doc["state"]["epoch"], doc["state"]["status"]) == ("triage", 1, "active")
    assert [e["type"] for e in doc["events"]] == [
        "CallStarted",
        "UserSpoke",
        "AgentSpoke",
        "Interrupted",
        "ToolCalled",
        "ToolCalled",
        "ToolReturned",
        "SlotsSet",
        "Note",
        "HandedOff",
    ]
    assert [e["seq"] for e in doc["events"]] == list(range(1, call.seq + 1))
    assert doc["events"][3]["heard"] == "Let me pull up"
    assert doc["events"][4]["arguments"] == {"account": "A-77"}


def test_inspect_context_openai(call: Call) -> None:
    ran = _run("inspect", call.call_id, "--store", call.url, "--context", "openai")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "context (openai):" in ran.stdout
    messages = json.loads(ran.stdout.split("context (openai):", 1)[1])
    assert messages == call.context
    assert {"role": "assistant", "content": "Let me pull up"} in messages
    assert "your invoices" not in json.dumps(messages)  # heard only
    assert any(m.get("tool_calls") for m in messages)


def test_inspect_unknown_format_is_a_one_line_error(call: Call) -> None:
    ran = _run("inspect", call.call_id, "--store", call.url, "--context", "nope")
    assert ran.returncode == 1
    assert "openai" in _one_error_line(ran, "ConfigError")


def test_inspect_store_from_the_environment(call: Call) -> None:
    ran = _run("inspect", call.call_id, VOICESTATE_STORE=call.url)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert re.search(rf"\b{call.seq} events", ran.stdout)


def test_inspect_unknown_call(call: Call) -> None:
    ran = _run("inspect", "no-such-call", "--store", call.url)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "no-such-call" in _one_error_line(ran, "CallNotFound")
    assert ran.stdout == ""


def test_inspect_without_a_store_is_a_usage_error() -> None:
    ran = _run("inspect", "call-42")
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "usage: voicestate inspect" in ran.stderr
    assert "the following arguments are required: --store" in ran.stderr
    assert "Traceback" not in ran.stderr


# --- packet show / verify ------------------------------------------------------------------------


class Handoff(NamedTuple):
    url: str
    packet: vs.HandoffPacket
    store: vs.Store
    session: vs.Session


@pytest.fixture
def handoff(tmp_path: Path) -> Iterator[Handoff]:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    store = vs.open_store(url, signing_keys=KEYS)
    try:
        s = store.open("call-7", agent="triage", meta={"channel": "sip"})
        s.record(vs.UserSpoke("I was charged twice"))
        s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))
        s.record(vs.SlotsSet({"account_id": "A-77"}))
        packet = s.handoff(to="billing", reason="double charge")
        yield Handoff(url, packet, store, s)
    finally:
        store.close()


def _assert_fields(out: str, packet: vs.HandoffPacket) -> None:
    assert re.search(r"^\s+call\s+call-7\s*$", out, re.M), out
    assert re.search(r"^\s+handoff\s+transfer: triage -> billing\s*$", out, re.M), out
    assert re.search(r"^\s+reason\s+double charge\s*$", out, re.M), out
    assert re.search(rf"^\s+covers\s+seq {packet.seq}, epoch 1, chain {packet.chain.hex()}\s*$", out, re.M), out
    assert re.search(r"^\s+key id\s+k1\s*$", out, re.M), out
    assert re.search(rf"^\s+packet\s+{packet.packet_id}\s*$", out, re.M), out
    assert packet.summary
    assert "summary:" in out
    for line in packet.summary.splitlines():
        assert line in out, (line, out)


def test_packet_show_prints_the_fields_and_verdict(handoff: Handoff) -> None:
    ran = _run("packet", "show", handoff.packet.to_json(), "--keys", KEYS)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    _assert_fields(ran.stdout, handoff.packet)
    assert re.search(r"^verdict: VALID: signed with key 'k1', expires in \d+ s$", ran.stdout, re.M), ran.stdout


def test_packet_without_keys_is_not_verified(handoff: Handoff) -> None:
    show, verify = _run_all(
        ("packet", "show", handoff.packet.to_json()), ("packet", "verify", handoff.packet.to_json())
    )
    assert show.returncode == 0, show.stdout + show.stderr
    _assert_fields(show.stdout, handoff.packet)
    assert "verdict: NOT VERIFIED" in show.stdout
    assert "verdict: VALID" not in show.stdout
    assert verify.returncode == 1
    assert "verdict: NOT VERIFIED" in verify.stdout
    # keys from the environment count
    env_keys = _run("packet", "verify", handoff.packet.to_json(), VOICESTATE_SIGNING_KEYS=KEYS)
    assert env_keys.returncode == 0, env_keys.stdout + env_keys.stderr
    assert "verdict: VALID" in env_keys.stdout


@pytest.mark.parametrize("form", ["json", "token"])
def test_packet_verify_keys(handoff: Handoff, form: str) -> None:
    data = handoff.packet.to_json() if form == "json" else handoff.packet.to_token()
    ok, ok2, unknown, bad = _run_all(
        ("packet", "verify", data, "--keys", KEYS),
        ("packet", "verify", data, "--keys", f"{OTHER_KID},{KEYS}"),  # a receiver knowing more keys
        ("packet", "verify", data, "--keys", OTHER_KID),
        ("packet", "verify", data, "--keys", SAME_KID_OTHER_SECRET),
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verdict: VALID" in ok.stdout
    assert ok2.returncode == 0, ok2.stdout + ok2.stderr
    assert unknown.returncode == 1
    assert "verdict: INVALID (unknown_key)" in unknown.stdout
    assert bad.returncode == 1
    assert "verdict: INVALID (bad_signature)" in bad.stdout
    assert "Traceback" not in ok.stderr + unknown.stderr + bad.stderr


def test_packet_show_of_a_token(handoff: Handoff) -> None:
    ran = _run("packet", "show", handoff.packet.to_token(), "--keys", KEYS)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "vs1 token" in ran.stdout
    assert re.search(r"^\s+call\s+call-7\s*$", ran.stdout, re.M), ran.stdout
    assert re.search(rf"^\s+packet\s+{handoff.packet.packet_id}\s*$", ran.stdout, re.M), ran.stdout
    assert re.search(r"^\s+key id\s+k1\s*$", ran.stdout, re.M), ran.stdout
    assert "verdict: VALID" in ran.stdout


def test_tampered_packets_are_invalid(handoff: Handoff) -> None:
    text = handoff.packet.to_json()
    assert "double charge" in text
    token = handoff.packet.to_token()
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    changed, cut, show_cut, bad_token = _run_all(
        ("packet", "verify", text.replace("double charge", "triple charge"), "--keys", KEYS),
        ("packet", "verify", text[:-5], "--keys", KEYS),
        ("packet", "show", text[:-5]),
        ("packet", "verify", flipped, "--keys", KEYS),
    )
    assert changed.returncode == 1
    assert re.search(r"verdict: INVALID \((bad_signature|malformed)\)", changed.stdout), changed.stdout
    assert cut.returncode == 1
    assert "verdict: INVALID (malformed)" in cut.stdout
    assert show_cut.returncode == 1
    assert "verdict: INVALID (malformed)" in show_cut.stdout
    assert bad_token.returncode == 1
    assert re.search(r"verdict: INVALID \((bad_signature|malformed|unknown_key)\)", bad_token.stdout), bad_token
    for ran in (changed, cut, show_cut, bad_token):
        assert "Traceback" not in ran.stdout + ran.stderr


def test_verify_against_the_store(handoff: Handoff) -> None:
    pending = _run("packet", "verify", handoff.packet.to_json(), "--keys", KEYS, "--store", handoff.url)
    assert pending.returncode == 0, pending.stdout + pending.stderr
    assert "pending, redeemable by 'billing'" in pending.stdout
    assert "verdict: VALID" in pending.stdout
    handoff.store.resume(handoff.packet, agent="billing")  # redeemed: genuine, and spent (exit code 3)
    for data in (handoff.packet.to_json(), handoff.packet.to_token()):
        ran = _run("packet", "verify", data, "--keys", KEYS, "--store", handoff.url)
        assert ran.returncode == 3, ran.stdout + ran.stderr
        assert re.search(r"^verdict: REDEEMED: .*redeemed by 'billing' at epoch 2\b", ran.stdout, re.M), ran.stdout
        assert "INVALID" not in ran.stdout


def test_verify_for_the_wrong_agent(handoff: Handoff) -> None:
    wrong = _run("packet", "verify", handoff.packet.to_json(), "--keys", KEYS, "--agent", "other")
    assert wrong.returncode == 1
    assert "verdict: INVALID (wrong_target)" in wrong.stdout
    right = _run("packet", "verify", handoff.packet.to_json(), "--keys", KEYS, "--agent", "billing")
    assert right.returncode == 0, right.stdout + right.stderr
    # a token does not carry its target: the store knows it
    token = _run(
        "packet", "verify", handoff.packet.to_token(), "--keys", KEYS, "--store", handoff.url, "--agent", "other"
    )
    assert token.returncode == 1
    assert "verdict: INVALID (wrong_target)" in token.stdout


def test_packet_from_a_file(handoff: Handoff, tmp_path: Path) -> None:
    binary = tmp_path / "packet.msgpack"
    binary.write_bytes(handoff.packet.to_bytes())
    ran = _run("packet", "show", f"@{binary}", "--keys", KEYS)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    _assert_fields(ran.stdout, handoff.packet)
    assert "verdict: VALID" in ran.stdout
    text = tmp_path / "packet.json"
    text.write_text(handoff.packet.to_json() + "\n")
    ran = _run("packet", "verify", f"@{text}", "--keys", KEYS)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    missing = _run("packet", "show", f"@{tmp_path / 'nope.json'}")
    assert missing.returncode == 1
    assert "nope.json" in _one_error_line(missing, "ConfigError")


@pytest.mark.parametrize("form", ["json", "token", "msgpack"])
def test_packet_from_stdin(handoff: Handoff, form: str) -> None:
    data = {
        "json": handoff.packet.to_json().encode() + b"\n",
        "token": handoff.packet.to_token().encode() + b"\n",
        "msgpack": handoff.packet.to_bytes(),
    }[form]
    ran = _run("packet", "show", "-", "--keys", KEYS, stdin=data)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert re.search(r"^\s+call\s+call-7\s*$", ran.stdout, re.M), ran.stdout
    assert "verdict: VALID" in ran.stdout


# --- a plugin's command, loaded through the entry-point group --------------------------------------

PLUGIN = """
import voicestate.plugins


def _configure(parser):
    parser.add_argument("--name", default="world")


def run(args):
    print(f"hello, {args.name} (from vsplug)")
    return 0


@voicestate.plugins.hookimpl
def register_commands(register):
    register("hello", run, help="say hello", configure=_configure)
"""


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    (tmp_path / "vsplug.py").write_text(PLUGIN)
    dist = tmp_path / "vsplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vsplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[voicestate]\nvsplug = vsplug\n")
    return tmp_path


def test_plugin_command_runs(plugin_path: Path) -> None:
    ran = _run("hello", "--name", "Ada", PYTHONPATH=str(plugin_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.strip() == "hello, Ada (from vsplug)"
    named = _run("hello", PYTHONPATH=str(plugin_path), VOICESTATE_PLUGINS="vsplug")
    assert named.returncode == 0, named.stdout + named.stderr
    assert named.stdout.strip() == "hello, world (from vsplug)"


def test_plugin_command_is_listed_in_help(plugin_path: Path) -> None:
    ran = _run("--help", PYTHONPATH=str(plugin_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert re.search(r"^\s+hello\s+say hello\s*$", ran.stdout, re.M), ran.stdout
    for core in ("demo", "inspect", "packet"):
        assert re.search(rf"^\s+{core}\s+\S", ran.stdout, re.M), ran.stdout


def test_no_plugins_loaded_when_the_variable_is_empty(plugin_path: Path) -> None:
    ran = _run("hello", PYTHONPATH=str(plugin_path), VOICESTATE_PLUGINS="")
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "invalid choice: 'hello'" in ran.stderr
    helped = _run("--help", PYTHONPATH=str(plugin_path), VOICESTATE_PLUGINS="")
    assert helped.returncode == 0
    assert "say hello" not in helped.stdout
    assert "inspect" in helped.stdout  # the core's own commands are always there


def test_a_plugin_that_is_not_installed_is_a_one_line_error(plugin_path: Path) -> None:
    calls = [("hello",), ("inspect", "x", "--store", "memory://"), ("--help",)]
    for args, ran in zip(calls, _run_all(*calls, PYTHONPATH=str(plugin_path), VOICESTATE_PLUGINS="nope"), strict=True):
        assert ran.returncode == 1, (args, ran)
        assert "nope" in _one_error_line(ran, "ConfigError")
        assert ran.stdout == ""


def test_verify_token_with_agent_needs_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    store = vs.open_store(url, signing_keys=KEYS)
    s = store.open("call-t", agent="triage")
    token = s.handoff(to="billing").to_token()
    store.close()
    out = _run("packet", "verify", token, "--keys", KEYS, "--agent", "sales")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "voicestate: error: ConfigError: a token's target is in the store: pass --store to check it against --agent"
    ]


def test_demo_refuses_a_process_local_store() -> None:
    out = _run("demo", "--store", "memory://")
    assert out.returncode == 1
    assert _one_error_line(out, "ConfigError").startswith(
        "voicestate: error: ConfigError: memory:// serves one process"
    )
