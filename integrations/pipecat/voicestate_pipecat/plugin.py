"""The hookimpls of voicestate-pipecat; Pipecat itself is imported lazily, inside them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import voicestate.plugins as vsp

_render = vsp.lazy("voicestate_pipecat._format", "render")
_parse = vsp.lazy("voicestate_pipecat._format", "parse")


@vsp.hookimpl
def register_formats(register: Callable[..., None]) -> None:
    register("pipecat", _render, _parse)


def _demo_args(parser: Any) -> None:
    parser.add_argument("--store", help="store URL shared by both processes (default: SQLite in a temporary directory)")


def _demo(args: Any) -> int:
    from ._demo import run_demo

    return run_demo(args.store)


@vsp.hookimpl
def register_commands(register: Callable[..., None]) -> None:
    register(
        "demo:pipecat",
        _demo,
        help="the scripted call through real Pipecat pipelines in two processes",
        configure=_demo_args,
    )
