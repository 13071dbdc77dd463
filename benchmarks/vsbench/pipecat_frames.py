"""Pipecat: the per-frame latency ``VoiceStateProcessor`` and ``VoiceStateObserver`` add to a live pipeline.

DESIGN budget: added latency per frame ≤ 20 µs p50 against a pass-through processor in the
same mode, no network I/O on the frame path. Needs the ``voicestate-pipecat`` member
(``nox -s bench`` installs it, and pipecat-ai with it); without it the rows say so.

Every arm is a real Pipecat pipeline run by its own ``PipelineWorker`` and ``WorkerRunner``,
all in one event loop, with RTVI, turn tracking, the idle monitor, heartbeats and metrics off
in every arm (the built-in observers cost about 120 µs a frame and would drown the figure):

- pass-through (the floor): ``[entry tap, a direct-mode pass-through, sink tap]``;
- processor: the pass-through replaced by ``VoiceStateProcessor(session)`` (direct mode, its
  default), the session from ``await store.aopen(...)`` on an embedded ``memory://`` store,
  and again on a ``sqlite:///`` file (the session writes in a background task, never inside
  ``process_frame``, so the figure should not move);
- no-op observer (the observer's floor): the pass-through pipeline with
  ``observers=[BaseObserver()]``;
- observer: the same with ``observers=[VoiceStateObserver(session, output=the pass-through)]``
  (the pass-through stands in for the output transport, so it records what the processor does).

The frames are a scripted assistant turn as it leaves the output transport: LLM response
start, TTS started, bot started speaking, three sentences (``AggregatedTextFrame``, spoken
and not for the context) whose words each come as two small ``TTSAudioRawFrame`` chunks, a
``TTSTextFrame`` and an ``AggregatedTextProgressFrame``, with a ``BotSpeakingFrame`` every
other word, then TTS stopped, LLM response end and bot stopped speaking. Every other turn
opens with an ``LLMContextUserTurnFrame``; every fourth turn is cut half-way through its
second sentence by an ``InterruptionFrame`` (then bot stopped speaking). Audio and
``BotSpeakingFrame`` are the frames the recorder ignores; the rest it handles, and the
response end and the user turn are where it writes an event (``record_nowait``). The session's
background flush then runs on the loop between frames (on SQLite, the append itself runs
inline on the loop's thread when the write lock is free), so the frames right after a write
are reported apart too.

A frame is timed from ``await worker.queue_frame(frame)`` to its arrival at the sink tap
(``perf_counter_ns``), one frame in flight (the next is queued once the previous arrived). An
observer runs in tasks of its own, off the frame path, so its cost shows in the loop time per
frame (one frame's ``queue_frame`` to the next's, the reciprocal of the throughput) rather than
in the latency: the observer's verdict is on that. The arms take turns, one scripted turn each,
in an order rotated every round so that drift and position hit them all alike; a few rounds of
warm-up are not counted. The table gives pooled p50/p99; the added latency in the verdict is
paired by round (the median over rounds of the arm's p50 minus its floor's in that round), which
a host whose speed drifts (a shared machine) leaves alone.

    cd benchmarks && python -m vsbench.pipecat_frames [--quick]   # these figures alone
"""

from __future__ import annotations

import asyncio
import functools
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import voicestate as vs

from .common import KEYS, Figure, fresh, percentiles_us, sentence, timed_figure, unmeasured

BUDGET_US = 20.0
BUDGET = f"added p50 ≤ {BUDGET_US:.0f} µs per frame"
NAME = "Pipecat: VoiceStateProcessor and VoiceStateObserver, added latency per frame"

AUDIO = "ignored"  # frames the recorder has no handler for (audio chunks, BotSpeakingFrame)
TEXT = "handled"  # frames it handles without writing
WRITE = "write"  # frames at which it records an event
SENTENCES = 3
WORDS = (6, 10)  # words per sentence, drawn in this range
CHUNKS = 2  # audio chunks per word
CHUNK = b"\0\0" * 320  # 20 ms of 16 kHz mono
AFTER = 2  # frames after a write reported apart: the session's background work lands on them


@dataclass
class _Probe:
    """What the taps and the driver share: the frame in flight, when it entered, when it arrived."""

    frame: Any = None
    t_in: int = 0
    t_out: int = 0
    waiter: asyncio.Future[None] | None = None


# The series each arm keeps, round by round (nanoseconds): push -> sink for all frames, for each
# category and for the AFTER frames after a write; entry tap -> sink tap; one queue_frame to the next.
SERIES = ("all", AUDIO, TEXT, WRITE, "after", "inside", "cycle")


@dataclass
class _Arm:
    key: str
    label: str
    worker: Any
    probe: _Probe
    session: vs.Session | None  # the call recorded into, if any
    task: asyncio.Task[None] | None = None
    rounds: dict[str, list[list[int]]] = field(default_factory=lambda: {k: [] for k in SERIES})
    by_class: dict[str, list[int]] = field(default_factory=dict)  # push -> sink, by frame class

    def pooled(self, series: str) -> list[int]:
        return [x for samples in self.rounds[series] for x in samples]


def run(tmp: Path, rounds: int, warmup: int) -> list[Figure]:
    try:
        from loguru import logger  # Pipecat's logger, one of its dependencies
    except ImportError as exc:
        return [unmeasured(NAME, "1 frame", f"{exc.name} is not installed (nox -s bench installs it)")]
    # Pipecat logs every start, stop and interruption at DEBUG through loguru: keep warnings only.
    logger.remove()
    handler = logger.add(sys.stderr, level="WARNING")
    try:
        try:
            import pipecat  # noqa: F401

            import voicestate_pipecat  # noqa: F401
        except ImportError as exc:
            return [unmeasured(NAME, "1 frame", f"{exc.name} is not installed (nox -s bench installs it)")]
        return asyncio.run(_measure(tmp, rounds, warmup))
    finally:
        logger.remove(handler)
        logger.add(sys.stderr)  # loguru's default again


# --- the frames -------------------------------------------------------------------------


def turn_frames(i: int) -> list[tuple[Any, str]]:
    """Turn ``i`` as it leaves the output transport, each frame with its category (fresh frames each call)."""
    from pipecat.frames.frames import (
        AggregatedTextFrame,
        AggregatedTextProgressFrame,
        BotSpeakingFrame,
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        InterruptionFrame,
        LLMContextUserTurnFrame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        TTSAudioRawFrame,
        TTSStartedFrame,
        TTSStoppedFrame,
        TTSTextFrame,
    )
    from pipecat.utils.text.base_text_aggregator import TextType

    rng = random.Random(i)
    ctx = f"tts-{i}"
    out: list[tuple[Any, str]] = []
    if i % 2 == 0:
        out.append((LLMContextUserTurnFrame(text=sentence(rng, 12), timestamp="2026-03-01T10:00:00+00:00"), WRITE))
    out += [(LLMFullResponseStartFrame(), TEXT), (TTSStartedFrame(context_id=ctx), TEXT)]
    out.append((BotStartedSpeakingFrame(), TEXT))
    cut = i % 4 == 3
    spoken = 0
    for s in range(SENTENCES):
        text = sentence(rng, rng.randint(*WORDS))
        announced = AggregatedTextFrame(text, TextType.SENTENCE, context_id=ctx)
        announced.will_be_spoken = True
        announced.append_to_context = False
        out.append((announced, TEXT))
        words = text.split()
        for k, word in enumerate(words):
            if cut and s == 1 and k == len(words) // 2:
                out += [(InterruptionFrame(), TEXT), (BotStoppedSpeakingFrame(), TEXT)]
                return out
            for _ in range(CHUNKS):
                out.append((TTSAudioRawFrame(audio=CHUNK, sample_rate=16000, num_channels=1, context_id=ctx), AUDIO))
            out.append((TTSTextFrame(word, TextType.WORD, context_id=ctx, segment_id=announced.id), TEXT))
            progress = AggregatedTextProgressFrame(
                segment_id=announced.id,
                context_id=ctx,
                text=text,
                text_type=TextType.SENTENCE,
                accumulated_text=" ".join(words[: k + 1]),
                remaining_text=" ".join(words[k + 1 :]),
            )
            out.append((progress, TEXT))
            spoken += 1
            if spoken % 2 == 0:
                out.append((BotSpeakingFrame(), AUDIO))
    out += [(TTSStoppedFrame(context_id=ctx), TEXT), (LLMFullResponseEndFrame(), WRITE)]
    out.append((BotStoppedSpeakingFrame(), TEXT))
    return out


def expected_events(turns: int) -> dict[str, int]:
    """What a recorder should hold after ``turns`` scripted turns (CallStarted aside)."""
    return {
        "AgentSpoke": turns,
        "UserSpoke": (turns + 1) // 2,
        "Interrupted": sum(1 for i in range(turns) if i % 4 == 3),
    }


# --- the pipelines ----------------------------------------------------------------------


@functools.cache
def _kit() -> tuple[type[Any], type[Any], type[Any]]:
    """The pass-through processor, the timing tap and the no-op observer (Pipecat imported here, not at import)."""
    from pipecat.observers.base_observer import BaseObserver
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

    down = FrameDirection.DOWNSTREAM
    perf = time.perf_counter_ns

    class PassThrough(FrameProcessor):
        """The floor: what every processor in direct mode does, and nothing else."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(enable_direct_mode=True, **kwargs)

        async def process_frame(self, frame: Any, direction: Any) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)

    class Tap(PassThrough):
        """A pass-through that notes when the frame in flight reaches it (the sink's wakes the driver)."""

        def __init__(self, probe: _Probe, *, sink: bool, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._probe = probe
            self._sink = sink

        async def process_frame(self, frame: Any, direction: Any) -> None:
            probe = self._probe
            if frame is probe.frame and direction is down:
                if self._sink:
                    probe.t_out = perf()
                    if probe.waiter is not None and not probe.waiter.done():
                        probe.waiter.set_result(None)
                else:
                    probe.t_in = perf()
            await super().process_frame(frame, direction)

    class NoopObserver(BaseObserver):
        """Sees every push and does nothing: what any observer costs Pipecat."""

    return PassThrough, Tap, NoopObserver


Make = Callable[[Any, Any], tuple[Any, list[Any]]]  # (session, the pass-through) -> (middle processor, observers)


async def _start(key: str, label: str, make: Make, session: vs.Session | None) -> _Arm:
    """``[entry tap, the middle processor, sink tap]`` under its own worker and runner, started."""
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.workers.runner import WorkerRunner

    PassThrough, Tap, _ = _kit()
    probe = _Probe()
    middle, observers = make(session, PassThrough(name=f"{key}-pass"))
    pipeline = Pipeline([Tap(probe, sink=False, name=f"{key}-in"), middle, Tap(probe, sink=True, name=f"{key}-out")])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(enable_heartbeats=False, enable_metrics=False, enable_usage_metrics=False),
        enable_rtvi=False,
        enable_turn_tracking=False,
        idle_timeout_secs=None,
        cancel_on_idle_timeout=False,
        check_dangling_tasks=False,
        observers=observers,
        name=f"bench-{key}",
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(worker: Any, frame: Any) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
    await runner.add_workers(worker)
    arm = _Arm(key, label, worker, probe, session)
    arm.task = asyncio.create_task(runner.run())
    await asyncio.wait_for(started.wait(), 10)
    return arm


async def _drive(arm: _Arm, frames: list[tuple[Any, str]], keep: bool) -> None:
    """Queue the frames one at a time, each once the previous one reached the sink; time each."""
    probe, queue, loop = arm.probe, arm.worker.queue_frame, asyncio.get_running_loop()
    perf = time.perf_counter_ns
    now: dict[str, list[int]] = {k: [] for k in SERIES}  # this round's samples
    prev = 0
    since_write = AFTER + 1
    for frame, category in frames:
        waiter = loop.create_future()
        probe.frame, probe.waiter = frame, waiter
        t0 = perf()
        await queue(frame)
        await waiter
        took = probe.t_out - t0
        now["all"].append(took)
        now[category].append(took)
        if since_write <= AFTER:
            now["after"].append(took)
        now["inside"].append(probe.t_out - probe.t_in)
        if prev:
            now["cycle"].append(t0 - prev)
        if keep:
            arm.by_class.setdefault(type(frame).__name__, []).append(took)
        prev = t0
        since_write = 1 if category == WRITE else since_write + 1
    if keep:
        for k in SERIES:
            arm.rounds[k].append(now[k])


async def _measure(tmp: Path, rounds: int, warmup: int) -> list[Figure]:
    from pipecat.frames.frames import EndFrame

    from voicestate_pipecat import VoiceStateObserver, VoiceStateProcessor

    _, _, NoopObserver = _kit()
    memory = vs.open_store("memory://", signing_keys=KEYS)
    sqlite = vs.open_store(f"sqlite:///{tmp / 'pipecat-frames.db'}", signing_keys=KEYS)
    try:
        arms = [
            await _start("pass", "pass-through", lambda s, p: (p, []), None),
            await _start(
                "proc-mem",
                "VoiceStateProcessor, memory://",
                lambda s, p: (VoiceStateProcessor(s), []),
                await memory.aopen("pipecat-processor", agent="voice"),
            ),
            await _start(
                "proc-sqlite",
                "VoiceStateProcessor, SQLite",
                lambda s, p: (VoiceStateProcessor(s), []),
                await sqlite.aopen("pipecat-processor", agent="voice"),
            ),
            await _start("noop-obs", "pass-through + no-op observer", lambda s, p: (p, [NoopObserver()]), None),
            await _start(
                "obs-mem",
                "pass-through + VoiceStateObserver, memory://",
                # the pass-through stands in for the output transport: the frames it pushes are recorded
                lambda s, p: (p, [VoiceStateObserver(s, output=p)]),
                await memory.aopen("pipecat-observer", agent="voice"),
            ),
        ]
        total = warmup + rounds
        async with asyncio.timeout(120 + 0.5 * total):
            for r in range(total):
                if r == warmup:
                    fresh()
                shift = r % len(arms)
                for arm in arms[shift:] + arms[:shift]:
                    await _drive(arm, turn_frames(r), keep=r >= warmup)
                    if arm.session is not None:
                        # untimed: the store holds this turn before the next arm runs (the session's
                        # flush, not the recorder's, which would also settle a cut turn early)
                        await arm.session.aflush()
            for arm in arms:
                await arm.worker.queue_frame(EndFrame())
            await asyncio.gather(*(arm.task for arm in arms if arm.task is not None))
            for arm in arms:
                if arm.session is not None:
                    await arm.session.aflush()
        recorded = {arm.key: _kinds(arm) for arm in arms if arm.session is not None}
        return _figures(arms, total, rounds, recorded)
    finally:
        memory.close()
        sqlite.close()


def _kinds(a: _Arm) -> dict[str, int]:
    assert a.session is not None
    counts: dict[str, int] = {}
    for ev in a.session.store.events(a.session.call_id):
        counts[ev.TYPE] = counts.get(ev.TYPE, 0) + 1
    return counts


# --- the figures -----------------------------------------------------------------------


def _p50(samples: list[int]) -> float:
    return percentiles_us(samples)["p50"]


def _added(arm: list[list[int]], floor: list[list[int]]) -> float | None:
    """The added p50, paired by round: the median over rounds of (the arm's p50 - the floor's p50)
    in that round, in µs. Both ran the same turn within milliseconds of each other, so a machine
    whose speed drifts (a shared host) moves both; a difference of pooled p50s would not be robust
    to that (the pooled samples are then bimodal, and their median jumps between the modes)."""
    diffs = sorted(_p50(a) - _p50(f) for a, f in zip(arm, floor, strict=True) if a and f)
    return diffs[len(diffs) // 2] if diffs else None


def _mean_added(cycle: list[int], floor: list[int]) -> float:
    """Mean loop time per frame over the floor's, in µs: the amortized cost, writes included."""
    return (sum(cycle) / len(cycle) - sum(floor) / len(floor)) / 1000 if cycle and floor else 0.0


def _rate(cycle: list[int]) -> float:
    return len(cycle) / sum(cycle) * 1e9 if cycle else 0.0


def _figures(arms: list[_Arm], turns: int, rounds: int, recorded: dict[str, dict[str, int]]) -> list[Figure]:
    by = {a.key: a for a in arms}
    base, noop = by["pass"], by["noop-obs"]
    version = metadata.version("pipecat-ai")
    want = expected_events(turns)
    rates = {a.key: round(_rate(a.pooled("cycle"))) for a in arms}
    common_raw = {
        "pipecat_ai": version,
        "rounds": rounds,
        "frames_per_arm": len(base.pooled("all")),
        "mix": {cat: len(base.pooled(cat)) for cat in (AUDIO, TEXT, WRITE)},
        "throughput_frames_per_s": rates,
        "expected_events": want,
        "recorded_events": recorded,
        "arms": {
            a.key: {
                "label": a.label,
                **{f"{series}_us": percentiles_us(a.pooled(series)) for series in SERIES},
                "p50_by_frame_us": {k: round(_p50(s), 2) for k, s in sorted(a.by_class.items())},
            }
            for a in arms
        },
    }

    def fig(name: str, arm: _Arm, floor: _Arm, series: str, floor_name: str, note: str = "", **kw: Any) -> Figure:
        samples = arm.pooled(series)
        made = timed_figure(
            name, f"{len(samples):,} frames", samples, floor.pooled(series), floor=floor_name, note=note
        )
        made.raw.update(kw.get("raw", {}))
        added = _added(arm.rounds[series], floor.rounds[series])
        if added is None:
            return made
        made.raw["added_p50_us"] = added  # paired by round
        made.raw["added_p50_pooled_us"] = (made.p50 or 0) - (made.floor_p50 or 0)
        if kw.get("judged", True):
            made.budget = BUDGET
            made.verdict = f"{'within budget' if added <= BUDGET_US else 'OVER BUDGET'} (added {added:+.2f} µs)"
        else:
            made.budget = "n/a: a breakdown (the budget is on all frames)"
            made.verdict = f"added {added:+.2f} µs"
        return made

    def checked(key: str) -> str:
        got = {k: recorded.get(key, {}).get(k, 0) for k in want}
        ok = "as scripted" if got == want else f"NOT as scripted (want {want})"
        return f"recorded {', '.join(f'{v} {k}' for k, v in got.items())}: {ok}"

    def p99(arm: _Arm, series: str) -> str:
        return f"{percentiles_us(arm.pooled(series))['p99']:.0f} µs"

    floor = "pass-through processor, direct mode"
    figures: list[Figure] = []
    for key, store in (("proc-mem", "memory://"), ("proc-sqlite", "SQLite")):
        a = by[key]
        head = f"Pipecat: VoiceStateProcessor ({store})"
        note = (
            f"pipecat-ai {version}; push → sink, one frame in flight; added = median over rounds of the "
            "round's p50 minus the pass-through's (the pooled p50s can sit in different modes when a shared "
            f"host's speed flips mid-run); pass-through p99 {p99(base, 'all')}; entry tap → sink tap "
            f"p50 {_p50(a.pooled('inside')):.2f} µs (pass-through {_p50(base.pooled('inside')):.2f}); loop time "
            f"per frame p50 {_p50(a.pooled('cycle')):.1f} µs (pass-through {_p50(base.pooled('cycle')):.1f}), "
            f"mean {_mean_added(a.pooled('cycle'), base.pooled('cycle')):+.2f} µs: {rates[key]:,} frames/s "
            f"(pass-through {rates['pass']:,}); {checked(key)}"
        )
        raw = common_raw if key == "proc-mem" else {}
        figures.append(fig(f"{head}, all frames", a, base, "all", floor, note, raw=raw))
        if key == "proc-mem":
            parts = (
                (AUDIO, "audio, ignored"),
                (TEXT, "text and control, handled"),
                (WRITE, "writes (records an event)"),
            )
            for cat, what in parts:
                figures.append(fig(f"{head}, {what}", a, base, cat, floor, judged=False))
        note = "the session's background flush runs on the loop before them (on SQLite: the append itself)"
        figures.append(fig(f"{head}, the {AFTER} frames after a write", a, base, "after", floor, note, judged=False))
    o = by["obs-mem"]
    head = "Pipecat: VoiceStateObserver (memory://)"
    note = (
        "its work runs in the observer's own task, off the frame path but on the same loop: this is its "
        f"cost per frame; no-op observer p99 {p99(noop, 'cycle')}; mean "
        f"{_mean_added(o.pooled('cycle'), noop.pooled('cycle')):+.2f} µs: {rates['obs-mem']:,} frames/s "
        f"(no-op observer {rates['noop-obs']:,}); {checked('obs-mem')}"
    )
    figures.append(fig(f"{head}, loop time per frame", o, noop, "cycle", "no-op observer", note))
    note = "what an observer adds to a frame's trip is Pipecat queueing each hop's push for it"
    figures.append(fig(f"{head}, push → sink", o, noop, "all", "no-op observer", note))
    note = "what Pipecat's observer machinery costs any observer (a queued push per hop), for information"
    info = fig("Pipecat: a no-op observer, push → sink", noop, base, "all", "no observer", note)
    info.budget, info.verdict = "none in DESIGN.md", f"n/a (added {info.raw.get('added_p50_us', 0):+.2f} µs)"
    figures.append(info)
    return figures


# --- run alone ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    from . import report

    ap = argparse.ArgumentParser(description="Pipecat: the added per-frame latency of voicestate's recorders")
    ap.add_argument("--quick", action="store_true", help="a few seconds")
    ap.add_argument("--json", type=Path, help="also write the JSON document here")
    args = ap.parse_args(argv)
    rounds, warmup = (20, 3) if args.quick else (200, 10)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vsbench-") as tmp:
        figures = run(Path(tmp), rounds, warmup)
    seconds = time.perf_counter() - started
    print(report.markdown(figures, title="voicestate benchmarks: Pipecat", quick=args.quick, seconds=seconds))
    if args.json:
        settings = {"pipecat_rounds": rounds, "pipecat_warmup": warmup}
        doc = report.document(figures, quick=args.quick, seconds=seconds, settings=settings)
        args.json.write_text(report.to_json(doc), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
