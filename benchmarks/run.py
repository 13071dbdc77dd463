"""voicestate's benchmark suite: the DESIGN.md "Budgets" figures the core can measure.

Each figure is measured against its floor in the same run (a bare list.append,
a bare SQLite insert of the same bytes, a bare msgpack round trip, a bare
SELECT + json.loads of the same call) and checked against its budget where
DESIGN.md sets one for the core. Prints a markdown table and writes it, with a
JSON document of every percentile, versions and machine, to
``benchmarks/results/`` (git-ignored) unless told otherwise.

    python benchmarks/run.py [--quick] [--json PATH] [--md PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vsbench import (
    core4,
    dynamodb,
    handoff,
    langgraph_saver,
    mcp_tools,
    packet,
    pipecat_frames,
    record,
    redis_append,
    redis_more,
    report,
    sqlite_append,
    storage,
)
from vsbench.common import Figure, unmeasured

RESULTS = Path(__file__).resolve().parent / "results"

SETTINGS = {
    "full": {
        "record_samples": 10_000,
        "record_warmup": 2_000,
        "sqlite_turns": 2_000,
        "sqlite_warmup": 50,
        "packet_samples": 2_000,
        "packet_json_samples": 300,
        "packet_warmup": 200,
        "handoff_calls": {200: 400, 1000: 150},
        "handoff_warmup": 5,
        "watch_samples": 1_000,
        "watch_proc_samples": 200,
        "lease_samples": 2_000,
        "listing_repeats": 20,
        "async_samples": 1_000,
        "redis_handoff_calls": {200: 100, 1000: 30},
        "redis_rate_calls": 1_000,
        "redis_rate_rounds": 20,
        "redis_watch_samples": 300,
        "dynamodb_samples": 200,
        "pipecat_rounds": 200,
        "pipecat_warmup": 10,
        "langgraph_steps": 30,
        "mcp_samples": 200,
        "mcp_handoffs": 100,
    },
    "quick": {
        "record_samples": 1_000,
        "record_warmup": 300,
        "sqlite_turns": 200,
        "sqlite_warmup": 20,
        "packet_samples": 300,
        "packet_json_samples": 50,
        "packet_warmup": 30,
        "handoff_calls": {200: 30, 1000: 15},
        "handoff_warmup": 2,
        "watch_samples": 200,
        "watch_proc_samples": 30,
        "lease_samples": 200,
        "listing_repeats": 3,
        "async_samples": 200,
        "redis_handoff_calls": {200: 20, 1000: 8},
        "redis_rate_calls": 1_000,
        "redis_rate_rounds": 3,
        "redis_watch_samples": 50,
        "dynamodb_samples": 40,
        "pipecat_rounds": 20,
        "pipecat_warmup": 3,
        "langgraph_steps": 8,
        "mcp_samples": 30,
        "mcp_handoffs": 15,
    },
}


def guarded(name: str, n: str, fn: Callable[[], list[Figure]]) -> list[Figure]:
    """Run one group of figures; if it fails, a row saying why instead of numbers."""
    try:
        return fn()
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return [unmeasured(name, n, f"{type(exc).__name__}: {exc}")]


def measure_all(cfg: dict[str, Any], tmp: Path) -> list[Figure]:
    steps: list[tuple[str, str, Callable[[], list[Figure]]]] = [
        ("in-process record", "10–10,000", lambda: record.run(cfg["record_samples"], cfg["record_warmup"])),
        ("SQLite append", "1,000", lambda: sqlite_append.run(tmp, cfg["sqlite_turns"], cfg["sqlite_warmup"])),
        (
            "packet",
            "200 turns",
            lambda: packet.run(cfg["packet_samples"], cfg["packet_json_samples"], cfg["packet_warmup"]),
        ),
        ("handoff + resume", "200, 1,000", lambda: handoff.run(tmp, cfg["handoff_calls"], cfg["handoff_warmup"])),
        ("bytes stored per call", "1,000 turns", lambda: storage.run(tmp)),
        ("watch, in-process", "1 event", lambda: core4.watch_in_process(cfg["watch_samples"])),
        ("watch, 2 processes", "1 event", lambda: core4.watch_two_processes(tmp, cfg["watch_proc_samples"])),
        ("lease renewal", "1 call", lambda: core4.lease_renewal(tmp, cfg["lease_samples"])),
        ("listing", "10,000 calls", lambda: core4.listing(tmp, cfg["listing_repeats"])),
        ("async append", "1 turn", lambda: core4.async_append(tmp, cfg["async_samples"])),
        ("snapshot load", "200, 1,000 turns", lambda: core4.snapshot_load(tmp, cfg["listing_repeats"] * 10)),
        ("Redis append", "10, 1,000 events", lambda: redis_append.run(cfg["lease_samples"])),
        (
            "handoff + resume, 2 processes, Redis",
            "200, 1,000 turns",
            lambda: redis_more.handoff(cfg["redis_handoff_calls"], cfg["handoff_warmup"]),
        ),
        (
            "appends/s, 1,000 concurrent calls, Redis",
            "1,000 calls",
            lambda: redis_more.throughput(cfg["redis_rate_calls"], cfg["redis_rate_rounds"]),
        ),
        ("watch, 2 processes, Redis", "1 event", lambda: redis_more.watch(cfg["redis_watch_samples"])),
        ("bytes stored per call, Redis", "1,000 turns", redis_more.bytes_per_call),
        ("DynamoDB on moto", "200 turns", lambda: dynamodb.run(cfg["dynamodb_samples"])),
        (
            "Pipecat processor and observer",
            "1 frame",
            lambda: pipecat_frames.run(tmp, cfg["pipecat_rounds"], cfg["pipecat_warmup"]),
        ),
        (
            "LangGraph step and bytes per call",
            "20, 200, 1,000 turns",
            lambda: langgraph_saver.run(tmp, cfg["langgraph_steps"]),
        ),
        (
            "MCP tool calls",
            "200 turns",
            lambda: mcp_tools.run(tmp, cfg["mcp_samples"], cfg["mcp_handoffs"]),
        ),
    ]
    figures: list[Figure] = []
    for name, n, fn in steps:
        t0 = time.perf_counter()
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        figures += guarded(name, n, fn)
        print(f"  {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return figures


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples: the whole run in well under a minute")
    ap.add_argument("--json", type=Path, help="write the JSON document here (default: benchmarks/results/)")
    ap.add_argument("--md", type=Path, help="write the markdown table here (default: benchmarks/results/)")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    cfg = SETTINGS[mode]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vsbench-") as tmp:
        figures = measure_all(cfg, Path(tmp))
    seconds = time.perf_counter() - started
    md = report.markdown(figures, title="voicestate benchmarks", quick=args.quick, seconds=seconds)
    print(md)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = args.json or RESULTS / f"bench-{stamp}-{mode}.json"
    md_path = args.md or RESULTS / f"bench-{stamp}-{mode}.md"
    doc = report.document(figures, quick=args.quick, seconds=seconds, settings=cfg)
    write(json_path, report.to_json(doc))
    write(md_path, md)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
