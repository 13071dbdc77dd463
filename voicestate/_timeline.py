"""A readable timeline of a call's events, for the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._events import (
    AgentSpoke,
    CallEnded,
    CallStarted,
    Event,
    HandedOff,
    HandoffCancelled,
    Interrupted,
    Note,
    OwnerChanged,
    SlotsSet,
    ToolCalled,
    ToolCancelled,
    ToolReturned,
    UnknownEvent,
    UserSpoke,
)
from ._state import CallState


def _q(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return json.dumps(text if len(text) <= width else text[: width - 1] + "…", ensure_ascii=False)


def _args(values: Any) -> str:
    if isinstance(values, dict):
        return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in values.items())
    return json.dumps(values, ensure_ascii=False)


# The writer shown for an event stored without an agent: only a write from outside the
# owner (``store.append`` of a Note, a tool result or cancel, or CallEnded, with no
# ``agent=``) has none, since a session stamps its own agent on what it records.
OUTSIDE = "(outside)"


def describe(ev: Event, state: CallState | None = None) -> tuple[str, str, list[str]]:
    """(who, what, detail lines) for one event; who is the event's agent, else OUTSIDE."""
    who = ev.agent or OUTSIDE
    if isinstance(ev, UserSpoke):
        extra = "" if ev.final else " (interim)"
        return "caller", "says", [_q(ev.text) + extra]
    if isinstance(ev, AgentSpoke):
        lines = [_q(ev.text)]
        if state is not None:
            turn = next((t for t in state.turns if t.seq == ev.seq), None)
            if turn is not None and turn.interrupted:
                lines.append(f"caller heard only {_q(turn.heard or '')} ({(turn.heard_ms or 0) / 1000:.2f} s)")
        return who, "says", lines
    if isinstance(ev, Interrupted):
        target = "the latest turn" if ev.turn is None else f"turn {ev.turn}"
        return "caller", "barges in", [f"cuts {target} at {ev.heard_ms} ms"]
    if isinstance(ev, ToolCalled):
        status = ""
        if state is not None and ev.call_id in state.tools:
            status = f"   [{state.tools[ev.call_id].status}]"
        return who, "tool call", [f"{ev.call_id}: {ev.name}({_args(dict(ev.arguments))}){status}"]
    if isinstance(ev, ToolReturned):
        if ev.error is not None:
            return who, "tool failed", [f"{ev.call_id}: {ev.error}"]
        return who, "tool result", [f"{ev.call_id}: {_args(ev.result)}"]
    if isinstance(ev, ToolCancelled):
        return who, "tool cancel", [f"{ev.call_id}: {ev.reason or ''}"]
    if isinstance(ev, SlotsSet):
        scope = "" if ev.scope == "call" else f" ({ev.scope})"
        return who, "facts", [_args(dict(ev.values)) + scope]
    if isinstance(ev, Note):
        return who, "note", [_q(ev.text)]
    if isinstance(ev, HandedOff):
        pending = (
            state is not None and state.pending_handoff is not None and state.pending_handoff.packet_id == ev.packet_id
        )
        lines = [
            f"{ev.kind} to {ev.to_agent!r}"
            + (f": {ev.reason}" if ev.reason else "")
            + (" (pending)" if pending else "")
        ]
        if ev.summary:
            lines.append("summary: " + _q(ev.summary, 200))
        return who, "handoff", lines
    if isinstance(ev, HandoffCancelled):
        return who, "handoff off", [f"packet {ev.packet_id[:8]}… withdrawn"]
    if isinstance(ev, OwnerChanged):
        how = "redeemed the handoff" if ev.packet_id else "took over"
        return who, "owner", [f"{ev.owner} {how}: epoch {ev.epoch}"]
    if isinstance(ev, CallStarted):
        meta = _args(dict(ev.meta)) if ev.meta else ""
        return who, "call start", [f"owner {who}, epoch 1" + (f"; {meta}" if meta else "")]
    if isinstance(ev, CallEnded):
        return who, "call end", [ev.reason or ""]
    if isinstance(ev, UnknownEvent):
        return who, ev.type_name, [_args(dict(ev.fields))]
    return who, type(ev).__name__, []


_STYLE = {
    "says": "agent",
    "barges in": "caller",
    "owner": "owner",
    "handoff": "handoff",
    "handoff off": "handoff",
    "tool call": "tool",
    "tool result": "tool",
    "tool failed": "bad",
    "tool cancel": "tool",
    "call start": "title",
    "call end": "title",
}


def timeline_rows(events: Sequence[Event], state: CallState | None = None) -> list[tuple[str, str | None]]:
    """(line, style) for each line of the timeline: seq, seconds since the start, who, what, details."""
    if not events:
        return []
    t0 = events[0].at
    out: list[tuple[str, str | None]] = [(f"{'seq':>4}  {'t (s)':>7}  {'who':<9} {'what':<12} detail", "dim")]
    pad = " " * (4 + 2 + 7 + 2 + 10 + 13)
    for ev in events:
        who, what, lines = describe(ev, state)
        style = "caller" if who == "caller" else _STYLE.get(what)
        first, *rest = lines or [""]
        out.append((f"{ev.seq or 0:>4}  {ev.at - t0:>7.3f}  {who:<9.9} {what:<12} {first}", style))
        out.extend((pad + line, "dim") for line in rest)
    return out


def timeline(events: Sequence[Event], state: CallState | None = None) -> list[str]:
    """The timeline as plain lines."""
    return [line for line, _ in timeline_rows(events, state)]
