"""``voicestate demo``: a scripted call, from a triage bot to billing (another OS process) to a human."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from ._errors import ConfigError, FencedError
from ._events import (
    AgentSpoke,
    CallEnded,
    Interrupted,
    Note,
    SlotsSet,
    ToolCalled,
    ToolReturned,
    UserSpoke,
)
from ._open import open_store
from ._output import Printer
from ._timeline import timeline_rows

TRIAGE_LINE = "I'm sorry to hear that. Let me pull up your invoices and check both charges for you."
HEARD = "I'm sorry to hear that. Let me pull up"


def _messages(printer: Printer, who: str, messages: Sequence[dict[str, Any]]) -> None:
    printer.say(f"  context {who} received ({len(messages)} OpenAI messages):", "dim")
    for m in messages:
        if m.get("tool_calls"):
            fn = m["tool_calls"][0]["function"]
            text = f"calls {fn['name']}({fn['arguments']})"
        else:
            text = str(m["content"]).replace("\n", " / ")
        printer.say(f"    {m['role']:<9} {text[:150]}", "dim")


def run_demo(store_url: str | None, printer: Printer | None = None) -> int:
    p = printer or Printer()
    with tempfile.TemporaryDirectory(prefix="voicestate-demo-") as tmp:
        url = store_url or f"sqlite:///{os.path.join(tmp, 'calls.db')}"
        keys = f"demo:{secrets.token_urlsafe(24)}"
        call_id = f"demo-{secrets.token_hex(3)}"
        p.say(f"voicestate demo: call {call_id} on {url}", "title")
        p.say()
        store = open_store(url, signing_keys=keys)
        if not store.tiers.deciding.backend.capabilities.shared_across_processes:
            store.close()
            raise ConfigError(
                f"{url} serves one process, and the demo hands the call to a second one: "
                "use a store processes share, e.g. --store sqlite:///calls.db"
            )
        try:
            with store.open(call_id, agent="triage", meta={"channel": "sip", "caller": "+1-555-0100"}) as s:
                p.say("[triage]    owns the call (epoch 1)", "owner")
                s.record(UserSpoke("Hi, I was charged twice for my March invoice.", confidence=0.93))
                turn = s.record(AgentSpoke(TRIAGE_LINE))
                s.record(Interrupted(turn=turn, heard=HEARD, heard_ms=1840))
                p.say(f'[caller]    barges in: the caller heard only "{HEARD}"', "caller")
                s.record(UserSpoke("It's account A-77. My card is 4111 1111 1111 1111.", confidence=0.97))
                p.say("[caller]    reads out a card number: stored as [card ending 1111] (redacted at record time)")
                s.record(SlotsSet({"account_id": "A-77", "intent": "refund a double charge"}))
                s.record(ToolCalled("t1", "lookup_invoices", {"account": "A-77", "month": "2026-03"}))
                p.say("[triage]    starts lookup_invoices (t1): still running at the handoff", "tool")
                s.record(AgentSpoke("Thanks. I'm putting you through to billing now."))
                t0 = time.perf_counter()
                packet = s.handoff(to="billing", reason="double charge on the March invoice")
                handoff_ms = (time.perf_counter() - t0) * 1000
                token = packet.to_token()
                p.say(
                    f"[triage]    hands off to billing in {handoff_ms:.2f} ms; token ({len(token)} chars):", "handoff"
                )
                p.say(f"            {token}", "dim")
                s.record(UserSpoke("Okay, I'll hold.", confidence=0.9))
                p.say("[caller]    keeps talking while the handoff is pending (warm transfer): triage records it")

            p.say("[billing]   resumes in a second OS process ...", "owner")
            env = dict(os.environ, VOICESTATE_SIGNING_KEYS=keys)
            proc = subprocess.run(
                [sys.executable, "-m", "voicestate._demo", url, token],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if proc.returncode != 0:
                p.say(proc.stdout + proc.stderr)
                p.say("voicestate: error: the billing worker failed (see above)", "bad")
                return 1
            report = json.loads(proc.stdout.strip().splitlines()[-1])
            p.say(
                f"[billing]   pid {report['pid']} resumed in {report['resume_ms']:.2f} ms: epoch {report['epoch']}, "
                f"{report['turns']} turns, pending tools {report['pending_tools']}, slots {report['slots']}",
                "owner",
            )
            _messages(p, "billing", report["messages"])
            p.say("[billing]   finishes t1, answers, and escalates to a human when the caller asks for one", "handoff")

            try:
                s.record(Note("triage: late note from the old owner"))
                p.say("voicestate: error: the old owner's write was accepted", "bad")
                return 1
            except FencedError as exc:
                p.say(f"[triage]    a late write from the old owner is refused: FencedError: {exc}", "warn")

            t0 = time.perf_counter()
            human = store.resume(report["token"], agent="dana")
            human_ms = (time.perf_counter() - t0) * 1000
            pending = human.state.handoffs[-1]
            p.say(f"[dana]      a human supervisor takes the call in {human_ms:.2f} ms (epoch {human.epoch})", "owner")
            p.say("  what dana sees (the warm-transfer summary, no LLM):", "dim")
            for line in (pending.summary or "").splitlines():
                p.say(f"    {line}", "dim")
            human.record(AgentSpoke("Hi, this is Dana. I've waived the late fee, and your refund is on its way."))
            human.record(UserSpoke("Perfect, thanks!", confidence=0.96))
            store.append(call_id, CallEnded("caller hung up", agent="telephony"))
            p.say("[telephony] the caller hangs up: CallEnded appended from outside the owner")

            state = store.load(call_id)
            p.say()
            p.say("timeline:", "title")
            for line, style in timeline_rows(store.events(call_id), state):
                p.say("  " + line, style)
            p.say()
            p.say(
                f"final: status {state.status}, owner {state.owner}, epoch {state.epoch}, {state.seq} events, "
                f"tools {[(t.call_id, t.status) for t in state.tools.values()]}",
                "ok",
            )
            p.say(
                f"handoff: {handoff_ms:.2f} ms to hand off (triage), {report['resume_ms']:.2f} ms to resume "
                f"(billing, another process) = {handoff_ms + report['resume_ms']:.2f} ms for voicestate's part",
                "ok",
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
        charges = [{"date": "2026-03-03", "amount": 42.10}, {"date": "2026-03-03", "amount": 42.10}]
        session.record(ToolReturned("t1", {"charges": charges}))
        session.record(AgentSpoke("I can see two charges of $42.10 on March 3rd. I've refunded the duplicate."))
        session.record(SlotsSet({"refund_id": "R-981"}))
        session.record(UserSpoke("Thanks. Can I also talk to a supervisor about the late fee?", confidence=0.95))
        packet = session.handoff(to="dana", kind="escalate", reason="caller asks for a supervisor about a late fee")
        print(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "resume_ms": resume_ms,
                    "epoch": st.epoch,
                    "turns": len(st.turns),
                    "pending_tools": [t.call_id for t in st.pending_tools()],
                    "slots": dict(st.slots),
                    "messages": messages,
                    "token": packet.to_token(),
                }
            )
        )
    finally:
        store.close()


if __name__ == "__main__":
    _billing_worker(sys.argv[1], sys.argv[2])
