"""Shared pieces: the synthetic call, percentiles, and the Figure record every benchmark returns.

The call follows the peer baseline's method (shared/notes/peer-baseline.md): a
turn is a user utterance of 20 words and an agent reply of 40 words; every 5th
turn also carries a tool call and its result, so a turn averages 2.4 messages.
"""

from __future__ import annotations

import gc
import random
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import voicestate as vs

warnings.simplefilter("ignore", vs.EphemeralKeyWarning)

KEYS = "bench:a-benchmark-secret-of-32-bytes!"
"""Signing keys shared by every process of a run (``kid:secret``)."""

_VOCABULARY = (
    "account invoice charge refund billing card payment march april twice amount balance "
    "please could you would like check see that this the my your for with and about "
    "order number service plan monthly fee credit statement last week today help thanks "
    "sure right let me pull up look into confirm verify details address email phone "
    "customer support issue problem resolve transfer specialist minute moment"
)
_WORDS = _VOCABULARY.split()


def sentence(rng: random.Random, n_words: int) -> str:
    """``n_words`` words drawn from a small everyday vocabulary, ending with a full stop."""
    return " ".join(rng.choice(_WORDS) for _ in range(n_words)).capitalize() + "."


def turn_events(i: int, rng: random.Random) -> list[vs.Event]:
    """Events of turn ``i``: user (20 words), [tool call + result every 5th turn], agent (40 words)."""
    events: list[vs.Event] = [vs.UserSpoke(sentence(rng, 20))]
    if i % 5 == 4:
        cid = f"tool-{i}"
        events.append(vs.ToolCalled(cid, "lookup_invoices", {"account": "A-77", "month": "2026-03", "limit": 5}))
        result = {"invoices": [{"id": f"INV-{i}-{k}", "amount": 42.5 + k, "status": "paid"} for k in range(2)]}
        events.append(vs.ToolReturned(cid, result))
    events.append(vs.AgentSpoke(sentence(rng, 40)))
    return events


def call_events(turns: int, seed: int = 7) -> Iterator[vs.Event]:
    """The events of a ``turns``-turn call, freshly constructed (new ids) each time."""
    rng = random.Random(seed)
    for i in range(turns):
        yield from turn_events(i, rng)


def build_call(store: vs.Store, call_id: str, turns: int, *, agent: str = "triage", batch: int = 64) -> vs.Session:
    """Open ``call_id`` and record ``turns`` turns into it, in batches (setup: never timed)."""
    session = store.open(call_id, agent=agent)
    buf: list[vs.Event] = []
    for ev in call_events(turns):
        buf.append(ev)
        if len(buf) >= batch:
            session.record(*buf)
            buf.clear()
    if buf:
        session.record(*buf)
    return session


def fresh() -> None:
    """Run before each figure: collect now so earlier figures' garbage is not billed to this one."""
    gc.collect()


# --- statistics ---------------------------------------------------------------------

QUANTILES = (("min", 0.0), ("p10", 0.10), ("p25", 0.25), ("p50", 0.50), ("p75", 0.75), ("p90", 0.90),
             ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0))  # fmt: skip


def percentiles_us(samples_ns: Sequence[int]) -> dict[str, float]:
    """Nearest-rank percentiles of nanosecond samples, in microseconds, plus the mean and count."""
    s = sorted(samples_ns)
    n = len(s)
    out = {name: s[min(n - 1, round(q * (n - 1)))] / 1000.0 for name, q in QUANTILES}
    out["mean"] = sum(s) / n / 1000.0
    out["n"] = n
    return out


@dataclass
class Figure:
    """One row of the report: a measured figure, its floor, its budget and the verdict."""

    figure: str
    n: str  # the size the figure is measured at (events or turns in the call), as printed
    unit: str  # "us" (times, in microseconds) or "bytes"
    p50: float | None
    p99: float | None
    floor_p50: float | None = None
    floor: str | None = None  # what the floor is
    budget: str = "none in DESIGN.md"
    verdict: str = "n/a"
    note: str = ""
    raw: dict[str, Any] = field(default_factory=dict)  # every percentile, floor's too

    @property
    def ratio(self) -> float | None:
        if self.p50 is None or not self.floor_p50:
            return None
        return self.p50 / self.floor_p50


def timed_figure(
    name: str,
    n: str,
    samples_ns: Sequence[int],
    floor_ns: Sequence[int] | None = None,
    *,
    floor: str | None = None,
    **kw: Any,
) -> Figure:
    """A Figure from raw nanosecond samples (and the floor's, if any)."""
    stats = percentiles_us(samples_ns)
    raw: dict[str, Any] = {"us": stats}
    floor_p50 = None
    if floor_ns is not None:
        fstats = percentiles_us(floor_ns)
        raw["floor_us"] = fstats
        floor_p50 = fstats["p50"]
    raw.update(kw.pop("raw", {}))
    return Figure(name, n, "us", stats["p50"], stats["p99"], floor_p50, floor, raw=raw, **kw)


def unmeasured(name: str, n: str, why: str) -> Figure:
    """A row for a figure that could not be measured in this run, saying why."""
    return Figure(name, n, "us", None, None, verdict=f"not measured: {why}")
