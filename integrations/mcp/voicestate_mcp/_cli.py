"""``voicestate mcp serve`` and the console script ``voicestate-mcp`` (the same options)."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import voicestate as vs

from ._auth import TOKEN_ENV, load_token

if TYPE_CHECKING:
    from mcp.server.transport_security import TransportSecuritySettings

_LOOPBACK = ("localhost",)


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mcp_command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="serve a store over MCP (stdio, or streamable HTTP on loopback with a bearer token)",
        description="Serve a voicestate store over MCP: tools to read calls, write notes and tool results, "
        "and (with --agent) act in calls as that agent; resources voicestate://calls/...",
    )
    serve_args(serve)


def serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default=os.environ.get("VOICESTATE_STORE"),
        required=not os.environ.get("VOICESTATE_STORE"),
        help="store URL(s), space-separated (default: $VOICESTATE_STORE); share its deciding tier with the "
        "agents (sqlite:///path on one host, redis://, dynamodb://)",
    )
    p.add_argument("--agent", help="act as this agent: redeem handoffs addressed to it, write as the owner")
    p.add_argument("--tenant", help="the one tenant this server serves (default: the store's)")
    p.add_argument(
        "--require-packet",
        action="store_true",
        help="redeeming a handoff needs its signed packet or token, never the bare call id",
    )
    p.add_argument(
        "--release-idle",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="let go of a call no tool call touched for this long (its lease then runs out; 0: never; default 300)",
    )
    p.add_argument("--transport", choices=("stdio", "streamable-http"), default="stdio")
    p.add_argument("--host", default="127.0.0.1", help="streamable HTTP: the address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=8000, help="streamable HTTP: the port (default: 8000)")
    p.add_argument("--path", default="/mcp", help="streamable HTTP: the endpoint's path (default: /mcp)")
    p.add_argument(
        "--token-file",
        help=f"streamable HTTP: a file whose first line is the bearer token clients must send (default: ${TOKEN_ENV})",
    )


def run(args: argparse.Namespace) -> int:
    from ._server import create_server

    http = args.transport == "streamable-http"
    token = load_token(args.token_file) if http else None
    if http and token is None:
        raise vs.ConfigError(
            f"streamable HTTP needs a bearer token: set ${TOKEN_ENV} or pass --token-file FILE "
            "(make one with python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if not (math.isfinite(args.release_idle) and args.release_idle >= 0):
        raise vs.ConfigError(f"--release-idle {args.release_idle:g} is not seconds (>= 0; 0: never)")
    if not args.store.split():
        raise vs.ConfigError("--store is empty: pass a store URL (e.g. sqlite:///calls.db) or set $VOICESTATE_STORE")
    if args.tenant is not None and not args.tenant.strip():
        raise vs.ConfigError("--tenant is empty: pass the tenant's name, or leave it out for the store's")
    if not args.path.startswith("/"):
        raise vs.ConfigError(f"--path {args.path!r} is a URL path: it starts with '/' (e.g. /mcp)")
    if not 0 < args.port < 65536:
        raise vs.ConfigError(f"--port {args.port} is not a TCP port (1 to 65535)")
    store = (
        vs.open_store(*args.store.split(), tenant=args.tenant, require_packet=True)
        if args.require_packet
        else vs.open_store(*args.store.split(), tenant=args.tenant)
    )
    try:
        url = f"http://{_host_in_url(args.host)}:{args.port}{args.path}"
        idle = args.release_idle if args.release_idle > 0 else None
        server = create_server(store, agent=args.agent, bearer_token=token, idle_release=idle)
        who = f"as agent {args.agent!r}" if args.agent else "for no agent (reads and outside writes)"
        if http:
            _check_bind(args.host, args.port)
            loopback = _is_loopback(args.host)
            where = "" if loopback else " (NOT loopback: reachable from the network)"
            print(f"voicestate-mcp: serving {store!r} {who} at {url}{where}, bearer token required", file=sys.stderr)
            server.run(
                "streamable-http",
                host=args.host,
                port=args.port,
                streamable_http_path=args.path,
                transport_security=_rebinding_guard(args.host, args.port) if loopback else None,
            )
        else:
            print(f"voicestate-mcp: serving {store!r} {who} over stdio", file=sys.stderr)
            server.run("stdio")
    finally:
        store.close()
    return 0


def _check_bind(host: str, port: int) -> None:
    """Fail early, saying what to do, if the address cannot be bound (uvicorn would only log it)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise vs.ConfigError(f"--host {host!r}: {exc.strerror or exc}; pass an address of this machine") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise vs.ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --port (or --host)"
            ) from None


def _rebinding_guard(host: str, port: int) -> TransportSecuritySettings:
    """DNS-rebinding protection for any loopback address (the SDK guards only three names)."""
    from mcp.server.transport_security import TransportSecuritySettings

    names = {_host_in_url(host), "127.0.0.1", "localhost", "[::1]"}
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted(f"{n}:{port}" for n in names) + sorted(f"{n}:*" for n in names),
        allowed_origins=sorted(f"http://{n}:*" for n in names),
    )


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def main(argv: Sequence[str] | None = None) -> int:
    """``voicestate-mcp [options]``: the same as ``voicestate mcp serve [options]``."""
    parser = argparse.ArgumentParser(prog="voicestate-mcp", description="Serve a voicestate store over MCP.")
    serve_args(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except vs.VoiceStateError as exc:
        print(f"voicestate-mcp: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
