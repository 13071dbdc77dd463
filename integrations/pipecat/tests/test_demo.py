"""``voicestate demo --pipecat`` runs end to end: real Pipecat pipelines in two processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

TRIAGE_LINE = "I'm sorry to hear that. Let me pull up your invoices and check both charges for you."


def test_the_pipecat_demo_runs() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICESTATE_")}
    out = subprocess.run(
        [sys.executable, "-m", "voicestate", "demo", "--pipecat"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    text = out.stdout
    assert out.returncode == 0, text + out.stderr
    assert "DEBUG" not in out.stderr and "INFO" not in out.stderr, out.stderr  # Pipecat's logging is quiet

    # The barge-in: an Interrupted with a strict, non-empty prefix of the triage line.
    m = re.search(r"Interrupted\s+heard \"(.+?)\" \((\d+) ms\)", text)
    assert m, text
    heard, heard_ms = m.group(1), int(m.group(2))
    assert heard and TRIAGE_LINE.startswith(heard) and heard != TRIAGE_LINE
    assert heard_ms > 0
    unheard = TRIAGE_LINE[len(heard) :].strip()

    # The tool that triage's LLM started is still running at the handoff, and billing finishes it.
    assert "pending tools at the handoff: ['t1']" in text
    assert re.search(r"resumed in [\d.]+ ms: epoch 2, .*pending tools \['t1'\]", text), text
    assert re.search(r"ToolCalled\s+t1 lookup_invoices", text)
    assert re.search(r"billing\s+ToolReturned\s+t1", text)

    # Billing's LLM received what the caller heard of the cut turn, and nothing of the rest.
    context = text.split("context billing's LLM received", 1)[1].split("[billing]", 1)[0]
    assert f"assistant {heard}\n" in context
    assert unheard not in context
    assert "interrupted" in context

    # Billing ran in another process; the human and the hang-up followed.
    pids = re.search(r"\[billing\]\s+pid (\d+)", text)
    assert pids and int(pids.group(1)) != os.getpid()
    assert "FencedError" in text
    assert re.search(r"dana\s+OwnerChanged\s+owner dana, epoch 3", text)
    assert "final: status ended" in text
    assert re.search(
        r"^handoff: [\d.]+ ms to hand off \(triage\), [\d.]+ ms to resume \(billing, another process\) "
        r"= [\d.]+ ms for voicestate's part$",
        text,
        re.M,
    ), text
