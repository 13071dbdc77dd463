"""The core's CLI commands (registered through ``register_commands`` like a plugin's)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs

from ._calls import CallInfo
from ._convert import event_to_dict, make_converter
from ._demo import run_demo as demo_main
from ._errors import CallNotFound, ConfigError, PacketError
from ._events import Event
from ._keys import ENV_VAR, parse_keys
from ._open import open_store
from ._output import Printer
from ._packet import DEFAULT_SKEW, HandoffPacket, TokenClaims, decode_token, peek
from ._tiers import describe as describe_tiers
from ._timeline import timeline_rows
from ._verify import PacketCheck, detail, judge, utc


def register_all(register: Callable[..., None]) -> None:
    register(
        "demo",
        run_demo,
        help="a scripted call: barge-in, a running tool, handoffs across processes, a human",
        configure=_demo_args,
    )
    register("inspect", run_inspect, help="print a stored call's timeline and state", configure=_inspect_args)
    register(
        "calls",
        run_calls,
        help="list a store's calls: owner, lease, pending handoff",
        configure=_calls_args,
    )
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


def _open_to_read(urls: str, command: str) -> Any:
    """Open a store for a read-only command, which never creates one: each ``sqlite:///path``
    tier must name an existing file (opening a missing one would create an empty database)."""
    for url in urls.split():
        _require_sqlite_file(url, command)
    # Reading needs no signing key: a fixed placeholder avoids the per-process-key warning.
    keys = os.environ.get(ENV_VAR) or "inspect:read-only-placeholder-key"
    return open_store(*urls.split(), signing_keys=keys)


def _require_sqlite_file(url: str, command: str) -> None:
    if url.split("://", 1)[0].lower() != "sqlite":
        return
    parts = urlsplit(url.split("?", 1)[0])
    path = unquote(parts.path[1:])
    if parts.netloc or not path or path == ":memory:":
        return  # the backend explains a malformed URL; :memory: is never a file
    if os.path.isfile(path):
        return
    where = os.path.abspath(path)
    if os.path.isdir(path):
        raise ConfigError(f"{url}: {where} is a directory, not a store file; name the .db file inside it")
    # The usual slip: three slashes make a relative path, four an absolute one.
    other = path[1:] if os.path.isabs(path) else "/" + path
    hint = (
        f"; did you mean sqlite:///{other} ({os.path.abspath(other)} exists)?"
        if os.path.isfile(other)
        else "; check the path: sqlite:///calls.db is relative to the current directory, "
        "sqlite:////var/lib/calls.db is absolute"
    )
    raise ConfigError(f"{url}: no store at {where} (voicestate {command} only reads; it never creates one){hint}")


def run_inspect(args: argparse.Namespace) -> int:
    p = Printer()
    store = _open_to_read(args.store, "inspect")
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


# -- calls -------------------------------------------------------------------------


def _calls_args(p: argparse.ArgumentParser) -> None:
    _store_arg(p, required=True)
    p.add_argument("--active", action="store_true", help="only calls that have not ended")
    p.add_argument(
        "--stale",
        action="store_true",
        help="only active calls whose owner's lease ran out (a dead owner: what a recovery worker takes over)",
    )
    p.add_argument("--owner", metavar="NAME", help="only calls owned by agent NAME")
    p.add_argument("--limit", metavar="N", type=_positive_int, default=100, help="list at most N calls (default 100)")
    p.add_argument("--json", action="store_true", help="print a JSON list of the calls' fields")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def run_calls(args: argparse.Namespace) -> int:
    p = Printer()
    store = _open_to_read(args.store, "calls")
    try:
        if not store.tiers.deciding.backend.capabilities.shared_across_processes:
            raise ConfigError(
                f"{args.store} serves one process, so this command's own copy holds no calls: "
                "list a store processes share, e.g. --store sqlite:///calls.db"
            )
        # One more than asked for: whether more calls match than are shown.
        infos = store.calls(
            status="active" if args.active or args.stale else None,
            owner=args.owner,
            stale=True if args.stale else None,
            limit=args.limit + 1,
        )
    finally:
        store.close()
    more = len(infos) > args.limit
    infos = infos[: args.limit]
    if args.json:
        print(json.dumps([{**attrs.asdict(i), "stale": i.stale} for i in infos], indent=2, ensure_ascii=False))
        return 0
    wanted = "stale calls" if args.stale else "active calls" if args.active else "calls"
    if args.owner:
        wanted += f" owned by {args.owner!r}"
    if not infos:
        p.say(f"no {wanted} in {args.store}", "dim")
        return 0
    now = time.time()
    header = ("CALL", "STATUS", "OWNER", "EPOCH", "SEQ", "LAST ACTIVE", "LEASE", "PENDING HANDOFF")
    rows = [_call_row(info, now) for info in infos]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        # Numbers (epoch, seq) to the right, the rest to the left.
        return "  ".join(
            c.rjust(w) if i in (3, 4) else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    p.say(line(header), "title")
    for info, row in zip(infos, rows, strict=True):
        stale = info.status == "active" and info.lease_until <= now  # as the lease column says
        p.say(line(row), "warn" if stale else "dim" if info.status == "ended" else None)
    if more:
        p.say(f"(the first {len(infos)}; more {wanted} match: raise --limit to list them)", "dim")
    return 0


def _call_row(info: CallInfo, now: float) -> tuple[str, ...]:
    last = f"{_span(now - info.last_active_at)} ago" if info.last_active_at else "-"
    if info.status == "ended" or not info.lease_until:
        lease = "-"
    elif info.lease_until > now:
        lease = f"live {_span(info.lease_until - now)}"
    else:
        lease = f"lapsed {_span(now - info.lease_until)} ago"
    return (
        info.call_id,
        info.status,
        info.owner or "-",
        str(info.epoch),
        str(info.seq),
        last,
        lease,
        info.pending_to or "-",
    )


def _span(seconds: float) -> str:
    """A duration, rounded for a person: 3 s, 12 min, 5 h, 2 d."""
    s = max(0, round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 2 * 3600:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


# -- packet ------------------------------------------------------------------------

# Exit codes of ``packet show|verify`` (docs/cli.md): 0 valid and redeemable (or, for show
# without keys, decoded); 1 invalid, not verified, or an error; 3 genuine (the signature
# holds) but no longer redeemable: redeemed, replaced, cancelled, cleared, ended or expired.
VALID, INVALID, SPENT = 0, 1, 3

EXPECTED = "PACKET is a vs1. token, a packet's JSON ({...}), @FILE (JSON or msgpack) or - for standard input"


def _packet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=("show", "verify"),
        help="show: decode and print; verify: check (exit 0 valid, 1 invalid, 3 genuine but spent)",
    )
    p.add_argument(
        "packet", metavar="PACKET", help="a JSON packet, a vs1. token, @FILE (JSON or msgpack), or - for stdin"
    )
    p.add_argument("--keys", help=f"signing keys 'kid:secret,...' (default: ${ENV_VAR})")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--store",
        help="store URL(s), space-separated: also say where the handoff stands (default: $VOICESTATE_STORE)",
    )
    where.add_argument(
        "--offline",
        action="store_true",
        help="check the encoding, signature and expiry only; never open a store (not even $VOICESTATE_STORE)",
    )
    p.add_argument("--agent", help="with verify: the agent that would redeem it (checks the target)")


class _NotAPacket(Exception):
    """The input is not shaped like any packet encoding (a verdict, not an error)."""


def _read_packet(arg: str) -> str | bytes:
    """The packet's text (JSON or token) or bytes (msgpack), from the argument, @FILE or stdin."""
    if arg == "-":
        data = sys.stdin.buffer.read()
        source = "standard input"
    elif arg.startswith("@"):
        try:
            with open(arg[1:], "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ConfigError(f"cannot read {arg[1:]!r}: {exc.strerror}") from None
        source = repr(arg[1:])
    else:
        text = arg.strip()
        if text.startswith(("{", "vs")):  # JSON, or a token (vs1., or another version: peek says which)
            return text
        hint = f" (a file {arg!r} exists: write @{arg} to read it)" if arg and os.path.isfile(arg) else ""
        shown = arg if len(arg) <= 40 else arg[:39] + "…"
        raise _NotAPacket(f"{shown!r} is neither a vs1. token nor a packet's JSON{hint}; {EXPECTED}")
    if not data.strip():
        raise _NotAPacket(f"{source} is empty; {EXPECTED}")
    head = data.lstrip()
    if head.startswith((b"{", b"vs")):
        return head.rstrip().decode("ascii", "replace")
    if data[0] in range(0x80, 0x90) or data[0] in (0xDE, 0xDF):  # a msgpack map: peek decodes it
        return data
    shown = data[:20].decode("utf-8", "replace")
    raise _NotAPacket(
        f"{source} holds neither a vs1. token, a packet's JSON nor a msgpack packet (it starts {shown!r}); {EXPECTED}"
    )


def run_packet(args: argparse.Namespace) -> int:
    p = Printer()
    try:
        data = _read_packet(args.packet)
        decoded = peek(data)
    except _NotAPacket as exc:
        p.say(f"verdict: INVALID (malformed): {exc}", "bad")
        return INVALID
    except PacketError as exc:
        p.say(f"verdict: INVALID ({exc.reason}): {detail(exc)}", "bad")
        return INVALID
    if args.action == "show":
        _show(p, decoded)
    spec = args.keys or os.environ.get(ENV_VAR)
    if not spec:
        p.say(f"verdict: NOT VERIFIED: no keys (pass --keys 'kid:secret' or set {ENV_VAR})", "warn")
        return INVALID if args.action == "verify" else VALID
    keys = parse_keys(spec)
    url = None if args.offline else (args.store or os.environ.get("VOICESTATE_STORE") or None)
    if args.agent and isinstance(decoded, TokenClaims) and url is None:
        if args.offline:
            raise ConfigError(
                "a token's target is in the store, which --offline does not read: "
                "drop --offline to check it against --agent, or drop --agent"
            )
        raise ConfigError("a token's target is in the store: pass --store to check it against --agent")
    try:
        # The signature (and a packet's inline events); the validity window is judged below,
        # against the store when there is one: a packet redeemed in time is not "expired".
        if isinstance(decoded, TokenClaims):
            decode_token(data if isinstance(data, str) else data.decode(), keys, skew=math.inf)
        else:
            decoded.verify(keys, skew=math.inf)
            if args.agent and decoded.to_agent != args.agent:
                raise PacketError("wrong_target", f"addressed to {decoded.to_agent!r}, not {args.agent!r}")
        ahead = (decoded.issued_at if isinstance(decoded, HandoffPacket) else 0.0) - time.time()
        if ahead > DEFAULT_SKEW:
            raise PacketError("expired", f"not valid yet (issued {ahead:.1f} s in the future): check the clocks")
        if url is not None:
            return _verdict_from_store(p, url, decoded, args.agent)
    except (PacketError, CallNotFound) as exc:  # verdicts; other errors (the store's) are one-line errors
        reason = exc.reason if isinstance(exc, PacketError) else type(exc).__name__
        p.say(f"verdict: INVALID ({reason}): {detail(exc)}", "bad")
        return INVALID
    left = decoded.expires_at - time.time()
    if left < -DEFAULT_SKEW:
        where = "drop --offline" if args.offline else "pass --store URL or set VOICESTATE_STORE"
        p.say(
            f"verdict: EXPIRED: signed with key {decoded.key_id!r}, expired {-left:.0f} s ago; "
            f"whether it was redeemed in time, the store says ({where})",
            "warn",
        )
        return SPENT
    p.say(f"verdict: VALID: signed with key {decoded.key_id!r}, expires in {max(left, 0):.0f} s", "ok")
    return VALID


def _show(p: Printer, decoded: HandoffPacket | TokenClaims) -> None:
    if isinstance(decoded, TokenClaims):
        p.say("vs1 token (the rest of the packet is in the store)", "title")
        rows = [
            ("call", decoded.call_id),
            ("packet", decoded.packet_id),
            ("key id", decoded.key_id),
            ("expires", utc(decoded.expires_at)),
        ]
    else:
        p.say(f"handoff packet v{decoded.version}", "title")
        rows = [
            ("call", decoded.call_id + (f" (tenant {decoded.tenant})" if decoded.tenant else "")),
            ("handoff", f"{decoded.kind}: {decoded.from_agent} -> {decoded.to_agent}"),
            ("reason", decoded.reason or "-"),
            ("covers", f"seq {decoded.seq}, epoch {decoded.epoch}, chain {decoded.chain.hex()}"),
            ("issued", utc(decoded.issued_at)),
            ("expires", utc(decoded.expires_at)),
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


def _verdict_from_store(p: Printer, url: str, decoded: HandoffPacket | TokenClaims, agent: str | None) -> int:
    """Where the handoff stands in the store's log, as the verdict: pending (VALID), or what
    ended it (REDEEMED, REPLACED, CANCELLED, CLEARED, ENDED, EXPIRED; the packet is genuine,
    but it can no longer be redeemed)."""
    store = _open_to_read(url, "packet")
    try:
        events = store.events(decoded.call_id)
    finally:
        store.close()
    check = judge(decoded, events, agent, url)
    good = check.verdict in ("valid", "redeemed")
    p.say(f"  store    {check.history}", "ok" if good else "warn")
    if check.verdict not in ("valid", "ended"):  # pending: the store line says who holds it
        _now(p, check, events)
    p.say(f"verdict: {check.verdict.upper()}: {check.detail}", "ok" if good else "warn")
    return VALID if check.redeemable else SPENT


def _now(p: Printer, check: PacketCheck, events: list[Event]) -> None:
    """Who owns the call now (the log's last ownership change, as the verdict found it)."""
    if check.owner is None:
        p.say(f"  now      the call has ended ({len(events)} events)")
    else:
        p.say(f"  now      owned by {check.owner!r}, epoch {check.epoch} ({len(events)} events)")
