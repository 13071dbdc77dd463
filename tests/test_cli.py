"""The ``voicestate`` command line: the demo end to end, and its errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import NamedTuple

import pytest

import voicestate as vs

KEYS = "k1:cli-tests-secret-0123456789"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("VOICESTATE_STORE", "VOICESTATE_SIGNING_KEYS"):
        env.pop(var, None)
    return env


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    pid: int


def _run(*args: str, cmd: list[str] | None = None) -> Ran:
    argv = [*(cmd or [sys.executable, "-m", "voicestate"]), *args]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()) as proc:
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        return Ran(proc.returncode, out, err, proc.pid)


def _script() -> list[str]:
    """The installed ``voicestate`` console script (from the same environment as this Python)."""
    name = "voicestate.exe" if os.name == "nt" else "voicestate"
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        path = Path(folder) / name
        if path.exists():
            return [str(path)]
    raise AssertionError(f"the voicestate console script is not installed next to {sys.executable}")


@pytest.fixture(scope="module")
def demo() -> Ran:
    return _run("demo")


def test_demo_exits_zero(demo: Ran) -> None:
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert not [line for line in demo.stdout.splitlines() if line.startswith("error")], demo.stdout
    assert "Traceback" not in demo.stdout + demo.stderr


def test_demo_shows_the_barge_in_with_the_heard_prefix(demo: Ran) -> None:
    out = demo.stdout
    assert re.search(r'barges in.*heard only "I\'m sorry to hear that\. Let me pull up"', out), out
    # the timeline marks the cut turn with what the caller heard
    assert re.search(r'caller heard only "I\'m sorry to hear that\. Let me pull up" \(1\.84 s\)', out), out


def test_demo_shows_the_pending_tool_and_the_token(demo: Ran) -> None:
    out = demo.stdout
    assert re.search(r"lookup_invoices \(t1\).*still running at the handoff", out), out
    token = re.search(r"\b(vs1\.[A-Za-z0-9_-]+)", out)
    assert token is not None, out
    assert len(token.group(1)) <= 256


def test_demo_resumes_billing_in_another_process(demo: Ran) -> None:
    out = demo.stdout
    m = re.search(r"\[billing\]\s+pid (\d+) resumed in ([0-9.]+) ms: epoch 2, .*pending tools \['t1'\]", out)
    assert m is not None, out
    pid = int(m.group(1))
    assert pid not in (os.getpid(), demo.pid)  # neither this process nor the demo's own


def test_demo_fences_the_old_owner(demo: Ran) -> None:
    out = demo.stdout
    assert re.search(r"\[triage\].*refused: FencedError: 'triage' no longer owns call", out), out


def test_demo_prints_the_timeline(demo: Ran) -> None:
    out = demo.stdout
    assert "timeline:" in out
    timeline = out.split("timeline:", 1)[1]
    owner = re.search(
        r"^\s*(\d+)\s+[0-9.]+\s+billing\s+owner\s+billing redeemed the handoff: epoch 2\s*$", timeline, re.M
    )
    assert owner is not None, timeline
    result = re.search(r"^\s*(\d+)\s+[0-9.]+\s+billing\s+tool result\s+t1: ", timeline, re.M)
    assert result is not None, timeline
    assert int(result.group(1)) > int(owner.group(1))  # billing finished t1 after it took over
    assert re.search(r"^\s*\d+\s+[0-9.]+\s+telephony\s+call end\s+caller hung up", timeline, re.M), timeline
    seqs = [int(x) for x in re.findall(r"^\s*(\d+)\s+[0-9.]+\s", timeline, re.M)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert "final: status ended, owner None, epoch 3" in out
    assert re.search(r"^\s*\d+\s+[0-9.]+\s+dana\s+owner\s+dana redeemed the handoff: epoch 3\s*$", timeline, re.M)


def test_demo_escalates_to_a_human_with_the_summary(demo: Ran) -> None:
    out = demo.stdout
    assert re.search(r"\[dana\]\s+a human supervisor takes the call in [0-9.]+ ms \(epoch 3\)", out), out
    summary = out.split("what dana sees", 1)[1].split("[telephony]", 1)[0]
    assert "wants: refund a double charge" in summary
    assert "account_id=A-77" in summary and "refund_id=R-981" in summary
    assert 'Unanswered: "Thanks. Can I also talk to a supervisor about the late fee?"' in summary
    # the billing agent's context is shown, heard-only, with the pending tool answered
    context = out.split("context billing received", 1)[1].split("[billing]", 1)[0]
    assert "Let me pull up your invoices" not in context
    assert "still running" in context


def test_demo_redacts_the_card_number(demo: Ran) -> None:
    assert "4111 1111 1111 1111" not in demo.stdout.split("reads out a card number", 1)[1]
    assert "[card ending 1111]" in demo.stdout


def test_demo_reports_handoff_and_resume_times(demo: Ran) -> None:
    lines = [line for line in demo.stdout.splitlines() if line.strip()]
    last = lines[-1]
    m = re.fullmatch(
        r"handoff: ([0-9]+\.[0-9]+) ms to hand off \(triage\), ([0-9]+\.[0-9]+) ms to resume "
        r"\(billing, another process\) = ([0-9]+\.[0-9]+) ms for voicestate's part",
        last,
    )
    assert m is not None, last
    handoff, resume, total = (float(x) for x in m.groups())
    assert handoff > 0
    assert resume > 0
    assert total == pytest.approx(handoff + resume, abs=0.02)


def test_console_script_demo_with_a_sqlite_store(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    url = f"sqlite:///{db}"
    proc = _run("demo", "--store", url, cmd=_script())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"on {url}" in proc.stdout
    call_id = re.search(r"voicestate demo: call (\S+) on ", proc.stdout)
    assert call_id is not None, proc.stdout
    assert db.exists()
    store = vs.open_store(url, signing_keys=KEYS)
    try:
        st = store.load(call_id.group(1))
        assert (st.status, st.owner, st.epoch) == ("ended", None, 3)
        assert st.tools["t1"].status == "ok"
        assert st.turns[1].interrupted
        assert st.turns[1].heard == "I'm sorry to hear that. Let me pull up"
        assert st.ended_reason == "caller hung up"
    finally:
        store.close()


@pytest.mark.parametrize("args", [[], ["bogus"], ["no-such-command", "--store", "memory://"]])
def test_no_or_unknown_command_prints_help(args: list[str]) -> None:
    proc = _run(*args)
    assert proc.returncode != 0
    both = proc.stdout + proc.stderr
    assert "usage: voicestate" in both
    assert "demo" in both


def test_bad_store_url_is_a_one_line_error() -> None:
    proc = _run("demo", "--store", "nope://x")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("voicestate: error:")
    assert "nope" in err[0]
    assert "Traceback" not in proc.stdout + proc.stderr
