"""CrewAI memory: save and search with ``VoiceStateStorage`` beside CrewAI's default backend.

Needs voicestate-crewai and crewai, which cannot share an environment with the rest of
``nox -s bench`` (crewai pins openai < 3, openai-agents needs openai >= 3): ``nox -s bench_crewai``
runs these figures alone, in an environment of their own.

The floor is CrewAI's own default backend, ``LanceDBStorage`` (a LanceDB table in a temporary
directory, with its defaults: compaction every 100 saves), in the same run. The arms hold the
same N records (100 and 10,000; 384-dimension unit vectors, 10 scopes, 5 categories), saved
untimed in batches of 500:

- ``VoiceStateStorage`` as a plain memory on ``memory://`` and on ``sqlite:///``;
- ``VoiceStateStorage`` on a voice call (the owner's session), on ``sqlite:///``.

Timed, arms interleaved in a rotated order: ``save([one record])`` (what ``Memory.remember``
does), then ``search(query, limit=10)``, then the same with a scope prefix and a category
(CrewAI's backend then takes 30 nearest records and filters them). Each storage reads the
records the others' saves did not touch: a save is one append; a search folds the log's tail
(one metadata read) and ranks in memory.

    cd benchmarks && python -m vsbench.crewai_memory [--quick]
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import voicestate as vs

from .common import KEYS, Figure, fresh, timed_figure, unmeasured

SIZES = (100, 10_000)
DIM = 384
SCOPES = [f"/crew/topic{i}" for i in range(10)]
CATEGORIES = ["billing", "refund", "support", "policy", "account"]


def _missing() -> str | None:
    try:
        import crewai  # noqa: F401

        import voicestate_crewai  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (nox -s bench_crewai installs it)"
    return None


def _vector(rng: random.Random) -> list[float]:
    v = [rng.gauss(0.0, 1.0) for _ in range(DIM)]
    norm = sum(x * x for x in v) ** 0.5
    return [x / norm for x in v]


def _records(rng: random.Random, n: int, start: int = 0) -> list[Any]:
    from crewai.memory.types import MemoryRecord

    t0 = datetime(2026, 12, 7, 9, 0, 0)
    return [
        MemoryRecord(
            id=f"r{start + i}",
            content=f"memory {start + i}: the caller's account and the refund it asked for",
            scope=rng.choice(SCOPES),
            categories=rng.sample(CATEGORIES, 2),
            metadata={"n": start + i},
            created_at=t0 + timedelta(seconds=start + i),
            last_accessed=t0 + timedelta(seconds=start + i),
            embedding=_vector(rng),
        )
        for i in range(n)
    ]


def _arms(tmp: Path, n: int) -> list[tuple[str, Any]]:
    from crewai.memory.storage.lancedb_storage import LanceDBStorage

    from voicestate_crewai import VoiceStateStorage

    sqlite = vs.open_store(f"sqlite:///{tmp / f'plain-{n}.db'}", signing_keys=KEYS)
    calls = vs.open_store(f"sqlite:///{tmp / f'call-{n}.db'}", signing_keys=KEYS)
    session = calls.open(f"call-{n}", agent="crew")
    return [
        ("LanceDBStorage (CrewAI's default)", LanceDBStorage(path=tmp / f"lance-{n}")),
        ("VoiceStateStorage, memory://", VoiceStateStorage(vs.open_store("memory://", signing_keys=KEYS))),
        ("VoiceStateStorage, sqlite:///", VoiceStateStorage(sqlite)),
        ("VoiceStateStorage, a call's memory, sqlite:///", VoiceStateStorage(calls, session=session)),
    ]


def _interleaved(arms: list[tuple[str, Any]], rounds: int, op: Callable[[Any, int], Any]) -> dict[str, list[int]]:
    samples: dict[str, list[int]] = {name: [] for name, _ in arms}
    for r in range(rounds):
        for name, storage in arms[r % len(arms) :] + arms[: r % len(arms)]:
            t0 = time.perf_counter_ns()
            op(storage, r)
            samples[name].append(time.perf_counter_ns() - t0)
    return samples


def run(tmp: Path, samples: int = 200) -> list[Figure]:
    why = _missing()
    if why is not None:
        return [unmeasured("CrewAI memory save and search", "100, 10,000 records", why)]
    figures: list[Figure] = []
    for n in SIZES:
        fresh()
        rng = random.Random(n)
        arms = _arms(tmp, n)
        seed = _records(rng, n)
        for _, storage in arms:
            for i in range(0, n, 500):
                storage.save(seed[i : i + 500])
        extra = _records(rng, samples, start=n)
        queries = [_vector(rng) for _ in range(samples)]
        for _, storage in arms:  # warm: the first read folds the whole log (a figure of its own, below)
            storage.search(queries[0], limit=1)
        ops: list[tuple[str, Callable[[Any, int], Any]]] = [
            ("save one record", lambda s, r, extra=extra: s.save([extra[r]])),
            ("search, limit 10", lambda s, r, q=queries: s.search(q[r], limit=10)),
            (
                "search, scope and category",
                lambda s, r, q=queries: s.search(q[r], scope_prefix=SCOPES[r % 10], categories=["refund"], limit=10),
            ),
        ]
        for label, op in ops:
            got = _interleaved(arms, samples, op)
            floor = got[arms[0][0]]
            figures += [
                _figure(f"CrewAI memory {label}, {name}", n, got[name], floor, f"{samples} samples") for name, _ in arms
            ]
        figures += _cold(tmp, n, queries[0])
    return figures


def _cold(tmp: Path, n: int, query: list[float]) -> list[Figure]:
    """A fresh storage's first search: LanceDB opens its table; voicestate folds the whole log."""
    from crewai.memory.storage.lancedb_storage import LanceDBStorage

    from voicestate_crewai import VoiceStateStorage

    def lance() -> Any:
        return LanceDBStorage(path=tmp / f"lance-{n}")

    def plain() -> Any:
        return VoiceStateStorage(vs.open_store(f"sqlite:///{tmp / f'plain-{n}.db'}", signing_keys=KEYS))

    out = []
    timings: dict[str, list[int]] = {}
    for name, make in (("LanceDBStorage (CrewAI's default)", lance), ("VoiceStateStorage, sqlite:///", plain)):
        runs = []
        for _ in range(5):
            storage = make()
            t0 = time.perf_counter_ns()
            storage.search(query, limit=10)
            runs.append(time.perf_counter_ns() - t0)
        timings[name] = runs
    floor = timings["LanceDBStorage (CrewAI's default)"]
    note = "5 fresh storages; voicestate folds the whole log once, then reads only its tail"
    for name, runs in timings.items():
        out.append(_figure(f"CrewAI memory first search of a fresh storage, {name}", n, runs, floor, note))
    return out


def _figure(name: str, n: int, samples: list[int], floor: list[int], note: str) -> Figure:
    return timed_figure(
        name,
        f"{n:,} records",
        samples,
        floor,
        floor="LanceDBStorage, same records, same run",
        budget="none in DESIGN.md (against CrewAI's default backend)",
        note=note,
    )


def main() -> int:
    import argparse

    from .report import markdown

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    with tempfile.TemporaryDirectory(prefix="vsbench-crewai-") as tmp:
        os.environ["CREWAI_STORAGE_DIR"] = tmp
        started = time.perf_counter()
        figures = run(Path(tmp), samples=30 if args.quick else 200)
    print(markdown(figures, title="CrewAI memory", quick=args.quick, seconds=time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
