"""A call's state, context and timeline as the tools' typed results and the resources' text."""

from __future__ import annotations

import json
from typing import Any

import attrs

import voicestate as vs
import voicestate.plugins as vsp

from ._models import Briefing, CallView, ContextView, HandoffView, NoteView, Timeline, TimelineEntry, ToolView, TurnView


def turn_view(t: vs.Turn) -> TurnView:
    return TurnView(
        seq=t.seq,
        role=t.role,
        agent=t.agent,
        text=t.text,
        interrupted=t.interrupted,
        heard=t.heard,
        heard_ms=t.heard_ms,
        at=t.at,
    )


def tool_view(t: vs.ToolCall) -> ToolView:
    return ToolView(
        tool_call_id=t.call_id,
        name=t.name,
        arguments=dict(t.arguments),
        status=t.status,
        result=t.result,
        error=t.error,
        agent=t.agent,
        seq=t.seq,
    )


def handoff_view(h: vs.HandedOff) -> HandoffView:
    return HandoffView(
        packet_id=h.packet_id,
        from_agent=h.agent,
        to_agent=h.to_agent,
        kind=h.kind,  # type: ignore[arg-type]
        reason=h.reason,
        summary=h.summary,
        expires_at=h.expires_at,
        seq=h.seq or 0,
    )


def call_view(state: vs.CallState, agent: str | None, last_turns: int, held: bool) -> CallView:
    turns = list(state.turns)
    pending = state.pending_handoff
    return CallView(
        call_id=state.call_id,
        tenant=state.tenant,
        status=state.status,
        owner=state.owner,
        epoch=state.epoch,
        seq=state.seq,
        meta=dict(state.meta),
        slots=dict(state.slots),
        own_slots=dict(state.private_slots.get(agent, {})) if agent else {},
        turns_total=len(turns),
        turns=[turn_view(t) for t in (turns[-last_turns:] if last_turns else [])],
        pending_tools=[tool_view(t) for t in state.pending_tools()],
        tools=[tool_view(t) for t in state.tools.values()],
        pending_handoff=handoff_view(pending) if pending is not None else None,
        handoffs=[handoff_view(h) for h in state.handoffs],
        notes=[NoteView(seq=n.seq or 0, agent=n.agent, text=n.text, at=n.at) for n in state.notes],
        ended_reason=state.ended_reason,
        held_by_this_server=held,
    )


class NotJSON(Exception):
    """A format whose rendering is a framework's objects, not JSON."""


def context_view(state: vs.CallState, fmt: str, policy: vs.ContextPolicy, agent: str | None) -> ContextView:
    rendered = state.context(fmt, policy, agent=agent)
    if not isinstance(rendered, (list, dict)):
        raise NotJSON(fmt)
    try:
        # The client gets JSON: a format that renders a framework's objects cannot cross.
        json.dumps(rendered)
    except (TypeError, ValueError):
        raise NotJSON(fmt) from None
    # Checked as JSON just now: not validated again item by item (a long call's context is big).
    return ContextView.model_construct(
        call_id=state.call_id, seq=state.seq, format=fmt, agent=agent or policy.agent or state.owner, context=rendered
    )


PRIVATE = "(private)"


def _redacted(ev: vs.Event, agent: str | None) -> vs.Event:
    """``ev``, but a fact private to another agent than ``agent`` shows its keys, not its values."""
    if isinstance(ev, vs.SlotsSet) and ev.scope not in ("call", f"agent:{agent}"):
        return attrs.evolve(ev, values=dict.fromkeys(ev.values, PRIVATE))
    return ev


def timeline(call_id: str, events: list[vs.Event], state: vs.CallState, limit: int, agent: str | None) -> Timeline:
    """The events as entries; another agent's private facts show their keys, not their values."""
    entries = []
    for ev in (_redacted(e, agent) for e in events[:limit]):
        who, what, detail = vsp.describe_event(ev, state)
        data = vsp.event_to_dict(ev)
        entries.append(
            TimelineEntry(
                seq=ev.seq or 0,
                at=ev.at,
                agent=ev.agent,
                type=str(data["type"]),
                who=who,
                what=what,
                detail=detail,
                event=_jsonable(data),
            )
        )
    more = len(events) > limit
    return Timeline(call_id=call_id, seq=state.seq, entries=entries, next_after=entries[-1].seq if more else None)


def timeline_text(events: list[vs.Event], state: vs.CallState, agent: str | None) -> str:
    """The timeline as the CLI prints it (another agent's private facts by their keys only)."""
    lines = vsp.timeline_lines([_redacted(e, agent) for e in events], state)
    return "\n".join(lines) + "\n" if lines else ""


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def unanswered(state: vs.CallState) -> str | None:
    """The caller's last words, if no agent has spoken since."""
    turns = state.turns
    if turns and turns[-1].role == "user":
        return turns[-1].text
    return None


def briefing(state: vs.CallState, agent: str, h: vs.HandedOff | None) -> Briefing:
    """What ``agent`` needs on taking the call through handoff ``h`` (None: a takeover)."""
    return Briefing(
        call_id=state.call_id,
        agent=agent,
        epoch=state.epoch,
        seq=state.seq,
        handoff_reason=h.reason if h is not None else None,
        summary=h.summary if h is not None else None,
        facts=dict(state.slots),
        pending_tools=[tool_view(t) for t in state.pending_tools()],
        unanswered=unanswered(state),
        last_turns=[turn_view(t) for t in list(state.turns)[-6:]],
    )


def briefing_text(b: Briefing, owner: str | None, from_agent: str | None) -> str:
    """The prompt that briefs an agent receiving a handoff."""
    lines = [f"You are taking over voice call {b.call_id!r}" + (f" from {from_agent!r}" if from_agent else "") + "."]
    if b.handoff_reason:
        lines.append(f"Why it was handed to you: {b.handoff_reason}.")
    if b.summary:
        lines += ["", "Summary of the call so far:", b.summary]
    if b.facts:
        lines += ["", "Facts gathered (current):"] + [f"- {k}: {json.dumps(v)}" for k, v in b.facts.items()]
    if b.pending_tools:
        lines += ["", "Tool calls still running (finish or cancel them; do not call them again):"]
        lines += [f"- {t.tool_call_id}: {t.name}({json.dumps(t.arguments)})" for t in b.pending_tools]
    if b.unanswered:
        lines += ["", f"The caller's last words, not answered yet: {b.unanswered!r}"]
    lines += [
        "",
        "Before you speak, read the conversation with get_context (it holds only what the caller actually heard).",
    ]
    if owner is not None and owner != b.agent:
        lines.append(f"The call is owned by {owner!r} until you redeem the handoff (redeem_handoff).")
    return "\n".join(lines)
