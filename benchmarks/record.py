"""In-process ``record`` latency at several call lengths, against DESIGN.md's budget.

Budget: p50 <= 5 us, p99 <= 50 us for recording a constructed event into a
1,000-event call, flat as the call grows; constructing the event <= 5 us more.
Floor, measured in the same run: appending a prebuilt tuple to a Python list
(what any in-process log costs at the least).

    python benchmarks/record.py [--json results.json] [--samples N]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
import warnings
from typing import Any

import voicestate as vs

warnings.simplefilter("ignore", vs.EphemeralKeyWarning)


def pct(samples: list[int], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000.0  # ns -> us


def bench_record(n_prefix: int, samples: int) -> dict[str, Any]:
    store = vs.open_store(f"memory://bench-{n_prefix}")
    s = store.open(f"call-{n_prefix}", agent="triage")
    text = "I was charged twice for my March invoice and I would like a refund please"
    for i in range(n_prefix - 1):  # the call already holds n_prefix events
        s.record(vs.UserSpoke(text) if i % 2 else vs.AgentSpoke(text))
    events = [vs.UserSpoke(text) if i % 2 else vs.AgentSpoke(text) for i in range(samples)]
    construct: list[int] = []
    for _ in range(samples):
        t0 = time.perf_counter_ns()
        vs.UserSpoke(text)
        construct.append(time.perf_counter_ns() - t0)
    record: list[int] = []
    perf = time.perf_counter_ns
    rec = s.record
    for ev in events:
        t0 = perf()
        rec(ev)
        record.append(perf() - t0)
    floor: list[int] = []
    lst: list[Any] = []
    item = (1, "id", b"x" * 100, b"c" * 16, 1, False)
    for _ in range(samples):
        t0 = perf()
        lst.append(item)
        floor.append(perf() - t0)
    store.close()
    return {
        "events_in_call": n_prefix,
        "record_p50_us": pct(record, 0.50),
        "record_p99_us": pct(record, 0.99),
        "record_mean_us": statistics.fmean(record) / 1000,
        "construct_p50_us": pct(construct, 0.50),
        "floor_list_append_p50_us": pct(floor, 0.50),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write the results here as JSON")
    ap.add_argument("--samples", type=int, default=5000)
    args = ap.parse_args()
    gc.collect()
    rows = [bench_record(n, args.samples) for n in (10, 1_000, 10_000)]
    print(f"in-process record ({platform.python_implementation()} {platform.python_version()}, {args.samples} samples)")
    print()
    print("| events in call | record p50 | record p99 | budget p50/p99 | construct p50 | floor (list.append) p50 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['events_in_call']:,} | {r['record_p50_us']:.2f} µs | {r['record_p99_us']:.2f} µs | 5 / 50 µs "
            f"| {r['construct_p50_us']:.2f} µs | {r['floor_list_append_p50_us']:.2f} µs |"
        )
    ok = all(r["record_p50_us"] <= 5 and r["record_p99_us"] <= 50 for r in rows if r["events_in_call"] >= 1000)
    print()
    print("within budget" if ok else "OVER BUDGET")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "record", "python": sys.version, "rows": rows, "within_budget": ok}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
