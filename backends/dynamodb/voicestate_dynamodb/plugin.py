"""The hookimpls of voicestate-dynamodb; the implementation is imported lazily, inside them."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import voicestate.plugins as vsp

_open = vsp.lazy("voicestate_dynamodb._backend", "open_dynamodb")


def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dynamodb_command", required=True)
    create = sub.add_parser("create-table", help="create the table a dynamodb:// URL names (on-demand, TTL on)")
    create.add_argument("url", help="dynamodb://TABLE?region=...&endpoint_url=...")


def _run(args: argparse.Namespace) -> int:
    from ._backend import create_table

    if args.dynamodb_command == "create-table":
        table = create_table(args.url)
        print(f"created table {table!r} (on-demand billing, TTL on expires_at)")
        return 0
    return 2  # pragma: no cover - argparse requires a subcommand


@vsp.hookimpl
def register_backends(register: Callable[..., None]) -> None:
    register("dynamodb", _open)


@vsp.hookimpl
def register_commands(register: Callable[..., None]) -> None:
    register("dynamodb", _run, help="DynamoDB tables for voicestate (create-table URL)", configure=_configure)
