"""Figure a: in-process ``record`` of a constructed event, at 10, 1,000 and 10,000 events in the call.

Budget (DESIGN.md): p50 <= 5 µs and p99 <= 50 µs, flat as the call grows;
constructing the event <= 5 µs more. Floor, measured in the same run:
``list.append`` of a prebuilt tuple, timed the same way (so the floor also
holds the cost of reading the clock twice).

"N events in the call" is kept honest: the samples are spread over several
calls, each seeded with exactly N events (untimed) and then receiving at most N
timed records, so every sample lands in a call of N to 2N events.
"""

from __future__ import annotations

import math
import time
from typing import Any

import voicestate as vs

from .common import KEYS, Figure, fresh, percentiles_us, timed_figure

BUDGET = "p50 ≤ 5 µs, p99 ≤ 50 µs"
CONSTRUCT_BUDGET = "p50 ≤ 5 µs"
_TEXT = "I was charged twice for my March invoice and I would like a refund please"


def _plain(i: int) -> vs.Event:
    return vs.UserSpoke(_TEXT) if i % 2 else vs.AgentSpoke(_TEXT)


def _seeded_session(store: vs.Store, call_id: str, n_events: int) -> vs.Session:
    """A call holding exactly ``n_events`` events (CallStarted + plain turns), recorded in batches."""
    s = store.open(call_id, agent="triage")
    todo = n_events - 1
    while todo > 0:
        k = min(todo, 500)
        s.record(*(_plain(i) for i in range(k)))
        todo -= k
    return s


def _warm_up(store: vs.Store, count: int) -> None:
    s = _seeded_session(store, "warm-up", 10)
    for i in range(count):
        s.record(_plain(i))
        vs.UserSpoke(_TEXT)


def record_samples(n_events: int, samples: int, warmup: int, read_state: bool = False) -> list[int]:
    """Nanoseconds of ``session.record(event)`` with the event built beforehand, at ``n_events`` in the call.

    With ``read_state``, each sample also reads ``session.state`` (what an app that
    looks at the call after every turn pays: the snapshot, and the chain values
    the in-process tier computes lazily)."""
    store = vs.open_store("memory://", signing_keys=KEYS)
    _warm_up(store, warmup)
    per_call = min(samples, n_events)
    sessions = [_seeded_session(store, f"rec-{n_events}-{k}", n_events) for k in range(math.ceil(samples / per_call))]
    plan = [(s, [_plain(i) for i in range(min(per_call, samples - k * per_call))]) for k, s in enumerate(sessions)]
    out = [0] * samples
    perf = time.perf_counter_ns
    j = 0
    fresh()
    for s, events in plan:
        rec = s.record
        for ev in events:
            t0 = perf()
            rec(ev)
            if read_state:
                s.state  # noqa: B018 - the read is what is measured
            out[j] = perf() - t0
            j += 1
    store.close()
    return out


def construct_samples(samples: int) -> list[int]:
    """Nanoseconds of constructing ``vs.UserSpoke(text)`` (a new id, the clock, attrs validation)."""
    out = [0] * samples
    perf = time.perf_counter_ns
    ctor = vs.UserSpoke
    for i in range(samples):
        t0 = perf()
        ctor(_TEXT)
        out[i] = perf() - t0
    return out


def floor_samples(samples: int) -> list[int]:
    """Nanoseconds of ``list.append`` of a prebuilt tuple shaped like a stored event."""
    item = (1, "id", b"x" * 100, b"c" * 16, 1, False)
    lst: list[Any] = []
    append = lst.append
    out = [0] * samples
    perf = time.perf_counter_ns
    for i in range(samples):
        t0 = perf()
        append(item)
        out[i] = perf() - t0
    return out


def _verdict(p50: float, p99: float, p50_max: float, p99_max: float | None = None) -> str:
    ok = p50 <= p50_max and (p99_max is None or p99 <= p99_max)
    return "within budget" if ok else "OVER BUDGET"


def run(samples: int, warmup: int, sizes: tuple[int, ...] = (10, 1_000, 10_000)) -> list[Figure]:
    """The record rows (one per call size) and the event construction row."""
    fresh()
    floor = floor_samples(samples)
    figures = []
    for n in sizes:
        fresh()
        rec = record_samples(n, samples, warmup)
        fig = timed_figure(
            "in-process record (memory://)",
            f"{n:,} events",
            rec,
            floor,
            floor="list.append of a prebuilt tuple",
            budget=BUDGET,
        )
        assert fig.p50 is not None and fig.p99 is not None
        fig.verdict = _verdict(fig.p50, fig.p99, 5.0, 50.0)
        figures.append(fig)
    base, last = figures[0].p50, figures[-1].p50
    if base and last:
        figures[-1].note = f"flatness: p50 at {sizes[-1]:,} events is {last / base:.2f}× the p50 at {sizes[0]:,}"
    fresh()
    both = record_samples(1_000, samples, warmup, read_state=True)
    fig = timed_figure(
        "in-process record + read session.state",
        "1,000 events",
        both,
        floor,
        floor="list.append of a prebuilt tuple",
        budget="none in DESIGN.md",
    )
    fig.verdict = "n/a"
    fig.note = "for information: the snapshot and the lazily computed chain value are paid on the read"
    figures.append(fig)
    fresh()
    ctor = construct_samples(samples)
    stats = percentiles_us(ctor)
    figures.append(
        Figure(
            "event construction (vs.UserSpoke(text))",
            "–",
            "us",
            stats["p50"],
            stats["p99"],
            budget=CONSTRUCT_BUDGET + " (on top of record)",
            verdict=_verdict(stats["p50"], stats["p99"], 5.0),
            raw={"us": stats},
        )
    )
    return figures
