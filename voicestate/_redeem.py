"""Making an owner: create a call, fold a call in (from its snapshot where there is one), and
redeem its pending handoff or take it over (one conditional ``OwnerChanged`` append each)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ._backend import AppendResult, CallMeta
from ._codec import genesis
from ._errors import CallNotFound, IntegrityError, OwnershipError, PacketError, SeqConflict
from ._events import CallStarted, OwnerChanged
from ._handoff import after_resume, redeemable
from ._io import Flow
from ._owner import OwnerLog
from ._packet import HandoffPacket, TokenClaims
from ._snapshot import fold_from_snapshot


def create(owner: OwnerLog, meta: Mapping[str, Any] | None) -> Flow[None]:
    """Create the call with ``owner`` at epoch 1 (``CallStarted``); OwnershipError if it exists."""
    owner.epoch = 1
    owner._started = time.time()
    started = CallStarted(meta=dict(meta or {}), tenant=owner.store.config.tenant, agent=owner.agent)
    items = owner._prepare([started], internal=True)
    stored = owner._stage(items, 0, genesis(owner.call_id))
    owner._folder.tenant = owner.store.config.tenant  # for the update: the call's tenant
    res: AppendResult = yield from owner._tiers.append(owner.call_id, stored, 0, 1, None, owner._update([started]))
    if res.status != "ok":
        owner._folder.tenant = None
        raise OwnershipError(
            f"call {owner.call_id!r} already exists; join it with resume() (or takeover=True if its owner died)"
        )
    owner._confirm([items[0][0]], stored)  # the event as recorded: redacted


def fold_call(owner: OwnerLog, meta: CallMeta) -> Flow[None]:
    """Fold the call into ``owner``: from the deciding tier's snapshot and the events after it
    (chain-verified from the snapshot's chain value to the head), else from the whole log."""
    call_id = owner.call_id
    snap = yield from owner._tiers.snapshot(call_id, meta.seq)
    if snap is not None and 0 < snap.seq <= meta.seq:
        try:
            tail = yield from owner._tiers.load(call_id, meta, snap.seq + 1, snap.chain)
            folder = fold_from_snapshot(call_id, snap)
        except (IntegrityError, ValueError):
            pass  # a snapshot that does not fit the log is ignored: the log is the truth
        else:
            owner._folder = folder
            owner._base, owner._base_chain, owner._snapshot_seq = snap.seq, snap.chain, snap.seq
            owner._adopt(tail)
            return
    log = yield from owner._tiers.load(call_id, meta)
    owner._adopt(log)


def _chain_at(owner: OwnerLog, seq: int) -> Flow[bytes | None]:
    """The stored chain value at ``seq`` (from what the session holds, else one read)."""
    if seq == owner._base:
        return owner._base_chain
    if owner._base < seq <= owner._confirmed()[0]:
        return owner._log[seq - 1 - owner._base].chain
    if 0 < seq < owner._base:
        got = yield from owner._tiers.load_at(owner.call_id, seq)
        return None if got is None else got.chain
    return None


def redeem(
    owner: OwnerLog,
    packet: HandoffPacket | None,
    claims: TokenClaims | None,
    takeover: bool,
    from_epoch: int | None,
    force: bool = False,
) -> Flow[None]:
    """Load the call and make ``owner`` its owner: redeem its pending handoff (by packet,
    token or call id) or take it over; one conditional ``OwnerChanged`` append."""
    call_id, agent, config = owner.call_id, owner.agent, owner.store.config
    if config.require_packet and not takeover and packet is None and claims is None:
        raise OwnershipError(
            f"this store requires the signed packet or token to redeem a handoff (require_packet=True); "
            f"resume(call_id) of {call_id!r} is refused: pass the packet, its JSON or its vs1. token"
        )
    meta = yield from owner._tiers.meta(call_id)
    if meta is None:
        raise CallNotFound(f"no call {call_id!r} in {owner.store!r}")
    yield from fold_call(owner, meta)
    config.check_tenant(call_id, owner._folder.tenant)
    owner._started = meta.started_at or time.time()
    if packet is not None:
        chain = yield from _chain_at(owner, packet.seq)
        if chain != packet.chain:
            raise PacketError(
                "chain_mismatch",
                f"the store's log at seq {packet.seq} is not the one the packet covers; "
                "the packet is from another store or the call was rewritten",
            )
    wanted = packet.packet_id if packet is not None else (claims.packet_id if claims is not None else None)
    for _ in range(config.retries):
        st = owner._folder.snapshot()
        if st.ended:
            raise OwnershipError(
                f"call {call_id!r} has ended ({st.ended_reason or 'no reason given'}); it cannot be resumed"
            )
        packet_id: str | None
        lapsed_by: float | None = None
        if takeover:
            if from_epoch is not None and st.epoch != from_epoch:
                raise OwnershipError(
                    f"call {call_id!r} is at epoch {st.epoch} (owner {st.owner!r}), not {from_epoch}: "
                    "someone else took it over already"
                )
            now = time.time()
            if not force:
                if meta.lease_until > now:
                    raise OwnershipError(
                        f"call {call_id!r}: the lease of its owner {st.owner!r} is live (renewed "
                        f"{max(0.0, now - (meta.lease_until - config.lease)):.1f} s ago, runs out in "
                        f"{meta.lease_until - now:.1f} s); take over only a dead owner's call "
                        "(store.calls(stale=True) lists them), or pass force=True to depose it"
                    )
                lapsed_by = now
            packet_id = None
        else:
            packet_id = redeemable(st, agent, wanted, claims, owner._folder.fates, config.skew)
        change = OwnerChanged(owner=agent, epoch=st.epoch + 1, packet_id=packet_id, agent=agent)
        owner.epoch = st.epoch  # the condition: the epoch we read
        items = owner._prepare([change], internal=True)
        stored = owner._stage(items, st.seq, st.chain)
        res = yield from owner._tiers.append(
            call_id, stored, st.seq, st.epoch, st.chain, owner._update([change], lapsed_by)
        )
        if res.status == "ok":
            owner.epoch = change.epoch
            owner._confirm([change], stored)
            after_resume(owner._folder.snapshot(), packet, packet_id, st.epoch, config)
            return
        if res.meta is None:
            raise CallNotFound(f"call {call_id!r} was deleted")
        meta = res.meta
        yield from owner._catch_up(res.meta)
        if res.meta.epoch != st.epoch:
            now_st = owner._folder.snapshot()
            raise OwnershipError(
                f"call {call_id!r} changed hands while {agent!r} was resuming it "
                f"(owner now {now_st.owner!r}, epoch {now_st.epoch}); nothing was changed"
            )
    raise SeqConflict(f"call {call_id!r}: resume gave up after {config.retries} conflicts", expected=-1, actual=-1)
