"""Session: one agent's handle on a call it owns (or is about to own)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from ._backend import OK, AppendResult, CallMeta
from ._codec import PENDING, StoredEvent, chain_next, decode_event, encode_event, genesis
from ._context import ContextPolicy
from ._errors import CallNotFound, FencedError, IntegrityError, InvalidEvent, SeqConflict, VoiceStateError
from ._events import (
    HANDOFF_KINDS,
    RESERVED_TYPES,
    AgentSpoke,
    CallEnded,
    Event,
    HandedOff,
    HandoffCancelled,
    Interrupted,
    OwnerChanged,
    SlotsSet,
    ToolCalled,
    ToolCancelled,
    ToolReturned,
    UserSpoke,
)
from ._ids import new_packet_id
from ._io import Flow, arun, run
from ._packet import HandoffPacket, packet_for, unsigned_packet
from ._plugins import get_plugin_manager, notify
from ._state import CallState, Folder

if TYPE_CHECKING:
    from ._store import Store


_CHECKED = frozenset({Interrupted, ToolCalled, ToolReturned, ToolCancelled, SlotsSet})
_new_tuple = tuple.__new__  # builds a NamedTuple without its keyword-handling __new__
_SPOKEN = frozenset({UserSpoke, AgentSpoke})  # no reference to check, no ownership effect, not stamped


class Session:
    """An agent's view of one call. Owner writes go through ``record``/``arecord``.

    ``state`` is an immutable snapshot, refreshed as events are folded in;
    ``temp`` is a plain dict for scratch values that are never persisted.
    """

    def __init__(self, store: Store, call_id: str, agent: str) -> None:
        self.store = store
        self.call_id = call_id
        self.agent = agent
        self.epoch = 0
        self.temp: dict[str, Any] = {}
        self._folder = Folder(call_id, genesis(call_id))
        self._log: list[StoredEvent] = []  # confirmed: durable in every through tier
        self._ids: set[str] = set()  # ids of confirmed events: a retry skips the semantic checks
        # record_nowait: events staged and folded at once, durable later, in order
        self._queue: list[tuple[Event, bytes]] = []
        self._staged: list[StoredEvent] = []
        self._mark: CallState | None = None  # state before the first queued event
        self._error: BaseException | None = None
        self._busy = False
        self._alock: asyncio.Lock | None = None
        self._drainer: asyncio.Task[None] | None = None
        # the inline fast path: a lone in-process tier
        self._inline = store._inline
        self._unsettled = 0  # trailing _log entries appended unchained (chain == PENDING)
        self._max_bytes = store.max_event_bytes
        self._redact = store._redact

    # -- reading ---------------------------------------------------------------

    @property
    def state(self) -> CallState:
        """The call as this session knows it (queued ``record_nowait`` events included)."""
        if self._unsettled:
            self._settle()
        return self._folder.snapshot()

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

    @property
    def seq(self) -> int:
        return self._folder.seq

    @property
    def owner(self) -> bool:
        """Whether this session still owns the call, as far as it knows."""
        return self._folder.owner == self.agent and self._folder.epoch == self.epoch

    def context(self, fmt: str = "openai", policy: ContextPolicy | None = None) -> Any:
        """The call rendered as ``fmt`` messages (e.g. ``"openai"``)."""
        return self.state.context(fmt, policy)

    def __repr__(self) -> str:
        return f"<Session {self.call_id!r} agent={self.agent!r} epoch={self.epoch} seq={self.seq}>"

    # -- internals: folding --------------------------------------------------------

    def _adopt(self, log: Sequence[StoredEvent]) -> None:
        folder = self._folder
        for se in log:
            ev = decode_event(se.data, se.seq, se.chain)
            folder.apply(ev, se.seq, se.chain, ev.agent)
        self._log.extend(log)
        self._ids.update(se.id for se in log)

    def _catch_up(self, meta: CallMeta) -> Flow[None]:
        """Fold in events others appended after our confirmed seq, re-staging queued ones after them."""
        foreign: list[StoredEvent] = []
        mine = len(self._log)
        head = self._log[-1].chain if self._log else genesis(self.call_id)
        replaced = meta.seq < mine or (meta.seq == mine and meta.head != head)
        if meta.seq > mine:
            try:
                foreign = yield from self.store.tiers.load(self.call_id, meta, mine + 1, head)
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

    def _stage(self, items: Iterable[tuple[Event, bytes]], seq: int, head: bytes) -> list[StoredEvent]:
        out = []
        epoch = self.epoch
        for ev, data in items:
            seq += 1
            head = chain_next(head, data)
            t = type(ev)
            out.append(StoredEvent(seq, ev.id, data, head, ev.epoch if t is OwnerChanged else epoch, t is CallEnded))  # type: ignore[attr-defined]
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

    # -- internals: validation --------------------------------------------------------

    def _prepare(self, events: Sequence[Event], *, internal: bool = False) -> list[tuple[Event, bytes]]:
        """Validate (types, references, reserved events), redact and encode; nothing is written."""
        if not events:
            raise InvalidEvent("record() needs at least one event")
        batch: list[Event] = []
        out = []
        redact = self._redact
        agent = self.agent
        known = self._ids
        for ev in events:
            if not isinstance(ev, Event):
                raise InvalidEvent(f"record() takes events (vs.UserSpoke(...), ...), not {type(ev).__name__}")
            if not internal and isinstance(ev, RESERVED_TYPES):
                raise InvalidEvent(
                    f"{type(ev).__name__} is written by the store: use open(), handoff(), cancel_handoff() or resume()"
                )
            if batch and any(b.id == ev.id for b in batch):
                raise InvalidEvent(f"event id {ev.id!r} appears twice in one record() call")
            if redact is not None:
                ev = redact(ev)
            t = type(ev)
            if t is UserSpoke and not ev.final and not self.store.store_interim:  # type: ignore[attr-defined]
                continue  # interim transcripts are not stored by default
            if t in _CHECKED and ev.id not in known:  # a retry of a stored event is a no-op, not an error
                self._check(ev, batch)
            batch.append(ev)
            data = encode_event(ev, agent)
            if len(data) > self.store.max_event_bytes:
                raise self.store._too_large(ev, len(data))
            out.append((ev, data))
        return out

    def _check(self, ev: Event, batch: list[Event]) -> None:
        """Semantic checks against the call so far (and earlier events of the same batch)."""
        folder = self._folder
        t = type(ev)
        if t is Interrupted:
            ref = ev.turn  # type: ignore[attr-defined]
            if folder.agent_turn(ref) is None and not any(
                type(b) is AgentSpoke and (ref is None or ref == b.id) for b in batch
            ):
                raise InvalidEvent(
                    f"Interrupted(turn={ref!r}) names no agent turn of this call; "
                    "pass the seq that record(AgentSpoke(...)) returned, or the AgentSpoke itself"
                )
        elif t is ToolCalled:
            cid = ev.call_id  # type: ignore[attr-defined]
            if folder.tool(cid) is not None or any(isinstance(b, ToolCalled) and b.call_id == cid for b in batch):
                raise InvalidEvent(f"tool call id {cid!r} is already used in this call")
        elif t is ToolReturned or t is ToolCancelled:
            cid = ev.call_id  # type: ignore[attr-defined]
            if folder.tool(cid) is None and not any(isinstance(b, ToolCalled) and b.call_id == cid for b in batch):
                raise InvalidEvent(f"no tool call {cid!r} in this call: record ToolCalled({cid!r}, ...) first")
        elif t is SlotsSet:
            scope = ev.scope  # type: ignore[attr-defined]
            if scope != "call" and not (scope.startswith("agent:") and len(scope) > 6):
                raise InvalidEvent(f"SlotsSet scope {scope!r}: use 'call' or 'agent:<name>'")

    # -- internals: the write flows -------------------------------------------------

    def _fenced(self, meta: CallMeta) -> FencedError:
        if meta.ended:
            return FencedError(f"call {self.call_id!r} has ended; nothing more can be recorded as its owner")
        owner = self._folder.owner
        return FencedError(
            f"{self.agent!r} no longer owns call {self.call_id!r} (epoch {self.epoch}; it is now "
            f"{meta.epoch}, owner {owner!r}); this write was not stored"
        )

    def _write(self, items: list[tuple[Event, bytes]]) -> Flow[int]:
        """Append ``items`` as the owner; fold them once the deciding tier accepted them."""
        if self._queue:  # behind queued record_nowait events: keep the order
            return (yield from self._enqueue_and_flush(items))
        retries = self.store.retries
        last_id = items[-1][0].id
        for _ in range(retries):
            folder = self._folder
            stored = self._stage(items, folder.seq, folder.chain)
            res: AppendResult = yield from self.store.tiers.append(
                self.call_id, stored, folder.seq, self.epoch, folder.chain
            )
            if res.status == "ok":
                self._confirm([ev for ev, _ in items], stored)
                return stored[-1].seq
            if res.status == "duplicate":
                items = [it for it in items if it[0].id not in res.duplicates]
                if not items:
                    meta = yield from self.store.tiers.meta(self.call_id)
                    if meta is not None and meta.seq > folder.seq:
                        yield from self._catch_up(meta)
                    return res.duplicates[last_id] if last_id in res.duplicates else max(res.duplicates.values())
                continue
            meta = res.meta
            if meta is None:
                raise CallNotFound(f"call {self.call_id!r} was deleted")
            yield from self._catch_up(meta)
            if meta.epoch != self.epoch or meta.ended:
                raise self._fenced(meta)
        raise SeqConflict(
            f"call {self.call_id!r}: gave up after {retries} conflicting writes", expected=self._folder.seq, actual=-1
        )

    def _enqueue(self, items: list[tuple[Event, bytes]]) -> None:
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

    def _enqueue_and_flush(self, items: list[tuple[Event, bytes]]) -> Flow[int]:
        self._enqueue(items)
        target = items[-1][0].id
        seq = yield from self._flush_queue(target)
        return seq

    def _flush_queue(self, target: str | None = None) -> Flow[int]:
        """Make every queued event durable, in order. Returns the stored seq of ``target``."""
        found = 0
        conflicts = 0
        while self._queue:
            # Copies: record_nowait may queue more while this append is in flight.
            n = len(self._queue)
            stored = self._staged[:n]
            events = [ev for ev, _ in self._queue[:n]]
            head = self._log[-1].chain if self._log else genesis(self.call_id)
            res = yield from self.store.tiers.append(self.call_id, stored, stored[0].seq - 1, self.epoch, head)
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
            if conflicts > self.store.retries:
                raise SeqConflict(
                    f"call {self.call_id!r}: gave up after {self.store.retries} conflicting writes",
                    expected=stored[0].seq - 1,
                    actual=-1 if res.meta is None else res.meta.seq,
                )
            if res.status == "duplicate":
                if target is not None and target in res.duplicates:
                    found = res.duplicates[target]
                self._queue = [it for it in self._queue if it[0].id not in res.duplicates]
                meta = yield from self.store.tiers.meta(self.call_id)
                if meta is None:
                    raise CallNotFound(f"call {self.call_id!r} was deleted")
                yield from self._catch_up(meta)
                continue
            meta = res.meta
            if meta is None:
                raise CallNotFound(f"call {self.call_id!r} was deleted")
            yield from self._catch_up(meta)
            if meta.epoch != self.epoch or meta.ended:
                raise self._fenced(meta)
        return found

    def _sync_guard(self) -> None:
        if self._busy or (self._drainer is not None and not self._drainer.done()):
            raise VoiceStateError(
                "an async write of this session is in flight; await arecord()/aflush() instead of the sync twin"
            )

    def _run(self, flow: Flow[Any]) -> Any:
        self._sync_guard()
        self._settle()
        self._busy = True
        try:
            return run(flow)
        finally:
            self._busy = False

    async def _arun(self, flow_factory: Any) -> Any:
        if self._alock is None:
            self._alock = asyncio.Lock()
        async with self._alock:
            self._settle()
            self._busy = True
            try:
                return await arun(flow_factory())
            finally:
                self._busy = False

    def _surface(self) -> None:
        # A background failure is reported once, at the next write or barrier.
        err, self._error = self._error, None
        if err is not None:
            raise err

    # -- public writes ----------------------------------------------------------

    def record(self, *events: Event) -> int:
        """Append events as the owner; returns the stored seq of the last one once acknowledged."""
        inline = self._inline
        if (
            inline is not None
            and len(events) == 1
            and events[0].__class__ in _SPOKEN
            and not (self._queue or self._busy or self._error)
            and (events[0].__class__ is not UserSpoke or events[0].final)
        ):
            # The hottest path: one utterance into a lone in-process tier, inline,
            # chained later (see _memory): encode, one conditional append, fold.
            ev = events[0]
            redact = self._redact
            if redact is not None:
                ev = redact(ev)
            log = self._log
            seq = len(log) + 1
            data = encode_event(ev, self.agent)
            se = _new_tuple(StoredEvent, (seq, ev.id, data, PENDING, self.epoch, False))
            if len(data) <= self._max_bytes and inline.append_unchained(self.call_id, se, self.epoch, log[-1]):
                self._folder.apply(ev, seq, PENDING, ev.agent or self.agent)
                log.append(se)
                self._ids.add(se.id)
                self._unsettled += 1
                return seq
        self._settle()
        items = self._prepare(events)
        if not items:  # only interim transcripts, which are not stored
            return self._folder.seq
        if inline is not None and not (self._queue or self._busy or self._error):
            # A lone in-process tier: one conditional append, inline, no generator hop.
            folder = self._folder
            stored = self._stage(items, folder.seq, folder.chain)
            if inline.append(self.call_id, stored, folder.seq, self.epoch, folder.chain) is OK:
                self._confirm([ev for ev, _ in items], stored)
                return stored[-1].seq
        self._surface()
        return self._run(self._write(items))  # type: ignore[no-any-return]

    async def arecord(self, *events: Event) -> int:
        """Async twin of :meth:`record`; never blocks the event loop."""
        items = self._prepare(events)
        await self._await_drainer()
        if not items:  # only interim transcripts, which are not stored
            return self._folder.seq
        return await self._arun(lambda: self._write(items))  # type: ignore[no-any-return]

    async def _await_drainer(self) -> None:
        task = self._drainer
        if task is not None and not task.done():
            await asyncio.wait([task])
        if self._error is not None:
            self._surface()

    def record_nowait(self, *events: Event) -> str:
        """Apply events locally at once and make them durable in order in the background.

        Returns the last event's id (its seq is not known yet). A failure
        surfaces at the next ``arecord``, ``aflush`` or handoff, and the events
        stay queued. Outside a running event loop this records synchronously.
        """
        items = self._prepare(events)
        if not items:  # only interim transcripts, which are not stored
            return events[-1].id
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._run(self._write(items))
            return items[-1][0].id
        self._enqueue(items)
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return items[-1][0].id

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the caller queue a burst first: one append for all
        try:
            await self._arun(self._flush_queue)
        except Exception as exc:  # surfaced at the next arecord/aflush/handoff
            self._error = exc

    def refresh(self) -> CallState:
        """Fold in what others appended (notes, tool results, a new owner) and return the state."""
        self._sync_guard()
        return self._run(self._refresh())  # type: ignore[no-any-return]

    async def arefresh(self) -> CallState:
        await self._await_drainer()
        return await self._arun(self._refresh)  # type: ignore[no-any-return]

    def _refresh(self) -> Flow[CallState]:
        meta = yield from self.store.tiers.meta(self.call_id)
        if meta is None:
            raise CallNotFound(f"call {self.call_id!r} no longer exists")
        if meta.seq > len(self._log):
            yield from self._catch_up(meta)
        return self._folder.snapshot()

    def flush(self, all_tiers: bool = False) -> None:
        """Return once every through tier (``all_tiers``: every tier) holds the log."""
        self._surface()
        self._run(self._flush(all_tiers))

    async def aflush(self, all_tiers: bool = False) -> None:
        await self._await_drainer()
        await self._arun(lambda: self._flush(all_tiers))

    def _flush(self, all_tiers: bool) -> Flow[None]:
        if self._queue:
            yield from self._flush_queue()
        yield from self.store.tiers.barrier(self.call_id, all_tiers, self.store.barrier_timeout)

    def handoff(
        self,
        to: str,
        reason: str | None = None,
        kind: str = "transfer",
        summary: str | None = None,
        *,
        ttl: float | None = None,
        inline: bool = False,
    ) -> HandoffPacket:
        """Offer the call to ``to``: appends ``HandedOff`` and returns the signed packet.

        This session keeps ownership (and keeps recording) until the target
        redeems the packet; an expired, cancelled or replaced packet leaves it in
        charge. ``inline=True`` carries the log in the packet, reusing the stored bytes.
        """
        self._surface()
        ev = self._handoff_event(to, reason, kind, summary, ttl)
        return self._run(self._handoff(ev, inline))  # type: ignore[no-any-return]

    async def ahandoff(
        self,
        to: str,
        reason: str | None = None,
        kind: str = "transfer",
        summary: str | None = None,
        *,
        ttl: float | None = None,
        inline: bool = False,
    ) -> HandoffPacket:
        await self._await_drainer()
        ev = self._handoff_event(to, reason, kind, summary, ttl)
        return await self._arun(lambda: self._handoff(ev, inline))  # type: ignore[no-any-return]

    def _handoff_event(
        self, to: str, reason: str | None, kind: str, summary: str | None, ttl: float | None
    ) -> HandedOff:
        from ._store import check_name

        check_name(to, "handoff target")
        if kind not in HANDOFF_KINDS:
            raise InvalidEvent(f"handoff kind {kind!r}: use one of {sorted(HANDOFF_KINDS)}")
        ttl = self.store.packet_ttl if ttl is None else ttl
        if not ttl > 0:
            raise InvalidEvent(f"handoff ttl must be positive seconds, got {ttl!r}")
        now = time.time()
        return HandedOff(
            to_agent=to,
            kind=kind,
            reason=reason,
            summary=summary,
            packet_id=new_packet_id(),
            expires_at=now + ttl,
            at=now,
            agent=self.agent,
        )

    def _handoff(self, ev: HandedOff, inline: bool) -> Flow[HandoffPacket]:
        if self._queue:
            yield from self._flush_queue()
        if not self.owner:
            raise FencedError(f"{self.agent!r} does not own call {self.call_id!r}; only the owner can hand it off")
        before = self._folder.snapshot()
        ev = self._prepare_handoff(before, ev)
        items = self._prepare([ev], internal=True)
        seq = yield from self._write(items)
        yield from self.store.tiers.barrier(self.call_id, False, self.store.barrier_timeout)
        stored = self._log[seq - 1]
        state = self._folder.snapshot()
        events = tuple(e.data for e in self._log[:seq]) if inline else None
        packet = packet_for(state, self._folder.handoffs[-1], stored.epoch, self.store.keys, events)
        notify("after_handoff", state=state, packet=packet)
        return packet

    def _prepare_handoff(self, state: CallState, ev: HandedOff) -> HandedOff:
        """The summary (``summarize_call``) and the ``prepare_handoff`` hooks: add or veto."""
        hook = get_plugin_manager().hook
        if ev.summary is None:
            summary = hook.summarize_call(state=state, to_agent=ev.to_agent)
            if summary is not None:
                ev = attrs.evolve(ev, summary=str(summary))
        draft = unsigned_packet(
            attrs.evolve(ev, agent=self.agent),
            call_id=self.call_id,
            tenant=state.tenant,
            seq=state.seq + 1,
            epoch=self.epoch,
            chain=b"",  # not recorded yet
            key_id=self.store.keys.current,
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

    def cancel_handoff(self) -> bool:
        """Withdraw the pending handoff; False if none was pending."""
        self._surface()
        return self._run(self._cancel())  # type: ignore[no-any-return]

    async def acancel_handoff(self) -> bool:
        await self._await_drainer()
        return await self._arun(self._cancel)  # type: ignore[no-any-return]

    def _cancel(self) -> Flow[bool]:
        if self._queue:
            yield from self._flush_queue()
        pending = self._folder.pending_handoff
        if pending is None:
            return False
        items = self._prepare([HandoffCancelled(packet_id=pending.packet_id, agent=self.agent)], internal=True)
        yield from self._write(items)
        return True

    def end(self, reason: str | None = None) -> int:
        """End the call (``CallEnded``) and wait until every tier holds it. Returns its seq."""
        self._surface()
        return self._run(self._end(reason))  # type: ignore[no-any-return]

    async def aend(self, reason: str | None = None) -> int:
        await self._await_drainer()
        return await self._arun(lambda: self._end(reason))  # type: ignore[no-any-return]

    def _end(self, reason: str | None) -> Flow[int]:
        if self._queue:
            yield from self._flush_queue()
        seq = yield from self._write(self._prepare([CallEnded(reason=reason, agent=self.agent)]))
        yield from self.store.tiers.barrier(self.call_id, True, self.store.barrier_timeout)
        return seq

    # -- context managers: leaving flushes, never ends the call ----------------------

    def __enter__(self) -> Session:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if et is None:
            self.flush()
        else:
            try:
                self.flush()
            except VoiceStateError:
                pass  # the body's error is the one to see

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None:
            await self.aflush()
        else:
            try:
                await self.aflush()
            except VoiceStateError:
                pass
