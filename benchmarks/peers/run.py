"""voicestate-redis against the libraries a user would pick instead, on the same Redis, in one run.

At N = 20, 200 and 1,000 turns: the floors (PING, raw redis-py, raw redis.asyncio),
voicestate (``record``, ``arecord``, and ``resume(token)`` after a handoff), OpenAI
Agents' ``RedisSession``, LangChain community's ``RedisChatMessageHistory`` and LangGraph
on ``langgraph-checkpoint-plainredis``; langchain-redis and langgraph-checkpoint-redis
are probed (they need Redis modules). Each library at each N runs in a guard: one that
fails gives an error row. The server: ``VOICESTATE_BENCH_REDIS_URL``, else a private one
on a free loopback port (``server()`` of benchmarks/vsbench/redis_append.py).
Prints the markdown and writes it, with a JSON document, to ``build/bench-peers/``.

    nox -s bench_peers [-- --quick]
    python benchmarks/peers/run.py [--quick] [--sizes 20,200] [--only NAME] [--json PATH] [--md PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import `peers` and `vsbench` from benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import redis
from vsbench.redis_append import server

from peers import floors, lc_history, lg_checkpoint, oa_session, ours, probes, report
from peers.common import Ctx, Row, Settings, error_row, purge

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "build" / "bench-peers"

SETTINGS = {
    "full": {"samples": 200, "warmup": 20},
    "quick": {"samples": 60, "warmup": 5},
}

Step = tuple[str, str, Callable[[Ctx, int], Row]]


def _sync(fn: Callable[[Ctx, int], Any]) -> Callable[[Ctx, int], Row]:
    """An async measurement run on a fresh event loop."""

    def run(ctx: Ctx, n: int) -> Row:
        row: Row = asyncio.run(fn(ctx, n))
        return row

    return run


STEPS: list[Step] = [
    (floors.PING, "floor", floors.ping),
    (floors.RAW, "floor", floors.raw),
    (floors.RAW_ASYNC, "floor", _sync(floors.raw_async)),
    (ours.SYNC, "ours", ours.sync),
    (ours.ASYNC, "ours", _sync(ours.async_)),
    (ours.HANDOFF, "ours", ours.handoff_resume),
    (oa_session.NAME, "peer", _sync(oa_session.measure)),
    (lc_history.NAME, "peer", lc_history.measure),
    (lg_checkpoint.NAME, "peer", _sync(lg_checkpoint.measure)),
]


def server_info(admin: redis.Redis) -> dict[str, Any]:
    info: dict[str, Any] = admin.info("server")
    modules: Any = admin.module_list()
    return {"version": info.get("redis_version"), "modules": [str(m) for m in modules or []]}


def measure(url: str, settings: Settings, only: str | None) -> tuple[list[Row], list[probes.Probe]]:
    admin = redis.Redis.from_url(url)
    prefix = f"vsp{os.getpid()}"
    ctx = Ctx(url, admin, prefix, settings)
    rows: list[Row] = []
    try:
        for n in settings.sizes:
            for name, group, fn in STEPS:
                if only and only.lower() not in name.lower():
                    continue
                t0 = time.perf_counter()
                print(f"measuring {name}, N={n} ...", file=sys.stderr, flush=True)
                try:
                    rows.append(fn(ctx, n))
                except Exception as exc:
                    traceback.print_exc(file=sys.stderr)
                    rows.append(error_row(name, n, group, exc))
                finally:
                    purge(admin, f"{prefix}*")
                print(f"  {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        found = probes.all_probes(url, prefix)
        purge(admin, f"{prefix}*")
    finally:
        admin.close()
    return rows, found


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="60 samples per figure instead of 200 (a few minutes)")
    ap.add_argument("--sizes", default="20,200,1000", help="call sizes in turns, comma-separated")
    ap.add_argument("--only", help="only the libraries whose name contains this")
    ap.add_argument("--json", type=Path, help="write the JSON document here (default: build/bench-peers/)")
    ap.add_argument("--md", type=Path, help="write the markdown here (default: build/bench-peers/)")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    sizes = tuple(int(s) for s in args.sizes.split(","))
    if any(s < 20 for s in sizes):
        ap.error("--sizes: at least 20 turns (the warm-up session seeds 10 and appends up to 20)")
    settings = Settings(sizes=sizes, natural_limit={lg_checkpoint.NAME: lg_checkpoint.NATURAL_LIMIT}, **SETTINGS[mode])
    started = time.perf_counter()
    with server() as url:
        admin = redis.Redis.from_url(url)
        info = server_info(admin)
        admin.close()
        rows, found = measure(url, settings, args.only)
    seconds = time.perf_counter() - started
    md = report.markdown(rows, found, quick=args.quick, seconds=seconds, server=info, samples=settings.samples)
    print(md)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = args.json or RESULTS / f"peers-{stamp}-{mode}.json"
    md_path = args.md or RESULTS / f"peers-{stamp}-{mode}.md"
    doc = report.document(rows, found, quick=args.quick, seconds=seconds, server=info, settings=asdict(settings))
    write(json_path, report.to_json(doc))
    write(md_path, md)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
