"""Where a handoff packet or token stands: its signature, then the call's log.

One judgement serves ``store.verify`` and ``voicestate packet verify --store``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Literal

import attrs

from ._errors import PacketError
from ._events import CallEnded, CallStarted, Event, HandedOff, HandoffCancelled, OwnerChanged
from ._packet import DEFAULT_SKEW, HandoffPacket, TokenClaims

Verdict = Literal["valid", "redeemed", "replaced", "cancelled", "cleared", "ended", "expired", "invalid"]


@attrs.frozen(kw_only=True)
class PacketCheck:
    """What ``store.verify`` says of a packet or token.

    ``verdict`` is ``"valid"`` (genuine, pending, redeemable now by ``to_agent``),
    one of ``"redeemed"``, ``"replaced"``, ``"cancelled"``, ``"cleared"`` (a takeover
    came first), ``"ended"``, ``"expired"`` (genuine, but it can no longer be
    redeemed), or ``"invalid"`` (``reason`` says why: a ``PacketError`` reason, or
    ``"call_not_found"``). ``detail`` is one sentence saying what to do next.
    """

    verdict: Verdict
    detail: str
    reason: str | None = None
    call_id: str | None = None
    packet_id: str | None = None
    key_id: str | None = None
    from_agent: str | None = None
    to_agent: str | None = None
    kind: str | None = None
    expires_at: float | None = None
    offered_seq: int | None = None
    redeemed_by: str | None = None
    owner: str | None = None
    epoch: int | None = None
    history: str | None = None  # what the log says happened to the handoff, for a timeline

    @property
    def redeemable(self) -> bool:
        return self.verdict == "valid"


def detail(exc: Exception) -> str:
    """An error's message without the ``reason: `` a PacketError's message starts with."""
    text = str(exc)
    if isinstance(exc, PacketError) and text.startswith(exc.reason + ": "):
        return text[len(exc.reason) + 2 :]
    return text


def invalid(exc: PacketError | Exception, decoded: HandoffPacket | TokenClaims | None = None) -> PacketCheck:
    return PacketCheck(
        verdict="invalid",
        reason=exc.reason if isinstance(exc, PacketError) else "call_not_found",
        detail=detail(exc),
        call_id=decoded.call_id if decoded is not None else None,
        packet_id=decoded.packet_id if decoded is not None else None,
        key_id=decoded.key_id if decoded is not None else None,
    )


def _now_owner(events: Sequence[Event]) -> tuple[str | None, int]:
    owner, epoch = None, 1
    for ev in events:
        if isinstance(ev, CallStarted):
            owner = ev.agent
        elif isinstance(ev, OwnerChanged):
            owner, epoch = ev.owner, ev.epoch
        elif isinstance(ev, CallEnded):
            owner = None
    return owner, epoch


def utc(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def judge(
    decoded: HandoffPacket | TokenClaims,
    events: Sequence[Event],
    agent: str | None,
    where: str,
    now: float | None = None,
    skew: float = DEFAULT_SKEW,
) -> PacketCheck:
    """The verdict on a packet whose signature holds, from the call's log (``where`` names the store).

    Raises PacketError when the log does not hold this packet's handoff (``chain_mismatch``)
    or it is addressed to another agent than ``agent`` (``wrong_target``).
    """
    now = time.time() if now is None else now
    pid = decoded.packet_id
    offered = next((e for e in events if isinstance(e, HandedOff) and e.packet_id == pid), None)
    if offered is None:
        raise PacketError(
            "chain_mismatch",
            f"call {decoded.call_id!r} in {where} has no handoff with packet id {pid}: "
            "the packet is from another store, or the call was deleted and opened again",
        )
    if isinstance(decoded, HandoffPacket):
        stored = events[decoded.seq - 1] if 0 < decoded.seq <= len(events) else None
        if stored is None or stored.chain != decoded.chain:
            raise PacketError(
                "chain_mismatch",
                f"the store's log at seq {decoded.seq} is not the one the packet covers; "
                "the packet is from another store or the call was rewritten",
            )
    if isinstance(decoded, TokenClaims) and int(decoded.expires_at) != math.ceil(offered.expires_at):
        raise PacketError("bad_signature", "the token does not match the handoff stored for it")
    if agent and offered.to_agent != agent:
        raise PacketError("wrong_target", f"addressed to {offered.to_agent!r}, not {agent!r}")
    owner, epoch = _now_owner(events)
    kid, sender, target = decoded.key_id, offered.agent, offered.to_agent
    base = PacketCheck(
        verdict="valid",
        detail="",
        call_id=decoded.call_id,
        packet_id=pid,
        key_id=kid,
        from_agent=sender,
        to_agent=target,
        kind=offered.kind,
        expires_at=offered.expires_at,
        offered_seq=offered.seq,
        owner=owner,
        epoch=epoch,
    )
    genuine = f"genuine (signed with key {kid!r})"
    for ev in events:
        if (ev.seq or 0) <= (offered.seq or 0):
            continue
        at = f"seq {ev.seq}, {utc(ev.at)}"
        if isinstance(ev, OwnerChanged) and ev.packet_id == pid:
            return attrs.evolve(
                base,
                verdict="redeemed",
                redeemed_by=ev.owner,
                history=f"redeemed by {ev.owner!r} at epoch {ev.epoch} ({at})",
                detail=f"{genuine}, redeemed by {ev.owner!r} at epoch {ev.epoch}; it cannot be redeemed again",
            )
        if isinstance(ev, OwnerChanged):
            return attrs.evolve(
                base,
                verdict="cleared",
                history=f"cleared when {ev.owner!r} took the call over at epoch {ev.epoch} ({at})",
                detail=f"{genuine}, but {ev.owner!r} took the call over before it was redeemed",
            )
        if isinstance(ev, HandedOff):
            return attrs.evolve(
                base,
                verdict="replaced",
                history=f"replaced by another handoff ({ev.kind} to {ev.to_agent!r}, packet {ev.packet_id}, "
                f"{at}) before it was redeemed",
                detail=f"{genuine}, but a later handoff to {ev.to_agent!r} replaced it",
            )
        if isinstance(ev, HandoffCancelled) and ev.packet_id == pid:
            return attrs.evolve(
                base,
                verdict="cancelled",
                history=f"withdrawn by {ev.agent or sender!r} ({at})",
                detail=f"{genuine}, but {sender!r} withdrew it; ask for a new handoff",
            )
        if isinstance(ev, CallEnded):
            reason = f": {ev.reason}" if ev.reason else ""
            return attrs.evolve(
                base,
                verdict="ended",
                history=f"the call ended ({at}{reason}) before it was redeemed",
                detail=f"{genuine}, but the call ended before it was redeemed",
            )
    left = offered.expires_at - now
    if left < -skew:
        return attrs.evolve(
            base,
            verdict="expired",
            history=f"still offered to {target!r}, but it expired {-left:.0f} s ago unredeemed",
            detail=f"{genuine}, expired {-left:.0f} s ago without being redeemed; "
            f"{sender!r} still owns the call: ask for a new handoff",
        )
    return attrs.evolve(
        base,
        history=f"pending, redeemable by {target!r} (offered by {sender!r} at seq {offered.seq})",
        detail=f"signed with key {kid!r}, expires in {max(left, 0):.0f} s",
    )
