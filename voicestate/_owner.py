"""The owner's side of a call: its local log, its outbox of ``record_nowait``
events, and the flows that write them (append, catch up, flush, hand off,
cancel, end, renew the lease). Making an owner (create, redeem, take over) is
in ``_redeem``.

Flows are generators (see ``_io``): written once, driven sync or async.
``Session`` builds its public twins on :class:`OwnerLog`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ._backend import AppendResult, CallMeta, MetaUpdate, StoredEvent
from ._checks import Item, prepare
from ._codec import chain_next, decode_stored, genesis
from ._errors import CallNotFound, FencedError, IntegrityError, SeqConflict
from ._events import CallEnded, Event, HandedOff, HandoffCancelled, OwnerChanged
from ._handoff import after_handoff, prepare_handoff
from ._io import Flow
from ._memory import MemoryBackend
from ._packet import HandoffPacket, packet_for
from ._snapshot import snapshot_of
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
        # Confirmed events (durable in every through tier) after seq ``_base``: a session
        # resumed from a snapshot holds only the events after it (``_base_chain`` is its chain).
        self._log: list[StoredEvent] = []
        self._base = 0
        self._base_chain = self._folder.chain
        self._snapshot_seq = 0  # seq of the last snapshot this session wrote or started from
        self._started = 0.0  # when the call started (for max_call_age)
        self._gone = False  # the call was deleted or created anew under this session
        self._renewed_at = 0.0  # time.monotonic() of the last write that renewed this owner's lease
        self.discarded: list[Event] = []  # queued events dropped when this session was fenced
        self._ids: set[str] = set()  # ids of confirmed events: a retry skips the semantic checks
        # record_nowait: events staged and folded at once, durable later, in order
        self._queue: list[Item] = []
        self._staged: list[StoredEvent] = []
        self._mark: CallState | None = None  # state before the first queued event
        self._error: BaseException | None = None
        self._busy = False
        self._alock: asyncio.Lock | None = None
        # sync calls from several threads, one at a time; reentrant: a hook run inline by record()
        # may read session.state, which takes it too
        self._sync_lock = threading.RLock()
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

    @property
    def fenced(self) -> bool:
        """True once this session can no longer write as the owner: the epoch moved on, the
        call ended, or it was deleted. A fenced session is read-only; its state is the store's."""
        f = self._folder
        return self._gone or (self.epoch > 0 and (f.epoch != self.epoch or f.status == "ended"))

    def _confirmed(self) -> tuple[int, bytes]:
        """Seq and chain value of the last confirmed event."""
        log = self._log
        return (self._base + len(log), log[-1].chain) if log else (self._base, self._base_chain)

    def _update(self, events: Iterable[Event], lapsed_by: float | None = None) -> MetaUpdate:
        """The metadata an owner append sets: owner, pending target, a renewed lease, expiry."""
        pending = self._folder.pending_handoff
        pending_to = None if pending is None else pending.to_agent
        ended = False
        for ev in events:
            cls = ev.__class__
            if cls is HandedOff:
                pending_to = ev.to_agent  # type: ignore[attr-defined]
            elif cls is HandoffCancelled or cls is OwnerChanged:
                pending_to = None
            elif cls is CallEnded:
                ended = True
        config = self.store.config
        now = time.time()
        expires = now + config.retention if ended else self._started + config.max_call_age
        return MetaUpdate(self.agent, pending_to, now + config.lease, expires, now, self._folder.tenant, lapsed_by)

    def _discard_queue(self) -> None:
        """Drop what ``record_nowait`` queued (this session was fenced): out of the state, into ``discarded``."""
        if self._mark is not None:
            self._folder.rollback(self._mark)
            self._mark = None
        self.discarded.extend(ev for ev, _ in self._queue)
        self._queue, self._staged = [], []

    def _fenced_error(self) -> FencedError:
        if self._gone:
            return FencedError(f"call {self.call_id!r} was deleted (or created anew) under {self.agent!r}")
        f = self._folder
        if f.status == "ended":
            return FencedError(f"call {self.call_id!r} has ended; nothing more can be recorded as its owner")
        return FencedError(
            f"{self.agent!r} no longer owns call {self.call_id!r} (epoch {self.epoch}; it is now "
            f"{f.epoch}, owner {f.owner!r}); this write was not stored"
        )

    # -- the local log -------------------------------------------------------------

    def _settle(self) -> None:
        """Give the events appended unchained their chain values (the store's, when it has them)."""
        n = self._unsettled
        if not n:
            return
        log = self._log
        first = len(log) - n  # index of the first unchained entry
        base = self._base
        got = self._inline.chained(self.call_id, base + first + 1, base + len(log)) if self._inline is not None else []
        if len(got) == n and [e.id for e in got] == [e.id for e in log[first:]]:
            log[first:] = got
        else:  # the call was deleted or replaced meanwhile: chain this session's own copy
            head = log[first - 1].chain if first else self._base_chain
            for i in range(first, len(log)):
                head = chain_next(head, log[i].data)
                log[i] = log[i]._replace(chain=head)
        self._unsettled = 0
        assert not self._queue and self._folder.seq == base + len(log)
        self._folder.chain = log[-1].chain

    def _adopt(self, log: Sequence[StoredEvent]) -> list[Event]:
        folder = self._folder
        out = []
        for se in log:
            ev = decode_stored(se.data, se.seq, se.chain)
            folder.apply(ev, se.seq, se.chain, ev.agent)
            out.append(ev)
        self._log.extend(log)
        self._ids.update(se.id for se in log)
        return out

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
        self._renewed_at = time.monotonic()  # an owner append renews the lease

    def _catch_up(self, meta: CallMeta) -> Flow[list[Event]]:
        """Fold in events others appended after our confirmed seq (returned, decoded), re-staging
        queued ones after them; if this session is fenced by them, its queue is discarded."""
        foreign: list[StoredEvent] = []
        mine, head = self._confirmed()
        replaced = meta.seq < mine or (meta.seq == mine and meta.head != head)
        if meta.seq > mine:
            try:
                foreign = yield from self._tiers.load(self.call_id, meta, mine + 1, head)
            except IntegrityError:
                replaced = True  # what follows our seq does not chain onto our log
        if replaced:
            self._gone = True
            self._discard_queue()
            raise FencedError(
                f"call {self.call_id!r} was deleted and created anew since {self.agent!r} joined it; "
                "this session's writes are refused (resume the new call instead)"
            )
        # No await from here on, so a record_nowait cannot slip in between.
        if self._mark is not None:
            self._folder.rollback(self._mark)
            self._mark = None
        adopted = self._adopt(foreign)
        if self._queue:
            if self.fenced:
                self._discard_queue()
            else:
                self._mark = self._folder.snapshot()
                self._stage_queue()
        return adopted

    def _on_conflict(self, meta: CallMeta | None) -> Flow[None]:
        """After a refused append: fold in what others appended; raise if the call is gone or
        this owner was fenced (else the caller retries at the new seq)."""
        if meta is None:
            self._gone = True
            self._discard_queue()
            raise CallNotFound(f"call {self.call_id!r} was deleted")
        yield from self._catch_up(meta)
        if meta.epoch != self.epoch or meta.ended:
            self._discard_queue()
            raise self._fenced_error()

    # -- the write flows -------------------------------------------------------------

    def _write(self, items: list[Item]) -> Flow[int]:
        """Append ``items`` as the owner; fold them once the deciding tier accepted them."""
        if self.fenced:
            raise self._fenced_error()
        if self._queue:  # behind queued record_nowait events: keep the order
            return (yield from self._enqueue_and_flush(items))
        retries = self.store.config.retries
        last_id = items[-1][0].id
        last_seq: int | None = None
        for _ in range(retries):
            folder = self._folder
            stored = self._stage(items, folder.seq, folder.chain)
            events = [ev for ev, _ in items]
            res: AppendResult = yield from self._tiers.append(
                self.call_id, stored, folder.seq, self.epoch, folder.chain, self._update(events)
            )
            if res.status == "ok":
                self._confirm(events, stored)
                yield from self._maybe_snapshot()
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
            head = self._confirmed()[1]
            res = yield from self._tiers.append(
                self.call_id, stored, stored[0].seq - 1, self.epoch, head, self._update(events)
            )
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
                yield from self._on_conflict(meta)
                continue
            yield from self._on_conflict(res.meta)
        return found

    def _refresh(self) -> Flow[CallState]:
        yield from self._absorb()
        return self._folder.snapshot()

    def _absorb(self) -> Flow[list[Event]]:
        """Fold in what others appended since our confirmed seq; the events, decoded."""
        meta = yield from self._tiers.meta(self.call_id)
        if meta is None:
            self._gone = True
            self._discard_queue()
            raise CallNotFound(f"call {self.call_id!r} no longer exists")
        if (meta.seq, meta.head) != self._confirmed():
            return (yield from self._catch_up(meta))
        return []

    def _renew(self) -> Flow[bool]:
        """Renew the owner's lease; False (and the store's state folded in) if this session is fenced."""
        if self.fenced:
            return False
        meta = yield from self._tiers.renew(self.call_id, self.epoch, time.time() + self.store.config.lease)
        if meta is None:
            self._gone = True
            self._discard_queue()
            return False
        if meta.epoch != self.epoch or meta.ended:
            try:
                yield from self._catch_up(meta)
            except FencedError:
                pass
            self._discard_queue()
            return False
        self._renewed_at = time.monotonic()
        return True

    def _flush(self, all_tiers: bool) -> Flow[None]:
        if self.fenced:
            return  # nothing of it can be stored any more (its queue is in ``discarded``)
        if self._queue:
            try:
                yield from self._flush_queue()
            except FencedError:
                if self.fenced:  # a barrier is no owner write: the queue went to ``discarded``
                    return
                raise
        yield from self._tiers.barrier(self.call_id, all_tiers, self.store.config.barrier_timeout)

    def _maybe_snapshot(self, force: bool = False) -> Flow[None]:
        """Write a snapshot of the fold (off the append: after it was acknowledged), at a handoff
        or ``snapshot_every`` events after the last one, where the deciding tier keeps them."""
        every = self.store.config.snapshot_every
        if not every or not self._tiers.backend.capabilities.snapshots or self._queue:
            return
        seq = self._folder.seq
        if not force and seq - self._snapshot_seq < every:
            return
        if self._folder.opaque:
            return  # events of a type this process cannot read: their state would be missing from it
        self._snapshot_seq = seq
        yield from self._tiers.put_snapshot(self.call_id, snapshot_of(self._folder))

    def _handoff(self, ev: HandedOff, inline: bool) -> Flow[HandoffPacket]:
        if self._queue:
            yield from self._flush_queue()
        if not self.owner:
            raise FencedError(f"{self.agent!r} does not own call {self.call_id!r}; only the owner can hand it off")
        folder = self._folder
        ev = prepare_handoff(folder.snapshot(), ev, epoch=self.epoch, config=self.store.config)
        seq = yield from self._write(self._prepare([ev], internal=True))
        yield from self._tiers.barrier(self.call_id, False, self.store.config.barrier_timeout)
        yield from self._maybe_snapshot(force=True)
        base = self._base
        stored = self._log[seq - 1 - base]
        state = folder.snapshot()
        events = None
        if inline:
            head: list[StoredEvent] = []
            if base:  # resumed from a snapshot: the older events are read back from the store
                head = yield from self._tiers.load(self.call_id, CallMeta(base, 0, self._base_chain, False))
            events = tuple(e.data for e in (*head, *self._log[: seq - base]))
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
        """End the call; on a call that has ended already, a no-op returning its CallEnded's seq."""
        try:
            if not self.fenced:
                if self._queue:
                    yield from self._flush_queue()
                seq = yield from self._write(self._prepare([CallEnded(reason=reason, agent=self.agent)]))
                yield from self._tiers.barrier(self.call_id, True, self.store.config.barrier_timeout)
                return seq
        except FencedError:
            pass
        ended = self._folder.ended_seq
        if ended is None or self._gone:
            raise self._fenced_error()
        return ended
