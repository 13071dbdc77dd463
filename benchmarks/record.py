"""In-process ``record`` latency alone (figure a of the suite), against DESIGN.md's budget.

A thin wrapper over ``vsbench.record``; ``python benchmarks/run.py`` runs the
whole suite, this figure included.

    python benchmarks/record.py [--json results.json] [--samples N]
"""

from __future__ import annotations

import argparse
import sys
import time

from vsbench import record, report


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write the results here as JSON")
    ap.add_argument("--samples", type=int, default=5000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    figures = record.run(args.samples, warmup=min(args.samples, 2000))
    seconds = time.perf_counter() - t0
    print(report.markdown(figures, title="in-process record", quick=False, seconds=seconds))
    if args.json:
        doc = report.document(figures, quick=False, seconds=seconds, settings={"record_samples": args.samples})
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(report.to_json(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
