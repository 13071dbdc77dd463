"""The markdown table, the machine description and the JSON document of a run."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import sys
from dataclasses import asdict
from importlib import metadata
from typing import Any

from .common import Figure

HEADER = ("figure", "N", "p50", "p99", "floor p50", "ratio p50/floor", "budget", "verdict")


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "bytes":
        return f"{value:,.0f} B"
    if unit != "us":  # a count: requests, capacity units
        return f"{value:,.2f} {unit}".replace(".00 ", " ")
    if value >= 1000:
        return f"{value / 1000:.2f} ms"
    if value >= 100:
        return f"{value:.0f} µs"
    return f"{value:.2f} µs"


def row(fig: Figure) -> tuple[str, ...]:
    ratio = fig.ratio
    return (
        fig.figure,
        fig.n,
        fmt_value(fig.p50, fig.unit),
        fmt_value(fig.p99, fig.unit),
        fmt_value(fig.floor_p50, fig.unit),
        "–" if ratio is None else f"{ratio:.2f}×",
        fig.budget,
        fig.verdict,
    )


def markdown_table(figures: list[Figure]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---:|---:|---:|---:|---:|---|---|"]
    lines += ["| " + " | ".join(row(f)) + " |" for f in figures]
    return "\n".join(lines)


def notes(figures: list[Figure]) -> str:
    """What each floor is (once per figure), then each row's note."""
    floors = {f.figure: f.floor for f in figures if f.floor}
    out = [f"- floor of {name}: {floor}" for name, floor in floors.items()]
    out += [f"- {f.figure} ({f.n}): {f.note}" for f in figures if f.note]
    return "\n".join(out)


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version}
    for dist in ("voicestate", "msgpack", "attrs", "cattrs", "pluggy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def machine() -> dict[str, Any]:
    return {
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
    }


def markdown(figures: list[Figure], *, title: str, quick: bool, seconds: float) -> str:
    v = versions()
    m = machine()
    head = (
        f"# {title}\n\n"
        f"voicestate {v['voicestate']}, {m['implementation']} {v['python']}, msgpack {v['msgpack']}, "
        f"SQLite {v['sqlite']}; {m['platform']}, {m['cpu_count']} CPUs; "
        f"{'--quick' if quick else 'full'} run, {seconds:.0f} s.\n"
        "p50/p99 over per-sample wall times (perf_counter_ns, gc on); floors measured in the same run.\n"
    )
    return f"{head}\n{markdown_table(figures)}\n\n{notes(figures)}\n"


def document(figures: list[Figure], *, quick: bool, seconds: float, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "suite": "voicestate benchmarks",
        "quick": quick,
        "seconds": round(seconds, 2),
        "settings": settings,
        "versions": versions(),
        "machine": machine(),
        "figures": [asdict(f) | {"ratio": f.ratio} for f in figures],
    }


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n"
