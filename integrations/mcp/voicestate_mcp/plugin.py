"""The hookimpls of voicestate-mcp: the ``voicestate mcp`` command; the SDK is imported lazily."""

from __future__ import annotations

from collections.abc import Callable

import voicestate.plugins as vsp

_configure = vsp.lazy("voicestate_mcp._cli", "configure")
_run = vsp.lazy("voicestate_mcp._cli", "run")


@vsp.hookimpl
def register_commands(register: Callable[..., None]) -> None:
    register("mcp", _run, help="serve a store over MCP (mcp serve --store URL [--agent NAME])", configure=_configure)
