"""The ``voicestate`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._errors import VoiceStateError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voicestate", description="Durable, resumable state for live voice calls.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run a scripted call with an interrupt, a tool call and a cross-process handoff")
    demo.add_argument("--store", help="store URL (default: SQLite in a temporary directory)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo import run_demo

            return run_demo(args.store)
        parser.print_help()
        return 2
    except VoiceStateError as exc:
        print(f"voicestate: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
