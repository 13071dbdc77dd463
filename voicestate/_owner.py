"""The owner's side of a call: its local log, its outbox of ``record_nowait``
events, and the flows that write them (append, catch up, flush, hand off,
cancel, end), plus the two that make an owner: create and redeem.

Flows are generators (see ``_io``): written once, driven sync or async.
``Session`` builds its public twins on :class:`OwnerLog`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._backend import AppendResult, CallMeta, StoredEvent
from ._checks import Item, prepare
from ._codec import chain_next, decode_event, genesis
from ._errors import CallNotFound, FencedError, IntegrityError, OwnershipError, SeqConflict
from ._events import CallEnded, CallStarted, Event, HandedOff, HandoffCancelled, OwnerChanged
from ._handoff import after_handoff, after_resume, prepare_handoff, redeemable
from ._io import Flow
from ._memory import MemoryBackend
from ._packet import HandoffPacket, TokenClaims, check_chain_at, packet_for
from ._state import CallState, Folder

if TYPE_CHECKING:
    from ._store import Store


class OwnerLog:
    """One agent's copy of a call's log, folded, and the writes it makes as the owner."""

    def __init__(self, store: Store, call_id: str, agent: str) -> None:
        self.store = store
        self.call_id = call_id
        self.agent = agent
        self.epoch = 0
        # Options are read from ``store.config`` when used, never copied: replacing the
        # store's config (attrs.evolve) applies to the sessions already open.
        self._tiers = store.tiers
        self._folder = Folder(call_id, genesis(call_id))
        self._log: list[StoredEvent] = []  # confirmed: durable in every through tier
        self._ids: set[str] = set()  # ids of confirmed events: a retry skips the semantic checks
        # record_nowait: events staged and folded at once, durable later, in order
        self._queue: list[Item] = []
        self._staged: list[StoredEvent] = []
        self._mark: CallState | None = None  # state before the first queued event
        self._error: BaseException | None = None
        self._busy = False
        self._alock: asyncio.Lock | None = None
        self._drainer: asyncio.Task[None] | None = None
        # the inline fast path: a lone in-process tier
        tiers = self._tiers
        only = tiers.deciding.backend
        self._inline = only if (not tiers.hot and not tiers.behind and isinstance(only, MemoryBackend)) else None
        self._unsettled = 0  # trailing _log entries appended unchained (chain == PENDING)

    @property
    def owner(self) -> bool:
        """Whether this session still owns the call, as far as it knows."""
        return self._folder.owner == self.agent and self._folder.epoch == self.epoch

    # -- the local log -------------------------------------------------------------

    def _settle(self) -> None:
        """Give the events appended unchained their chain values (the store's, when it has them)."""
        n = self._unsettled
        if not n:
            return
        log = self._log
        first = len(log) - n  # index of the first unchained entry
        got = self._inline.chained(self.call_id, first + 1, len(log)) if self._inline is not None else []
        if len(got) == n and [e.id for e in got] == [e.id for e in log[first:]]:
            log[first:] = got
        else:  # the call was deleted or replaced meanwhile: chain this session's own copy
            head = log[first - 1].chain if first else genesis(self.call_id)
            for i in range(first, len(log)):
                head = chain_next(head, log[i].data)
                log[i] = log[i]._replace(chain=head)
        self._unsettled = 0
        assert not self._queue and self._folder.seq == len(log)
        self._folder.chain = log[-1].chain

    def _adopt(self, log: Sequence[StoredEvent]) -> None:
        folder = self._folder
        for se in log:
            ev = decode_event(se.data, se.seq, se.chain)
            folder.apply(ev, se.seq, se.chain, ev.agent)
        self._log.extend(log)
        self._ids.update(se.id for se in log)

    def _prepare(self, events: Sequence[Event], *, internal: bool = False) -> list[Item]:
        return prepare(
            events, folder=self._folder, known=self._ids, config=self.store.config, agent=self.agent, internal=internal
        )

    def _stage(self, items: Iterable[Item], seq: int, head: bytes) -> list[StoredEvent]:
        out = []
        epoch = self.epoch
        for ev, data in items:
            seq += 1
            head = chain_next(head, data)
            ev_epoch = ev.epoch if isinstance(ev, OwnerChanged) else epoch
            out.append(StoredEvent(seq, ev.id, data, head, ev_epoch, isinstance(ev, CallEnded)))
        return out

    def _stage_queue(self) -> None:
        folder = self._folder
        self._staged = self._stage(self._queue, folder.seq, folder.chain)
        agent = self.agent
        for (ev, _), se in zip(self._queue, self._staged, strict=True):
            folder.apply(ev, se.seq, se.chain, ev.agent or agent)

    def _confirm(self, events: Sequence[Event], stored: list[StoredEvent]) -> None:
        folder = self._folder
        agent = self.agent
        for ev, se in zip(events, stored, strict=True):
            folder.apply(ev, se.seq, se.chain, ev.agent or agent)
        self._log.extend(stored)
        self._ids.update(se.id for se in stored)

    def _catch_up(self, meta: CallMeta) -> Flow[None]:
        """Fold in events others appended after our confirmed seq, re-staging queued ones after them."""
        foreign: list[StoredEvent] = []
        mine = len(self._log)
        head = self._log[-1].chain if self._log else genesis(self.call_id)
        replaced = meta.seq < mine or (meta.seq == mine and meta.head != head)
        if meta.seq > mine:
            try:
                foreign = yield from self._tiers.load(self.call_id, meta, mine + 1, head)
            except IntegrityError:
                replaced = True  # what follows our seq does not chain onto our log
        if replaced:
            raise FencedError(
                f"call {self.call_id!r} was deleted and created anew since {self.agent!r} joined it; "
                "this session's writes are refused (resume the new call instead)"
            )
        # No await from here on, so a record_nowait cannot slip in between.
        if self._mark is not None:
            self._folder.rollback(self._mark)
            self._mark = None
        self._adopt(foreign)
        if self._queue:
            self._mark = self._folder.snapshot()
            self._stage_queue()

    def _on_conflict(self, meta: CallMeta | None) -> Flow[None]:
        """After a refused append: fold in what others appended; raise if the call is gone or
        this owner was fenced (else the caller retries at the new seq)."""
        if meta is None:
            raise CallNotFound(f"call {self.call_id!r} was deleted")
        yield from self._catch_up(meta)
        if meta.epoch != self.epoch or meta.ended:
            raise self._fenced(meta)

    def _fenced(self, meta: CallMeta) -> FencedError:
        if meta.ended:
            return FencedError(f"call {self.call_id!r} has ended; nothing more can be recorded as its owner")
        owner = self._folder.owner
        return FencedError(
            f"{self.agent!r} no longer owns call {self.call_id!r} (epoch {self.epoch}; it is now "
            f"{meta.epoch}, owner {owner!r}); this write was not stored"
        )

    # -- the write flows -------------------------------------------------------------

    def _write(self, items: list[Item]) -> Flow[int]:
        """Append ``items`` as the owner; fold them once the deciding tier accepted them."""
        if self._queue:  # behind queued record_nowait events: keep the order
            return (yield from self._enqueue_and_flush(items))
        retries = self.store.config.retries
        last_id = items[-1][0].id
        last_seq: int | None = None
        for _ in range(retries):
            folder = self._folder
            stored = self._stage(items, folder.seq, folder.chain)
            res: AppendResult = yield from self._tiers.append(
                self.call_id, stored, folder.seq, self.epoch, folder.chain
            )
            if res.status == "ok":
                self._confirm([ev for ev, _ in items], stored)
                return stored[-1].seq if last_seq is None else last_seq
            if res.status == "duplicate":
                last_seq = res.duplicates.get(last_id, last_seq)  # the last event was stored already: its seq
                items = [it for it in items if it[0].id not in res.duplicates]
                if not items:  # all stored already, the last one included
                    meta = yield from self._tiers.meta(self.call_id)
                    if meta is not None and meta.seq > folder.seq:
                        yield from self._catch_up(meta)
                    assert last_seq is not None
                    return last_seq
                continue
            yield from self._on_conflict(res.meta)
        raise SeqConflict(
            f"call {self.call_id!r}: gave up after {retries} conflicting writes", expected=self._folder.seq, actual=-1
        )

    def _enqueue(self, items: list[Item]) -> None:
        self._settle()
        if not self._queue:
            self._mark = self._folder.snapshot()
        start = len(self._queue)
        self._queue.extend(items)
        tail = self._staged[-1] if self._staged else None
        seq, head = (tail.seq, tail.chain) if tail else (self._folder.seq, self._folder.chain)
        new = self._stage(items, seq, head)
        self._staged.extend(new)
        agent = self.agent
        for (ev, _), se in zip(self._queue[start:], new, strict=True):
            self._folder.apply(ev, se.seq, se.chain, ev.agent or agent)

    def _enqueue_and_flush(self, items: list[Item]) -> Flow[int]:
        self._enqueue(items)
        target = items[-1][0].id
        seq = yield from self._flush_queue(target)
        return seq

    def _flush_queue(self, target: str | None = None) -> Flow[int]:
        """Make every queued event durable, in order. Returns the stored seq of ``target``."""
        found = 0
        conflicts = 0
        retries = self.store.config.retries
        while self._queue:
            # Copies: record_nowait may queue more while this append is in flight.
            n = len(self._queue)
            stored = self._staged[:n]
            events = [ev for ev, _ in self._queue[:n]]
            head = self._log[-1].chain if self._log else genesis(self.call_id)
            res = yield from self._tiers.append(self.call_id, stored, stored[0].seq - 1, self.epoch, head)
            if res.status == "ok":
                for ev, se in zip(events, stored, strict=True):
                    if ev.id == target:
                        found = se.seq
                self._log.extend(stored)
                self._ids.update(se.id for se in stored)
                self._error = None
                rest, rest_staged = self._queue[n:], self._staged[n:]
                if not rest:
                    self._queue, self._staged, self._mark = [], [], None
                    return found
                # Events queued meanwhile stay staged after these; move the mark past the batch.
                assert self._mark is not None
                folder = self._folder
                folder.rollback(self._mark)
                for ev, se in zip(events, stored, strict=True):
                    folder.apply(ev, se.seq, se.chain, ev.agent or self.agent)
                self._mark = folder.snapshot()
                for (ev, _), se in zip(rest, rest_staged, strict=True):
                    folder.apply(ev, se.seq, se.chain, ev.agent or self.agent)
                self._queue, self._staged = rest, rest_staged
                continue
            conflicts += 1
            if conflicts > retries:
                raise SeqConflict(
                    f"call {self.call_id!r}: gave up after {retries} conflicting writes",
                    expected=stored[0].seq - 1,
                    actual=-1 if res.meta is None else res.meta.seq,
                )
            if res.status == "duplicate":
                if target is not None and target in res.duplicates:
                    found = res.duplicates[target]
                self._queue = [it for it in self._queue if it[0].id not in res.duplicates]
                meta = yield from self._tiers.meta(self.call_id)
                if meta is None:
                    raise CallNotFound(f"call {self.call_id!r} was deleted")
                yield from self._catch_up(meta)
                continue
            yield from self._on_conflict(res.meta)
        return found

    def _refresh(self) -> Flow[CallState]:
        meta = yield from self._tiers.meta(self.call_id)
        if meta is None:
            raise CallNotFound(f"call {self.call_id!r} no longer exists")
        if meta.seq > len(self._log):
            yield from self._catch_up(meta)
        return self._folder.snapshot()

    def _flush(self, all_tiers: bool) -> Flow[None]:
        if self._queue:
            yield from self._flush_queue()
        yield from self._tiers.barrier(self.call_id, all_tiers, self.store.config.barrier_timeout)

    def _handoff(self, ev: HandedOff, inline: bool) -> Flow[HandoffPacket]:
        if self._queue:
            yield from self._flush_queue()
        if not self.owner:
            raise FencedError(f"{self.agent!r} does not own call {self.call_id!r}; only the owner can hand it off")
        folder = self._folder
        ev = prepare_handoff(folder.snapshot(), ev, epoch=self.epoch, config=self.store.config)
        seq = yield from self._write(self._prepare([ev], internal=True))
        yield from self._tiers.barrier(self.call_id, False, self.store.config.barrier_timeout)
        stored = self._log[seq - 1]
        state = folder.snapshot()
        events = tuple(e.data for e in self._log[:seq]) if inline else None
        packet = packet_for(state, folder.handoffs[-1], stored.epoch, self.store.config.keys, events)
        after_handoff(state, packet)
        return packet

    def _cancel(self) -> Flow[bool]:
        if self._queue:
            yield from self._flush_queue()
        pending = self._folder.pending_handoff
        if pending is None:
            return False
        yield from self._write(
            self._prepare([HandoffCancelled(packet_id=pending.packet_id, agent=self.agent)], internal=True)
        )
        return True

    def _end(self, reason: str | None) -> Flow[int]:
        if self._queue:
            yield from self._flush_queue()
        seq = yield from self._write(self._prepare([CallEnded(reason=reason, agent=self.agent)]))
        yield from self._tiers.barrier(self.call_id, True, self.store.config.barrier_timeout)
        return seq


# -- making an owner -------------------------------------------------------------


def create(owner: OwnerLog, meta: Mapping[str, Any] | None) -> Flow[None]:
    """Create the call with ``owner`` at epoch 1 (``CallStarted``); OwnershipError if it exists."""
    owner.epoch = 1
    started = CallStarted(meta=dict(meta or {}), tenant=owner.store.config.tenant, agent=owner.agent)
    items = owner._prepare([started], internal=True)
    stored = owner._stage(items, 0, genesis(owner.call_id))
    res: AppendResult = yield from owner._tiers.append(owner.call_id, stored, 0, 1, None)
    if res.status != "ok":
        raise OwnershipError(
            f"call {owner.call_id!r} already exists; join it with resume() (or takeover=True if its owner died)"
        )
    owner._confirm([items[0][0]], stored)  # the event as recorded: redacted


def redeem(
    owner: OwnerLog,
    packet: HandoffPacket | None,
    claims: TokenClaims | None,
    takeover: bool,
    from_epoch: int | None,
) -> Flow[None]:
    """Load the call and make ``owner`` its owner: redeem its pending handoff (by packet,
    token or call id) or take it over; one conditional ``OwnerChanged`` append."""
    call_id, agent, config = owner.call_id, owner.agent, owner.store.config
    meta = yield from owner._tiers.meta(call_id)
    if meta is None:
        raise CallNotFound(f"no call {call_id!r} in {owner.store!r}")
    log = yield from owner._tiers.load(call_id, meta)
    owner._adopt(log)
    config.check_tenant(call_id, owner._folder.tenant)
    if packet is not None:
        check_chain_at(packet, log)
    wanted = packet.packet_id if packet is not None else (claims.packet_id if claims is not None else None)
    for _ in range(config.retries):
        st = owner._folder.snapshot()
        if st.ended:
            raise OwnershipError(
                f"call {call_id!r} has ended ({st.ended_reason or 'no reason given'}); it cannot be resumed"
            )
        packet_id: str | None
        if takeover:
            if from_epoch is not None and st.epoch != from_epoch:
                raise OwnershipError(
                    f"call {call_id!r} is at epoch {st.epoch} (owner {st.owner!r}), not {from_epoch}: "
                    "someone else took it over already"
                )
            packet_id = None
        else:
            packet_id = redeemable(st, agent, wanted, claims, owner._folder.fates, config.skew)
        change = OwnerChanged(owner=agent, epoch=st.epoch + 1, packet_id=packet_id, agent=agent)
        owner.epoch = st.epoch  # the condition: the epoch we read
        items = owner._prepare([change], internal=True)
        stored = owner._stage(items, st.seq, st.chain)
        res = yield from owner._tiers.append(call_id, stored, st.seq, st.epoch, st.chain)
        if res.status == "ok":
            owner.epoch = change.epoch
            owner._confirm([change], stored)
            after_resume(owner._folder.snapshot(), owner._log, packet, packet_id, config)
            return
        if res.meta is None:
            raise CallNotFound(f"call {call_id!r} was deleted")
        yield from owner._catch_up(res.meta)
        if res.meta.epoch != st.epoch:
            now = owner._folder.snapshot()
            raise OwnershipError(
                f"call {call_id!r} changed hands while {agent!r} was resuming it "
                f"(owner now {now.owner!r}, epoch {now.epoch}); nothing was changed"
            )
    raise SeqConflict(f"call {call_id!r}: resume gave up after {config.retries} conflicts", expected=-1, actual=-1)
