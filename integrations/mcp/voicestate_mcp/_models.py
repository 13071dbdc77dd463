"""The tools' typed results: pydantic models, so every result carries structured content and
its JSON schema is in the tool list (a bare dict would give neither)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

import voicestate as vs


class CallSummary(BaseModel):
    """One call, as the store's metadata lists it."""

    call_id: str
    status: Literal["active", "ended"]
    owner: str | None = Field(description="the agent that owns the call now (None once ended)")
    epoch: int = Field(description="ownership epoch: +1 at every redemption or takeover")
    seq: int = Field(description="events stored so far")
    started_at: float = Field(description="UTC seconds")
    last_active_at: float = Field(description="UTC seconds of the last write")
    lease_until: float | None = Field(description="when the owner's lease runs out (UTC seconds)")
    stale: bool = Field(description="active, but the owner's lease ran out: the owner is presumed dead")
    pending_to: str | None = Field(description="the agent a pending handoff is addressed to")

    @classmethod
    def of(cls, info: vs.CallInfo, now: float) -> CallSummary:
        lease = info.lease_until or None  # 0: no lease (an ended call)
        return cls(
            call_id=info.call_id,
            status=info.status,
            owner=info.owner,
            epoch=info.epoch,
            seq=info.seq,
            started_at=info.started_at,
            last_active_at=info.last_active_at,
            lease_until=lease,
            stale=info.status == "active" and lease is not None and lease < now,
            pending_to=info.pending_to,
        )


class CallList(BaseModel):
    calls: list[CallSummary]
    next_after: str | None = Field(description="pass as `after` for the next page; None: this was the last page")


class TurnView(BaseModel):
    seq: int
    role: Literal["user", "agent"]
    agent: str | None = Field(description="the agent who spoke an agent turn")
    text: str = Field(description="what was generated or said, in full")
    interrupted: bool
    heard: str | None = Field(description="for an interrupted agent turn: the part the caller heard")
    heard_ms: int | None
    at: float


class ToolView(BaseModel):
    tool_call_id: str
    name: str
    arguments: dict[str, Any]
    status: Literal["pending", "ok", "error", "cancelled"]
    result: Any = None
    error: str | None = None
    agent: str | None = Field(description="the agent that called it")
    seq: int


class HandoffView(BaseModel):
    packet_id: str
    from_agent: str | None
    to_agent: str
    kind: Literal["transfer", "escalate", "persona", "return"]
    reason: str | None
    summary: str | None
    expires_at: float
    seq: int


class NoteView(BaseModel):
    seq: int
    agent: str | None
    text: str
    at: float


class CallView(BaseModel):
    """A call's state: the fold of its log."""

    call_id: str
    tenant: str | None
    status: Literal["active", "ended"]
    owner: str | None
    epoch: int
    seq: int
    meta: dict[str, Any]
    slots: dict[str, Any] = Field(description="the call's facts, visible to every agent")
    own_slots: dict[str, Any] = Field(description="this server's agent's private facts (others' are never shown)")
    turns_total: int
    turns: list[TurnView] = Field(description="the last `last_turns` turns")
    pending_tools: list[ToolView] = Field(description="tool calls with no result yet: someone must finish them")
    tools: list[ToolView] = Field(description="every tool call, in call order")
    pending_handoff: HandoffView | None
    handoffs: list[HandoffView]
    notes: list[NoteView]
    ended_reason: str | None
    held_by_this_server: bool = Field(description="this server holds the owner's session (it can write as owner)")


class ContextView(BaseModel):
    """A call's context rendered for an agent, as JSON."""

    call_id: str
    seq: int = Field(description="the context covers events 1..seq")
    format: str
    agent: str | None = Field(description="the agent the context is rendered for")
    context: list[Any] | dict[str, Any] = Field(
        description='the rendered context: for "openai", a list of chat messages ({role, content, ...})'
    )


class TimelineEntry(BaseModel):
    seq: int
    at: float = Field(description="the writer's UTC clock, seconds")
    agent: str | None = Field(description="the writer; None for a write from outside the owner")
    type: str = Field(description="the event type, e.g. UserSpoke, ToolCalled, HandedOff")
    who: str = Field(description="caller, an agent's name, or (outside)")
    what: str = Field(description="says, barges in, tool call, handoff, owner, ...")
    detail: list[str]
    event: dict[str, Any] = Field(description="every field of the event")


class Timeline(BaseModel):
    call_id: str
    seq: int = Field(description="the call's last seq")
    entries: list[TimelineEntry]
    next_after: int | None = Field(description="pass as `after` for the next page; None: this is the end")


class Written(BaseModel):
    """A write that was stored."""

    call_id: str
    seq: int = Field(description="the stored seq of the (last) event written")
    status: Literal["active", "ended"]
    owner: str | None


class ToolCallWritten(BaseModel):
    """A tool call recorded: its id is what deliver_tool_result takes."""

    call_id: str
    tool_call_id: str
    seq: int
    status: Literal["active", "ended"]
    owner: str | None


class ToolResultWritten(BaseModel):
    call_id: str
    tool_call_id: str
    seq: int
    status: Literal["pending", "ok", "error", "cancelled"] = Field(description="the tool call's status now")
    accepted: bool = Field(description="False: the tool call already had a result (the first result wins)")


class PacketVerdict(BaseModel):
    """Where a packet or token stands (voicestate's store.verify), without redeeming it."""

    verdict: Literal["valid", "redeemed", "replaced", "cancelled", "cleared", "ended", "expired", "invalid"]
    redeemable: bool
    reason: str | None = Field(description="why it is invalid: malformed, bad_signature, unknown_key, ...")
    detail: str = Field(description="what it means and what to do next")
    call_id: str | None
    packet_id: str | None
    from_agent: str | None
    to_agent: str | None
    kind: str | None
    expires_at: float | None
    redeemed_by: str | None
    owner: str | None = Field(description="who owns the call now")
    epoch: int | None

    @classmethod
    def of(cls, check: vs.PacketCheck) -> PacketVerdict:
        return cls(
            verdict=check.verdict,
            redeemable=check.redeemable,
            reason=check.reason,
            detail=check.detail,
            call_id=check.call_id,
            packet_id=check.packet_id,
            from_agent=check.from_agent,
            to_agent=check.to_agent,
            kind=check.kind,
            expires_at=check.expires_at,
            redeemed_by=check.redeemed_by,
            owner=check.owner,
            epoch=check.epoch,
        )


class Briefing(BaseModel):
    """What an agent needs on taking a call: the result of redeem_handoff and take_over_call."""

    call_id: str
    agent: str
    epoch: int
    seq: int
    handoff_reason: str | None
    summary: str | None = Field(description="the handoff summary written for this agent")
    facts: dict[str, Any]
    pending_tools: list[ToolView]
    unanswered: str | None = Field(description="the caller's last words if no agent answered them yet")
    last_turns: list[TurnView]


class HandoffOffered(BaseModel):
    call_id: str
    packet_id: str
    token: str | None = Field(
        description="the signed vs1. token: give it to the receiver (a SIP X- header, a URL); None when the "
        "call id is too long for a token's 256 characters"
    )
    packet: str = Field(description="the signed packet's JSON: redeems the handoff as well as the token")
    to_agent: str
    kind: str
    expires_at: float
    seq: int


class Released(BaseModel):
    call_id: str
    released: bool = Field(description="False: this server held no session for the call")
    seq: int | None
    detail: str
