"""voicestate-mcp: an MCP server over a voicestate store, so that any MCP-capable agent reads a
live call and hands it off.

- :func:`create_server`: the ``MCPServer`` (tools, resources ``voicestate://calls/...``
  with subscriptions fed by the store's watch, the ``receive_handoff`` prompt).
- ``voicestate mcp serve --store URL`` and the console script ``voicestate-mcp``: the
  server over stdio or streamable HTTP (loopback and a bearer token by default).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from voicestate.plugins import lazy_exports

if TYPE_CHECKING:
    from ._server import create_server

# The MCP SDK is imported on first use of a name, not with the package: the entry point
# (voicestate_mcp.plugin) loads this package in every process that opens a store.
_WHERE = {"create_server": "_server"}

__getattr__ = lazy_exports(__name__, _WHERE)

try:
    __version__ = version("voicestate-mcp")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["create_server"]
