"""``voicestate demo --pipecat``: the core demo's scripted call, through real Pipecat pipelines.

Triage is a Pipecat pipeline (user aggregator, a scripted LLM service, a word-timed
TTS, an output transport that plays in real time, ``VoiceStateProcessor``, assistant
aggregator). The caller barges in with a real ``InterruptionFrame`` while the answer
plays; the LLM starts ``lookup_invoices`` through Pipecat's function calling and the
handler is still running at the handoff. Billing resumes the call in a second OS
process (``python -m voicestate_pipecat._demo URL TOKEN``) from the token alone, builds
its pipeline from ``session.context("pipecat")``, finishes the tool, answers, and
escalates to a human through a tool of its own. Only public voicestate names are used.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from loguru import logger

# Pipecat logs at DEBUG (and greets at INFO on import): keep the demo readable.
logger.remove()
logger.add(sys.stderr, level="WARNING")

from pipecat.frames.frames import (  # noqa: E402
    FunctionCallResultProperties,
    InterruptionFrame,
    LLMRunFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair  # noqa: E402
from pipecat.services.llm_service import FunctionCallParams  # noqa: E402

import voicestate as vs  # noqa: E402

from ._processor import VoiceStateProcessor  # noqa: E402
from ._scripted import Call, PlayoutTransport, ScriptedLLM, ScriptedTTS, run_pipeline  # noqa: E402

TRIAGE_LINE = "I'm sorry to hear that. Let me pull up your invoices and check both charges for you."
CUT_AFTER = 9  # words of TRIAGE_LINE played before the caller barges in
WORD_SECS = 0.08  # how long the scripted TTS takes to say a word
CHARGES = [{"date": "2026-03-03", "amount": 42.10}, {"date": "2026-03-03", "amount": 42.10}]


def _say(text: str = "") -> None:
    print(text, flush=True)


def _user_says(text: str) -> list[Any]:
    return [UserStartedSpeakingFrame(), TranscriptionFrame(text, "caller", ""), UserStoppedSpeakingFrame()]


def _playing(text: str) -> float:
    """Seconds the scripted TTS takes to say ``text``, plus a margin for the pipeline."""
    return len(text.split()) * WORD_SECS + 0.4


async def _until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _pipeline(session: vs.Session, llm: ScriptedLLM, context: LLMContext) -> tuple[Pipeline, VoiceStateProcessor]:
    pair = LLMContextAggregatorPair(context)
    processor = VoiceStateProcessor(session)
    stages = [pair.user(), llm, ScriptedTTS(word_secs=WORD_SECS), PlayoutTransport(), processor, pair.assistant()]
    return Pipeline(stages), processor


def _short(value: Any, n: int = 90) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.replace("\n", " / ")
    return text if len(text) <= n else text[: n - 3] + "..."


def _describe(ev: vs.Event) -> str:
    """One short line per event, from its public fields."""
    if isinstance(ev, (vs.UserSpoke, vs.AgentSpoke, vs.Note)):
        return repr(_short(ev.text))
    if isinstance(ev, vs.Interrupted):
        return f"heard {ev.heard!r} ({ev.heard_ms} ms)"
    if isinstance(ev, vs.ToolCalled):
        return f"{ev.call_id} {ev.name}({_short(ev.arguments, 60)})"
    if isinstance(ev, vs.ToolReturned):
        return f"{ev.call_id} -> {_short(ev.error or ev.result, 60)}"
    if isinstance(ev, vs.ToolCancelled):
        return f"{ev.call_id} ({ev.reason})"
    if isinstance(ev, vs.SlotsSet):
        return _short(ev.values)
    if isinstance(ev, vs.HandedOff):
        return f"-> {ev.to_agent} ({ev.kind}): {ev.reason}"
    if isinstance(ev, vs.OwnerChanged):
        return f"owner {ev.owner}, epoch {ev.epoch}"
    if isinstance(ev, vs.CallEnded):
        return str(ev.reason)
    if isinstance(ev, vs.CallStarted):
        return _short(ev.meta)
    return ""


def _messages(who: str, messages: Sequence[dict[str, Any]]) -> None:
    _say(f"  context {who}'s LLM received ({len(messages)} messages, from session.context('pipecat')):")
    for m in messages:
        if m.get("tool_calls"):
            fn = m["tool_calls"][0]["function"]
            text = f"calls {fn['name']}({fn['arguments']})"
        else:
            text = str(m.get("content")).replace("\n", " / ")
        _say(f"    {m.get('role', '?'):<9} {text[:150]}")


# -- triage: this process --------------------------------------------------------------------


async def _triage(url: str, keys: str, call_id: str) -> int:
    store = vs.open_store(url, signing_keys=keys)
    try:
        return await _triage_call(store, url, keys, call_id)
    finally:
        await store.aclose()


async def _triage_call(store: vs.Store, url: str, keys: str, call_id: str) -> int:
    session = await store.aopen(call_id, agent="triage", meta={"channel": "sip", "caller": "+1-555-0100"})
    _say("[triage]    owns the call (epoch 1); its Pipecat pipeline:")
    _say("            user aggregator -> LLM -> TTS -> output transport -> VoiceStateProcessor -> assistant aggregator")
    step2 = "Thanks. I'm checking your March invoices and putting you through to billing now."
    llm = ScriptedLLM(
        [
            TRIAGE_LINE,
            [step2, Call("lookup_invoices", {"account": "A-77", "month": "2026-03"}, "t1")],
            [],  # "Okay, I'll hold.": nothing to say
        ]
    )

    async def lookup_invoices(params: FunctionCallParams) -> None:
        # The app's own facts, recorded beside the turns; the lookup itself is slow.
        session.record_nowait(vs.SlotsSet({"account_id": "A-77", "intent": "refund a double charge"}))
        await asyncio.Event().wait()  # still running at the handoff; billing finishes it

    llm.register_function("lookup_invoices", lookup_invoices, cancel_on_interruption=False)
    pipeline, processor = _pipeline(session, llm, LLMContext())
    outcome: dict[str, Any] = {}

    async def drive(worker: Any) -> None:
        for frame in _user_says("Hi, I was charged twice for my March invoice."):
            await worker.queue_frame(frame)
        await _until(lambda: len(llm.seen) == 1, "triage's first answer")
        # The answer plays word by word; the caller barges in a little over halfway through.
        await asyncio.sleep(CUT_AFTER * WORD_SECS)
        await worker.queue_frame(InterruptionFrame())
        await _until(lambda: any(t.interrupted for t in session.state.turns), "the Interrupted event")
        cut = next(t for t in session.state.turns if t.interrupted)
        _say(f'[caller]    barges in (InterruptionFrame): the caller heard only "{cut.heard}" ({cut.heard_ms} ms)')
        for frame in _user_says("It's account A-77. My card is 4111 1111 1111 1111."):
            await worker.queue_frame(frame)
        await _until(lambda: "t1" in session.state.tools, "the lookup_invoices call")
        _say("[triage]    the LLM calls lookup_invoices (t1) through Pipecat's function calling: still running")
        await asyncio.sleep(_playing(step2))
        await _until(lambda: any(t.text == step2 for t in session.state.turns), "triage's second answer")
        t0 = time.perf_counter()
        packet = await session.ahandoff("billing", reason="double charge on the March invoice")
        outcome["handoff_ms"] = handoff_ms = (time.perf_counter() - t0) * 1000
        token = packet.to_token()
        pending = [t.call_id for t in session.state.pending_tools()]
        _say(f"[triage]    hands off to billing in {handoff_ms:.2f} ms; pending tools at the handoff: {pending}")
        _say(f"            token ({len(token)} chars): {token}")
        for frame in _user_says("Okay, I'll hold."):
            await worker.queue_frame(frame)
        await _until(lambda: session.state.turns[-1].text == "Okay, I'll hold.", "the warm-transfer utterance")
        await processor.flush()
        _say("[caller]    keeps talking while the handoff is pending (warm transfer): triage records it")

        # The triage pipeline stays up until billing has taken the call, as a bridged call would.
        _say("[billing]   resumes in a second OS process ...")
        env = dict(os.environ, VOICESTATE_SIGNING_KEYS=keys)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voicestate_pipecat._demo",
            url,
            token,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 90)
        except TimeoutError:
            proc.kill()  # never leave the billing process behind
            await proc.wait()
            raise
        outcome["returncode"] = proc.returncode
        outcome["stdout"], outcome["stderr"] = out.decode(), err.decode()

    await run_pipeline(pipeline, drive, timeout=120)
    if outcome.get("returncode") != 0:
        _say(outcome.get("stdout", "") + outcome.get("stderr", ""))
        _say("voicestate: error: the billing worker failed (see above)")
        return 1
    report = json.loads(outcome["stdout"].strip().splitlines()[-1])
    _say(
        f"[billing]   pid {report['pid']} resumed in {report['resume_ms']:.2f} ms: epoch {report['epoch']}, "
        f"{report['turns']} turns, pending tools {report['pending_tools']}, slots {report['slots']}"
    )
    _messages("billing", report["messages"])
    _say("[billing]   finishes t1, answers, and escalates to a human through its escalate tool")

    try:
        await session.arecord(vs.Note("triage: late note from the old owner"))
        _say("voicestate: error: the old owner's write was accepted")
        return 1
    except vs.FencedError as exc:
        _say(f"[triage]    a late write from the old owner is refused: FencedError: {exc}")

    t0 = time.perf_counter()
    human = await store.aresume(report["token"], agent="dana")
    human_ms = (time.perf_counter() - t0) * 1000
    _say(f"[dana]      a human supervisor takes the call in {human_ms:.2f} ms (epoch {human.state.epoch})")
    summary = human.state.handoffs[-1].summary
    if summary:
        _say("  what dana sees (the warm-transfer summary, no LLM):")
        for line in summary.splitlines():
            _say(f"    {line}")
    await human.arecord(vs.AgentSpoke("Hi, this is Dana. I've waived the late fee, and your refund is on its way."))
    await human.arecord(vs.UserSpoke("Perfect, thanks!", confidence=0.96))
    await store.aappend(call_id, vs.CallEnded("caller hung up", agent="telephony"))
    _say("[telephony] the caller hangs up: CallEnded appended from outside the owner")

    state = await store.aload(call_id)
    _say()
    _say("timeline:")
    for ev in store.events(call_id):
        _say(f"  {ev.seq:>3}  {ev.agent or '(outside)'!s:<10} {ev.TYPE:<15} {_describe(ev)}")
    _say()
    _say(
        f"final: status {state.status}, owner {state.owner}, epoch {state.epoch}, {state.seq} events, "
        f"tools {[(t.call_id, t.status) for t in state.tools.values()]}"
    )
    handoff_ms = outcome["handoff_ms"]
    _say(
        f"handoff: {handoff_ms:.2f} ms to hand off (triage), {report['resume_ms']:.2f} ms to resume "
        f"(billing, another process) = {handoff_ms + report['resume_ms']:.2f} ms for voicestate's part"
    )
    return 0


def run_demo(store_url: str | None) -> int:
    """Run the scripted call through Pipecat pipelines in two processes; 0 on success."""
    with tempfile.TemporaryDirectory(prefix="voicestate-pipecat-demo-") as tmp:
        url = store_url or f"sqlite:///{os.path.join(tmp, 'calls.db')}"
        keys = f"demo:{secrets.token_urlsafe(24)}"
        call_id = f"demo-{secrets.token_hex(3)}"
        _say(f"voicestate demo --pipecat: call {call_id} on {url}")
        _say()
        if url.startswith("memory://"):
            _say(f"voicestate: error: {url} serves one process, and the demo hands the call to a second one")
            return 1
        try:
            return asyncio.run(_triage(url, keys, call_id))
        except (vs.VoiceStateError, TimeoutError, OSError) as exc:
            _say(f"voicestate: error: the Pipecat demo failed: {type(exc).__name__}: {exc}")
            return 1


# -- billing: a second process -----------------------------------------------------------------


async def _billing(url: str, token: str) -> dict[str, Any]:
    """The receiving side: a fresh process that knows only the store URL, the keys and the token."""
    store = vs.open_store(url)
    try:
        t0 = time.perf_counter()
        session = await store.aresume(token, agent="billing")
        resume_ms = (time.perf_counter() - t0) * 1000
        st = session.state
        report: dict[str, Any] = {
            "pid": os.getpid(),
            "resume_ms": resume_ms,
            "epoch": st.epoch,
            "turns": len(st.turns),
            "pending_tools": [t.call_id for t in st.pending_tools()],
            "slots": dict(st.slots),
        }
        answer = "I can see two charges of $42.10 on March 3rd. I've refunded the duplicate."
        llm = ScriptedLLM(
            [
                answer,
                ["Of course, I'm getting a supervisor for you.", Call("escalate", {"reason": "late fee"}, "e1")],
            ]
        )

        async def escalate(params: FunctionCallParams) -> None:
            await params.result_callback(
                {"escalated_to": "dana"}, properties=FunctionCallResultProperties(run_llm=False)
            )
            # The handler runs as soon as the LLM asks; the turn that led here is still playing.
            # Hand off once the recorder (after the output transport) has seen the call start.
            await _until(lambda: "e1" in session.state.tools, "the escalate call to be recorded")
            packet = await session.ahandoff(
                "dana", kind="escalate", reason="caller asks for a supervisor about a late fee"
            )
            report["token"] = packet.to_token()

        llm.register_function("escalate", escalate)
        # The invoice lookup that triage started finishes here; then billing's LLM answers from
        # the call's context: an LLMContext with only what the caller heard of the cut turn.
        await session.arecord(vs.ToolReturned("t1", {"charges": CHARGES}), vs.SlotsSet({"refund_id": "R-981"}))
        context = session.context("pipecat")
        pipeline, processor = _pipeline(session, llm, context)

        async def drive(worker: Any) -> None:
            await worker.queue_frame(LLMRunFrame())
            await _until(lambda: len(llm.seen) == 1, "billing's first answer")
            await asyncio.sleep(_playing(answer))
            for frame in _user_says("Thanks. Can I also talk to a supervisor about the late fee?"):
                await worker.queue_frame(frame)
            await _until(lambda: "token" in report, "the escalation")
            await asyncio.sleep(_playing("Of course, I'm getting a supervisor for you."))
            await processor.flush()

        await run_pipeline(pipeline, drive, timeout=60)
        report["messages"] = llm.seen[0]
        return report
    finally:
        await store.aclose()


def _billing_worker(url: str, token: str) -> None:
    print(json.dumps(asyncio.run(_billing(url, token)), default=str), flush=True)


if __name__ == "__main__":
    _billing_worker(sys.argv[1], sys.argv[2])
