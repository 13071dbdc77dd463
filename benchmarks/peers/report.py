"""The peers' table (markdown), voicestate's ratio to the best peer, and the JSON document."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

from vsbench.report import fmt_value, machine

from . import floors, lc_history, lg_checkpoint, oa_session
from .common import Row
from .probes import Probe

DISTS = (
    "voicestate",
    "voicestate-redis",
    "redis",
    "hiredis",
    "openai-agents",
    "openai",
    "langchain-core",
    "langchain-community",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-plainredis",
    "langchain-redis",
    "langgraph-checkpoint-redis",
)
SHORT = {
    oa_session.NAME: "OpenAI Agents",
    lc_history.NAME: "LangChain",
    lg_checkpoint.NAME: "LangGraph",
}
FIGURES = (  # (key, header)
    ("append_p50", "append p50"),
    ("append_p99", "append p99"),
    ("resume_p50", "resume warm p50"),
    ("resume_p99", "resume warm p99"),
    ("cmds", "redis cmds/append"),
    ("bytes", "bytes/session"),
)


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for dist in DISTS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def value(row: Row, key: str) -> float | None:
    if row.error:
        return None
    if key == "cmds":
        return row.cmds_per_append
    if key == "bytes":
        return None if row.bytes_per_session is None else float(row.bytes_per_session)
    figure, q = key.split("_")
    return row.p(figure, q)


def fmt(key: str, v: float | None) -> str:
    if v is None:
        return "–"
    if key == "cmds":
        return f"{v:.1f}"
    if key == "bytes":
        kib = v / 1024
        return f"{kib:,.1f} KiB" if kib < 10 else f"{kib:,.0f} KiB"
    return fmt_value(v, "us")


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "–"
    if r < 0.1:
        return f"{r:.3f}×"
    if r < 10:
        return f"{r:.2f}×"
    return f"{r:.1f}×" if r < 100 else f"{r:.0f}×"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def floor_of(rows: list[Row], n: int) -> Row | None:
    return next((r for r in rows if r.peer == floors.RAW and r.n == n and not r.error), None)


HEADER = (
    "library",
    "N turns",
    "append p50",
    "append p99",
    "× floor (p50)",
    "resume warm p50",
    "resume warm p99",
    "× floor (p50)",
    "redis cmds/append",
    "bytes/session",
    "× floor",
)


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row.error:
            lines.append(f"| {row.peer} | {row.n} | ERROR: {row.error.replace('|', '/')} |||||||||")
            continue
        floor = floor_of(rows, row.n)
        cells = [row.peer, str(row.n)]
        for key in ("append_p50", "append_p99", "x_append", "resume_p50", "resume_p99", "x_resume", "cmds", "bytes"):
            if key.startswith("x_"):
                base = f"{key[2:]}_p50"
                cells.append(fmt_ratio(ratio(value(row, base), value(floor, base) if floor else None)))
            else:
                cells.append(fmt(key, value(row, key)))
        cells.append(fmt_ratio(ratio(value(row, "bytes"), value(floor, "bytes") if floor else None)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class Best:
    """voicestate's figure against the lowest of the peers' for the same figure and N."""

    ours: str
    n: int
    figure: str
    value: float | None
    best_peer: str | None
    best_value: float | None
    ratio: float | None


def best(rows: list[Row]) -> list[Best]:
    out: list[Best] = []
    for row in rows:
        if row.group != "ours" or row.error:
            continue
        peers = [r for r in rows if r.group == "peer" and r.n == row.n and not r.error]
        for key, _ in FIGURES:
            mine = value(row, key)
            candidates = [(v, r.peer) for r in peers if (v := value(r, key)) is not None]
            if mine is None or not candidates:
                out.append(Best(row.peer, row.n, key, mine, None, None, None))
                continue
            v, peer = min(candidates)
            out.append(Best(row.peer, row.n, key, mine, peer, v, ratio(mine, v)))
    return out


def best_table(bests: list[Best]) -> str:
    head = ["voicestate", "N turns", *(h for _, h in FIGURES)]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(FIGURES)]
    keys = list(dict.fromkeys((b.ours, b.n) for b in bests))  # in the rows' order
    for ours, n in keys:
        cells = [ours, str(n)]
        for key, _ in FIGURES:
            b = next(x for x in bests if x.ours == ours and x.n == n and x.figure == key)
            if b.ratio is None or b.best_peer is None:
                cells.append("–")
            else:
                peer = SHORT.get(b.best_peer, b.best_peer)
                cells.append(f"**{fmt_ratio(b.ratio)}** ({peer} {fmt(key, b.best_value)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(rows: list[Row], probes: list[Probe]) -> str:
    out = [
        "Peers that need Redis modules, probed against the same server (not measured):",
        "",
        *(f"* **{p.peer}**: {p.outcome}" for p in probes),
        "",
        "Notes:",
        "",
        '* "× floor" = p50 (or bytes) ÷ the raw redis-py RPUSH/LRANGE row at the same N; '
        "compare the asyncio libraries with the raw redis.asyncio row too. The PING row's resume "
        "columns are a second PING.",
        "* Ratio to the best peer = our figure ÷ the lowest of the peers' (OpenAI Agents, LangChain, "
        "LangGraph) for that figure and N, the peer in brackets: below 1× we are ahead.",
        "* redis cmds/append counts every command INFO commandstats counts, those a Lua script "
        "runs included; per command (per append):",
    ]
    for row in rows:
        if row.commands_per_append and row.group != "floor" and row.n == max(r.n for r in rows):
            per = ", ".join(f"{k} {v:.2f}" for k, v in row.commands_per_append.items())
            out.append(f"  * {row.peer}: {per}")
    sizes: dict[tuple[str, str], list[str]] = {}  # (library, note) -> the Ns it applies to
    for r in rows:
        if r.note and not r.error:
            sizes.setdefault((r.peer, r.note), []).append(str(r.n))
    out += [f"* {peer} (N = {', '.join(ns)}): {note}" for (peer, note), ns in sizes.items()]
    return "\n".join(out)


def markdown(
    rows: list[Row],
    probes: list[Probe],
    *,
    quick: bool,
    seconds: float,
    server: dict[str, Any],
    samples: int,
) -> str:
    v = versions()
    m = machine()
    pins = ", ".join(f"{k} {val}" for k, val in v.items() if k != "python")
    head = (
        "# voicestate vs its peers on Redis\n\n"
        f"Redis {server.get('version')} (modules: {server.get('modules') or 'none'}), "
        f"{m['implementation']} {v['python']}; {m['platform']}, {m['cpu_count']} CPUs; "
        f"{'--quick' if quick else 'full'} run, {samples} samples per figure, {seconds:.0f} s.\n"
        f"{pins}.\n"
        "p50/p99 over per-sample wall times (perf_counter_ns, gc on); every row measured in this run, "
        "on this server. Method: benchmarks/peers/common.py (shared/notes/peer-baseline.md's).\n"
    )
    return (
        f"{head}\n{table(rows)}\n\n## voicestate: ratio to the best peer, per figure\n\n"
        f"{best_table(best(rows))}\n\n{notes(rows, probes)}\n"
    )


def document(
    rows: list[Row],
    probes: list[Probe],
    *,
    quick: bool,
    seconds: float,
    server: dict[str, Any],
    settings: dict[str, Any],
) -> dict[str, Any]:
    return {
        "suite": "voicestate peers on Redis",
        "quick": quick,
        "seconds": round(seconds, 2),
        "settings": settings,
        "versions": versions(),
        "machine": machine(),
        "server": server,
        "rows": [asdict(r) for r in rows],
        "best_peer": [asdict(b) for b in best(rows)],
        "probes": [asdict(p) for p in probes],
    }


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, default=str) + "\n"
