"""The core's CLI commands (registered through ``register_commands`` like a plugin's)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from ._convert import event_to_dict, make_converter
from ._demo import run_demo as demo_main
from ._errors import ConfigError, OwnershipError, PacketError, VoiceStateError
from ._keys import ENV_VAR, parse_keys
from ._open import open_store
from ._output import Printer
from ._packet import HandoffPacket, TokenClaims, decode_token, peek
from ._tiers import describe as describe_tiers
from ._timeline import timeline_rows


def register_all(register: Callable[..., None]) -> None:
    register(
        "demo",
        run_demo,
        help="a scripted call: barge-in, a running tool, handoffs across processes, a human",
        configure=_demo_args,
    )
    register("inspect", run_inspect, help="print a stored call's timeline and state", configure=_inspect_args)
    register(
        "packet",
        run_packet,
        help="decode a handoff packet or token (show) or check it (verify)",
        configure=_packet_args,
    )


# -- demo ------------------------------------------------------------------------


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help="store URL (default: SQLite in a temporary directory)")


def run_demo(args: argparse.Namespace) -> int:
    return demo_main(args.store, Printer())


# -- inspect -----------------------------------------------------------------------


def _store_arg(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "--store",
        default=os.environ.get("VOICESTATE_STORE"),
        required=required and not os.environ.get("VOICESTATE_STORE"),
        help="store URL(s), space-separated (default: $VOICESTATE_STORE)",
    )


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("call_id", metavar="CALL_ID")
    _store_arg(p, required=True)
    p.add_argument("--json", action="store_true", help="print the state and events as JSON")
    p.add_argument("--context", metavar="FORMAT", help="also print the context rendered as FORMAT (e.g. openai)")


def _open(url: str) -> Any:
    # Reading needs no signing key: a fixed placeholder avoids the per-process-key warning.
    keys = os.environ.get(ENV_VAR) or "inspect:read-only-placeholder-key"
    return open_store(*url.split(), signing_keys=keys)


def run_inspect(args: argparse.Namespace) -> int:
    p = Printer()
    store = _open(args.store)
    try:
        state = store.load(args.call_id)
        events = store.events(args.call_id)
        if args.json:
            doc = {"state": make_converter().unstructure(state), "events": [event_to_dict(e) for e in events]}
            print(json.dumps(doc, indent=2, ensure_ascii=False, default=_jsonable))
            return 0
        p.say(f"call {state.call_id}", "title")
        p.say("  tiers  " + "  ->  ".join(f"{t['url']} ({t['role']})" for t in describe_tiers(store.tiers)))
        p.say(
            f"  status {state.status}   owner {state.owner}   epoch {state.epoch}   {state.seq} events   "
            f"chain head {state.chain.hex()[:16]}…"
        )
        if state.meta:
            p.say(f"  meta   {json.dumps(dict(state.meta), ensure_ascii=False)}")
        if state.slots:
            p.say(f"  facts  {json.dumps(dict(state.slots), ensure_ascii=False)}")
        pending = state.pending_tools()
        if pending:
            p.say(f"  running tools: {', '.join(f'{t.call_id} {t.name}' for t in pending)}", "tool")
        if state.pending_handoff is not None:
            h = state.pending_handoff
            left = h.expires_at - time.time()
            status = f"expires in {left:.0f} s" if left > 0 else f"expired {-left:.0f} s ago"
            p.say(f"  pending handoff to {h.to_agent} ({h.kind}), {status}", "handoff")
        p.say()
        for line, style in timeline_rows(events, state):
            p.say("  " + line, style)
        if args.context:
            p.say()
            p.say(f"context ({args.context}):", "title")
            print(json.dumps(state.context(args.context), indent=2, ensure_ascii=False, default=_jsonable))
        return 0
    finally:
        store.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    try:
        return dict(value)
    except (TypeError, ValueError):
        return str(value)


# -- packet ------------------------------------------------------------------------


def _packet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("show", "verify"), help="show: decode and print; verify: check, exit 0 or 1")
    p.add_argument(
        "packet", metavar="PACKET", help="a JSON packet, a vs1. token, @FILE (JSON or msgpack), or - for stdin"
    )
    p.add_argument("--keys", help=f"signing keys 'kid:secret,...' (default: ${ENV_VAR})")
    _store_arg(p, required=False)
    p.add_argument("--agent", help="with verify: the agent that would redeem it (checks the target)")


def _read_packet(arg: str) -> str | bytes:
    if arg == "-":
        data: str | bytes = sys.stdin.buffer.read()
    elif arg.startswith("@"):
        try:
            with open(arg[1:], "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ConfigError(f"cannot read {arg[1:]!r}: {exc.strerror}") from None
    else:
        data = arg
    if isinstance(data, bytes) and (data.lstrip().startswith(b"{") or data.lstrip().startswith(b"vs1.")):
        data = data.strip().decode("ascii", "replace")
    return data


def run_packet(args: argparse.Namespace) -> int:
    p = Printer()
    data = _read_packet(args.packet)
    try:
        decoded = peek(data)
    except PacketError as exc:
        p.say(f"verdict: INVALID ({exc.reason}): {_detail(exc)}", "bad")
        return 1
    if args.action == "show":
        _show(p, decoded)
    spec = args.keys or os.environ.get(ENV_VAR)
    if not spec:
        p.say(f"verdict: NOT VERIFIED: no keys (pass --keys 'kid:secret' or set {ENV_VAR})", "warn")
        return 1 if args.action == "verify" else 0
    keys = parse_keys(spec)
    try:
        if isinstance(decoded, TokenClaims):
            decode_token(data if isinstance(data, str) else data.decode(), keys)
            if args.agent and not args.store:
                raise ConfigError("a token's target is in the store: pass --store to check it against --agent")
        else:
            decoded.verify(keys)
            if args.agent and decoded.to_agent != args.agent:
                raise PacketError("wrong_target", f"addressed to {decoded.to_agent!r}, not {args.agent!r}")
        if args.store:
            _check_in_store(p, args.store, decoded, args.agent)
    except ConfigError:
        raise
    except VoiceStateError as exc:
        reason = exc.reason if isinstance(exc, PacketError) else type(exc).__name__
        p.say(f"verdict: INVALID ({reason}): {_detail(exc)}", "bad")
        return 1
    expires = decoded.expires_at
    p.say(f"verdict: VALID: signed with key {decoded.key_id!r}, expires in {expires - time.time():.0f} s", "ok")
    return 0


def _detail(exc: VoiceStateError) -> str:
    text = str(exc)
    if isinstance(exc, PacketError) and text.startswith(exc.reason + ": "):
        return text[len(exc.reason) + 2 :]
    return text


def _show(p: Printer, decoded: HandoffPacket | TokenClaims) -> None:
    if isinstance(decoded, TokenClaims):
        p.say("vs1 token (the rest of the packet is in the store)", "title")
        rows = [
            ("call", decoded.call_id),
            ("packet", decoded.packet_id),
            ("key id", decoded.key_id),
            ("expires", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(decoded.expires_at))),
        ]
    else:
        p.say(f"handoff packet v{decoded.version}", "title")
        rows = [
            ("call", decoded.call_id + (f" (tenant {decoded.tenant})" if decoded.tenant else "")),
            ("handoff", f"{decoded.kind}: {decoded.from_agent} -> {decoded.to_agent}"),
            ("reason", decoded.reason or "-"),
            ("covers", f"seq {decoded.seq}, epoch {decoded.epoch}, chain {decoded.chain.hex()}"),
            ("issued", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(decoded.issued_at))),
            ("expires", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(decoded.expires_at))),
            ("key id", decoded.key_id),
            ("inline", "no" if decoded.events is None else f"{len(decoded.events)} events"),
            ("packet", decoded.packet_id),
        ]
        if decoded.data:
            rows.append(("data", json.dumps(dict(decoded.data), ensure_ascii=False)))
    for name, value in rows:
        p.say(f"  {name:<8} {value}")
    if isinstance(decoded, HandoffPacket) and decoded.summary:
        p.say("  summary:")
        for line in decoded.summary.splitlines():
            p.say(f"    {line}", "dim")


def _check_in_store(p: Printer, url: str, decoded: HandoffPacket | TokenClaims, agent: str | None) -> None:
    """Is it still redeemable? (pending, not replaced, cancelled or redeemed)."""
    store = _open(url)
    try:
        state = store.load(decoded.call_id)
        pending = state.pending_handoff
        if pending is None or pending.packet_id != decoded.packet_id:
            raise OwnershipError(
                f"the handoff is no longer pending in the store (owner {state.owner!r}, epoch {state.epoch})"
            )
        if agent and pending.to_agent != agent:
            raise PacketError("wrong_target", f"addressed to {pending.to_agent!r}, not {agent!r}")
        p.say(f"  store    pending, redeemable by {pending.to_agent!r}", "ok")
    finally:
        store.close()
