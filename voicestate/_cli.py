"""The ``voicestate`` command line: subcommands come from ``register_commands`` hooks."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._errors import VoiceStateError
from ._plugins import registry


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voicestate", description="Durable, resumable state for live voice calls.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in sorted(registry().commands.items()):
        sp = sub.add_parser(name, help=command.help, description=command.help)
        if command.configure is not None:
            command.configure(sp)
        sp.set_defaults(_run=command.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        run = getattr(args, "_run", None)
        if run is None:
            parser.print_help()
            return 2
        return int(run(args))
    except VoiceStateError as exc:
        # One line, saying what happened; the messages say what to do next.
        print(f"voicestate: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `voicestate inspect ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
