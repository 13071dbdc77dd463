"""``voicestate demo``: a scripted call, handed from a triage bot to billing in a second OS process."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from typing import Any

from ._errors import FencedError
from ._events import AgentSpoke, CallEnded, Interrupted, Note, SlotsSet, ToolCalled, ToolReturned, UserSpoke
from ._open import open_store
from ._timeline import timeline

TRIAGE_LINE = "I'm sorry to hear that. Let me pull up your invoices and check both charges for you."
HEARD = "I'm sorry to hear that. Let me pull up"


def run_demo(store_url: str | None, out: Any = None) -> int:
    out = out or sys.stdout

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    with tempfile.TemporaryDirectory(prefix="voicestate-demo-") as tmp:
        url = store_url or f"sqlite:///{os.path.join(tmp, 'calls.db')}"
        keys = f"demo:{secrets.token_urlsafe(24)}"
        call_id = f"demo-{secrets.token_hex(3)}"
        say(f"voicestate demo: call {call_id} on {url}")
        say("")
        store = open_store(url, signing_keys=keys)
        try:
            with store.open(call_id, agent="triage", meta={"channel": "sip", "caller": "+1-555-0100"}) as s:
                say("[triage] owns the call (epoch 1)")
                s.record(UserSpoke("Hi, I was charged twice for my March invoice.", confidence=0.93))
                turn = s.record(AgentSpoke(TRIAGE_LINE))
                s.record(Interrupted(turn=turn, heard=HEARD, heard_ms=1840))
                say(f'[caller] barges in: the caller heard only "{HEARD}"')
                s.record(UserSpoke("It's account A-77.", confidence=0.97))
                s.record(SlotsSet({"account_id": "A-77", "intent": "double_charge"}))
                s.record(ToolCalled("t1", "lookup_invoices", {"account": "A-77", "month": "2026-03"}))
                say("[triage] starts lookup_invoices (t1): still running at the handoff")
                s.record(AgentSpoke("Thanks. I'm putting you through to billing now."))
                t0 = time.perf_counter()
                packet = s.handoff(to="billing", reason="double charge on the March invoice")
                handoff_ms = (time.perf_counter() - t0) * 1000
                token = packet.to_token()
                say(f"[triage] hands off to billing in {handoff_ms:.2f} ms; token ({len(token)} chars): {token}")
                s.record(UserSpoke("Okay, I'll hold.", confidence=0.9))
                say("[caller] keeps talking while the handoff is pending (warm transfer): recorded by triage")

            say("[billing] resumes in a second OS process ...")
            env = dict(os.environ, VOICESTATE_SIGNING_KEYS=keys)
            proc = subprocess.run(
                [sys.executable, "-m", "voicestate._demo", url, token],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if proc.returncode != 0:
                say(proc.stdout + proc.stderr)
                say("error: the billing worker failed (see above)")
                return 1
            report = json.loads(proc.stdout.strip().splitlines()[-1])
            say(
                f"[billing] pid {report['pid']} resumed in {report['resume_ms']:.2f} ms: epoch {report['epoch']}, "
                f"{report['turns']} turns, pending tools {report['pending_tools']}, slots {report['slots']}"
            )
            say(f"[billing] its context: {report['messages']} OpenAI messages, ending {report['last_message']}")
            say("[billing] finishes t1 and answers the caller")

            try:
                s.record(Note("triage: late note from the old owner"))
                say("error: the old owner's write was accepted")
                return 1
            except FencedError as exc:
                say(f"[triage] a late write from the old owner is refused: FencedError: {exc}")
            store.append(call_id, CallEnded("caller hung up", agent="telephony"))
            say("[telephony] the caller hangs up: CallEnded appended from outside the owner")

            state = store.load(call_id)
            say("")
            say("timeline:")
            for line in timeline(store.events(call_id), state):
                say("  " + line)
            say("")
            say(
                f"final: status {state.status}, owner {state.owner}, epoch {state.epoch}, {state.seq} events, "
                f"tools {[(t.call_id, t.status) for t in state.tools.values()]}"
            )
            say(
                f"handoff: {handoff_ms:.2f} ms to hand off (triage), {report['resume_ms']:.2f} ms to resume "
                f"(billing, another process) = {handoff_ms + report['resume_ms']:.2f} ms for voicestate's part"
            )
        finally:
            store.close()
    return 0


def _billing_worker(url: str, token: str) -> None:
    """The receiving side: a fresh process that knows only the store URL, the keys and the token."""
    store = open_store(url)
    try:
        t0 = time.perf_counter()
        session = store.resume(token, agent="billing")
        resume_ms = (time.perf_counter() - t0) * 1000
        st = session.state
        messages = session.context("openai")
        session.record(
            ToolReturned(
                "t1", {"charges": [{"date": "2026-03-03", "amount": 42.10}, {"date": "2026-03-03", "amount": 42.10}]}
            )
        )
        session.record(AgentSpoke("I can see two charges of $42.10 on March 3rd. I've refunded the duplicate."))
        session.record(UserSpoke("Great, thank you!", confidence=0.95))
        session.record(SlotsSet({"resolved": True, "refund_id": "R-981"}))
        print(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "resume_ms": resume_ms,
                    "epoch": st.epoch,
                    "turns": len(st.turns),
                    "pending_tools": [t.call_id for t in st.pending_tools()],
                    "slots": dict(st.slots),
                    "messages": len(messages),
                    "last_message": messages[-1],
                }
            )
        )
    finally:
        store.close()


if __name__ == "__main__":
    _billing_worker(sys.argv[1], sys.argv[2])
