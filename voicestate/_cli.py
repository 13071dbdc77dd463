"""The ``voicestate`` command line: subcommands come from ``register_commands`` hooks."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._errors import ConfigError, VoiceStateError
from ._plugins import registry


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voicestate", description="Durable, resumable state for live voice calls.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    commands = registry().commands
    parsers: dict[str, argparse.ArgumentParser] = {}
    for name, command in sorted(commands.items()):
        if ":" in name:
            continue
        sp = parsers[name] = sub.add_parser(name, help=command.help, description=command.help)
        if command.configure is not None:
            command.configure(sp)
        sp.set_defaults(_run=command.run, _variants={})
    # "demo:pipecat" is a variant: `voicestate demo --pipecat` runs it with demo's options.
    for name, command in sorted(commands.items()):
        if ":" not in name:
            continue
        base, flag = name.split(":", 1)
        if base not in parsers:
            raise ConfigError(f"the CLI command {name!r} is a variant of {base!r}, which no plugin registers")
        parsers[base].add_argument(f"--{flag}", action="store_true", help=command.help)
        parsers[base].get_default("_variants")[flag.replace("-", "_")] = command.run
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        run = getattr(args, "_run", None)
        for flag, variant in getattr(args, "_variants", {}).items():
            if getattr(args, flag, False):
                run = variant
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
