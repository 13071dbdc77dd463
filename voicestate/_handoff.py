"""Handoff assembly: the HandedOff event, its summary and ``prepare_handoff``
hooks, the signed packet, what a packet or token redeems, and the observers."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import attrs

from ._config import StoreConfig
from ._errors import InvalidArgument, InvalidEvent, OwnershipError, PacketError
from ._events import HANDOFF_KINDS, HandedOff
from ._ids import check_call_id, check_name, new_packet_id
from ._packet import TOKEN_MAX_EXPIRY, HandoffPacket, TokenClaims, decode_token, packet_for, unsigned_packet
from ._plugins import get_plugin_manager, notify
from ._state import CallState

ResumeTarget = HandoffPacket | bytes | bytearray | memoryview | str
"""What ``resume`` takes: a packet, its msgpack bytes, its JSON, its token, or a call id."""


def handoff_event(
    agent: str, to: str, reason: str | None, kind: str, summary: str | None, ttl: float | None, config: StoreConfig
) -> HandedOff:
    """The ``HandedOff`` a handoff appends (before its summary and hooks)."""
    check_name(to, "handoff target")
    if not isinstance(kind, str) or kind not in HANDOFF_KINDS:
        raise InvalidEvent(f"handoff kind {kind!r:.60}: use one of {sorted(HANDOFF_KINDS)}")
    ttl = config.packet_ttl if ttl is None else ttl
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not 0 < ttl < math.inf:
        raise InvalidEvent(f"handoff ttl must be positive seconds (an int or a float), got {ttl!r:.60}")
    now = time.time()
    if ttl > TOKEN_MAX_EXPIRY - now:  # (not now + ttl: a huge int would overflow the float)
        raise InvalidEvent(
            f"handoff ttl {ttl!r:.40} puts the expiry past {TOKEN_MAX_EXPIRY} (2106), which no token can carry; "
            "pass a ttl of seconds to hours"
        )
    return HandedOff(
        to_agent=to,
        kind=kind,
        reason=reason,
        summary=summary,
        packet_id=new_packet_id(),
        expires_at=now + ttl,
        at=now,
        agent=agent,
    )


def prepare_handoff(state: CallState, ev: HandedOff, *, epoch: int, config: StoreConfig) -> HandedOff:
    """The summary (``summarize_call``) and the ``prepare_handoff`` hooks: add or veto."""
    hook = get_plugin_manager().hook
    if ev.summary is None:
        summary = hook.summarize_call(state=state, to_agent=ev.to_agent)
        if summary is not None:
            ev = attrs.evolve(ev, summary=str(summary))
    draft = unsigned_packet(
        ev,
        call_id=state.call_id,
        tenant=state.tenant,
        seq=state.seq + 1,
        epoch=epoch,
        chain=b"",  # not recorded yet
        key_id=config.keys.current,
    )
    changes: dict[str, Any] = {}
    data = dict(ev.data)
    for update in reversed(hook.prepare_handoff(state=state, packet=draft)):  # oldest plugin first
        if not update:
            continue
        unknown = set(update) - {"summary", "reason", "data"}
        if unknown:
            raise InvalidEvent(f"prepare_handoff may set summary, reason and data; not {sorted(unknown)}")
        data.update(update.get("data") or {})
        changes.update({k: v for k, v in update.items() if k != "data"})
    return attrs.evolve(ev, data=data, **changes) if (changes or data != ev.data) else ev


def after_handoff(state: CallState, packet: HandoffPacket) -> None:
    notify("after_handoff", state=state, packet=packet)


def classify(target: ResumeTarget, config: StoreConfig) -> tuple[str, HandoffPacket | None, TokenClaims | None]:
    """What ``resume`` was given, told apart without guessing, and verified."""
    if isinstance(target, HandoffPacket):
        target.verify(config.keys, skew=config.skew)
        return target.call_id, target, None
    if isinstance(target, (bytes, bytearray, memoryview)):
        packet = HandoffPacket.from_bytes(bytes(target), config.keys, skew=config.skew)
        return packet.call_id, packet, None
    if isinstance(target, str):
        if target.lstrip().startswith("{"):
            packet = HandoffPacket.from_json(target, config.keys, skew=config.skew)
            return packet.call_id, packet, None
        if target.strip().startswith("vs1."):  # a token read from a header may carry spaces or CRLF
            claims = decode_token(target, config.keys, skew=config.skew)
            return claims.call_id, None, claims
        return check_call_id(target), None, None
    raise InvalidArgument(
        f"resume() takes a HandoffPacket, bytes, a JSON or token string, or a call id; not {type(target).__name__}"
    )


def redeemable(
    st: CallState,
    agent: str,
    wanted: str | None,
    claims: TokenClaims | None,
    fates: Mapping[str, str],
    skew: float,
) -> str:
    """The packet id ``agent`` may redeem now, or raise why not."""
    pending = st.pending_handoff
    if wanted is not None:
        offered = next((h for h in reversed(st.handoffs) if h.packet_id == wanted), None)
        if offered is None:
            raise OwnershipError(f"call {st.call_id!r} holds no handoff with packet id {wanted}")
        if claims is not None and int(claims.expires_at) != int(-(-offered.expires_at // 1)):
            raise PacketError("bad_signature", "the token does not match the handoff stored for it")
        if offered.to_agent != agent:
            raise PacketError("wrong_target", f"the packet is addressed to {offered.to_agent!r}, not {agent!r}")
        if pending is None or pending.packet_id != wanted:
            fate = fates.get(wanted, "not pending")
            raise OwnershipError(f"packet {wanted} cannot be redeemed: it was {fate}")
    else:
        if pending is None:
            raise OwnershipError(
                f"call {st.call_id!r} has no pending handoff for {agent!r} (owner {st.owner!r}); "
                "ask the owner to hand off, or pass takeover=True if the owner died"
            )
        if pending.to_agent != agent:
            raise OwnershipError(
                f"the pending handoff of call {st.call_id!r} is for {pending.to_agent!r}, not {agent!r}"
            )
    if time.time() > pending.expires_at + skew:
        raise OwnershipError(
            f"the handoff to {pending.to_agent!r} expired {time.time() - pending.expires_at:.1f} s ago; "
            f"{st.owner!r} is still in charge and must hand off again"
        )
    return pending.packet_id


def after_resume(
    state: CallState,
    packet: HandoffPacket | None,
    packet_id: str | None,
    epoch: int,
    config: StoreConfig,
) -> None:
    """Tell the ``after_resume`` observers; a packet redeemed by token or call id is rebuilt
    from the state (``epoch``: the sender's, under which the handoff was offered)."""
    if packet is None and packet_id is not None:
        handed = next(h for h in reversed(state.handoffs) if h.packet_id == packet_id)
        packet = packet_for(state, handed, epoch, config.keys)
    notify("after_resume", state=state, packet=packet)
