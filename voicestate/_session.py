"""Session: one agent's handle on a call it owns (or is about to own): the public
sync and async twins over the owner's flows (``_owner``)."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._backend import OK, StoredEvent
from ._codec import PENDING, encode_event
from ._context import ContextPolicy
from ._errors import BackendUnavailable, CallNotFound, FencedError, VoiceStateError
from ._events import AgentSpoke, Event, UserSpoke
from ._handoff import handoff_event
from ._io import Flow, arun, run
from ._owner import OwnerLog
from ._packet import HandoffPacket
from ._state import CallState

if TYPE_CHECKING:
    from ._store import Store

T = TypeVar("T")
_new_tuple = tuple.__new__  # builds a NamedTuple without its keyword-handling __new__
_SPOKEN = frozenset({UserSpoke, AgentSpoke})  # no reference to check, no ownership effect, not stamped


class Session(OwnerLog):
    """An agent's view of one call. Owner writes go through ``record``/``arecord``.

    ``state`` is an immutable snapshot, refreshed as events are folded in;
    ``temp`` is a plain dict for scratch values that are never persisted.
    """

    def __init__(self, store: Store, call_id: str, agent: str) -> None:
        super().__init__(store, call_id, agent)
        self.temp: dict[str, Any] = {}
        self._beat: asyncio.Task[None] | None = None

    # -- reading ---------------------------------------------------------------

    @property
    def state(self) -> CallState:
        """The call as this session knows it (queued ``record_nowait`` events included)."""
        with self._sync_lock:  # settling rewrites what a record() in another thread is changing
            if self._unsettled:
                self._settle()
            return self._folder.snapshot()

    @property
    def seq(self) -> int:
        return self._folder.seq

    def context(self, fmt: str = "openai", policy: ContextPolicy | None = None) -> Any:
        """The call rendered as ``fmt`` messages (e.g. ``"openai"``) for this session's agent."""
        return self.state.context(fmt, policy, agent=self.agent)

    def __repr__(self) -> str:
        return f"<Session {self.call_id!r} agent={self.agent!r} epoch={self.epoch} seq={self.seq}>"

    # -- driving the flows, sync or async ---------------------------------------------

    def _sync_guard(self) -> None:
        if self._busy or (self._drainer is not None and not self._drainer.done()):
            raise VoiceStateError(
                "an async write of this session is in flight; await arecord()/aflush() instead of the sync twin"
            )

    def _run(self, flow: Flow[T]) -> T:
        # Sync calls from several threads (a framework's background saves beside the app's own
        # writes) go one at a time: a session's fold and expected seq are not thread-safe.
        with self._sync_lock:
            return self._drive(flow)

    def _drive(self, flow: Flow[T]) -> T:  # the caller holds _sync_lock
        self._sync_guard()
        self._settle()
        self._busy = True
        try:
            return run(flow)
        finally:
            self._busy = False

    async def _arun(self, flow_factory: Callable[[], Flow[T]]) -> T:
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
        with self._sync_lock:  # the inline paths below too: threads of one process, one at a time
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
                config = self.store.config
                redact = config.redact
                if redact is not None:
                    ev = redact(ev)
                log = self._log
                seq = len(log) + 1
                data = encode_event(ev, self.agent)
                se = _new_tuple(StoredEvent, (seq, ev.id, data, PENDING, self.epoch, False))
                if len(data) <= config.max_event_bytes and inline.append_unchained(
                    self.call_id, se, self.epoch, log[-1], time.time() + config.lease
                ):
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
                recorded = [ev for ev, _ in items]
                update = self._update(recorded)
                if inline.append(self.call_id, stored, folder.seq, self.epoch, folder.chain, update) is OK:
                    self._confirm(recorded, stored)
                    return stored[-1].seq
            self._surface()
            return self._drive(self._write(items))

    async def arecord(self, *events: Event) -> int:
        """Async twin of :meth:`record`; never blocks the event loop."""
        items = self._prepare(events)
        await self._await_drainer()
        if not items:  # only interim transcripts, which are not stored
            return self._folder.seq
        return await self._arun(lambda: self._write(items))

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
        if self.fenced:
            raise self._fenced_error()
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
        except FencedError:
            pass  # the queue is in ``discarded``; owner writes now fail by themselves, end() is a no-op
        except Exception as exc:  # surfaced at the next arecord/aflush/handoff
            self._error = exc

    def heartbeat(self) -> bool:
        """Renew this owner's lease (appends renew it too). False, with the store's state folded
        in, if the session is fenced: another agent owns the call, or it ended or was deleted."""
        self._sync_guard()
        return self._run(self._renew())

    async def aheartbeat(self) -> bool:
        return await self._arun(self._renew)

    def _start_heartbeat(self) -> None:
        """Async sessions renew their lease in the background, a third of it after the last
        renewal (an append renews it too), until fenced or left."""
        if self._beat is None and not self.fenced:
            self._beat = asyncio.get_running_loop().create_task(_heartbeats(weakref.ref(self)))

    def _stop_heartbeat(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None

    async def awatch(self) -> AsyncIterator[Event]:
        """Yield what other writers store (notes, tool results, a new owner, the hang-up) as it is
        stored, folding it into ``state`` first; ends after ``CallEnded`` (at once if the call has
        ended already) or when the call is deleted."""
        while self._folder.status != "ended" and not self._gone:
            await arun(self._news(None))  # outside the session's lock: its writes go on meanwhile
            try:
                events = await self._arun(self._absorb)
            except (CallNotFound, FencedError):
                return
            for ev in events:
                yield ev

    def watch(self, timeout: float | None = None) -> Iterator[Event]:
        """Sync twin of :meth:`awatch`; ``timeout``: seconds to wait for the next event before
        raising TimeoutError (None: no limit)."""
        while self._folder.status != "ended" and not self._gone:
            self._sync_guard()
            run(self._news(timeout))
            try:
                events = self._run(self._absorb())
            except (CallNotFound, FencedError):
                return
            yield from events

    def _news(self, timeout: float | None) -> Flow[None]:
        """Return once the store holds more than this session has seen, or the call ended or
        went; TimeoutError after ``timeout`` seconds (None: no limit)."""
        seq = self._confirmed()[0]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _WATCH_SLICE if deadline is None else min(_WATCH_SLICE, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"nothing stored in call {self.call_id!r} after seq {seq} within {timeout:g} s")
            meta = yield from self._tiers.wait_for(self.call_id, seq, left)
            if meta is None or meta.seq != seq or meta.ended:
                return

    def refresh(self) -> CallState:
        """Fold in what others appended (notes, tool results, a new owner) and return the state."""
        self._sync_guard()
        return self._run(self._refresh())

    async def arefresh(self) -> CallState:
        await self._await_drainer()
        return await self._arun(self._refresh)

    def flush(self, all_tiers: bool = False) -> None:
        """Return once every through tier (``all_tiers``: every tier) holds the log."""
        self._surface()
        self._run(self._flush(all_tiers))

    async def aflush(self, all_tiers: bool = False) -> None:
        await self._await_drainer()
        await self._arun(lambda: self._flush(all_tiers))

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
        ev = handoff_event(self.agent, to, reason, kind, summary, ttl, self.store.config)
        return self._run(self._handoff(ev, inline))

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
        ev = handoff_event(self.agent, to, reason, kind, summary, ttl, self.store.config)
        return await self._arun(lambda: self._handoff(ev, inline))

    def cancel_handoff(self) -> bool:
        """Withdraw the pending handoff; False if none was pending."""
        self._surface()
        return self._run(self._cancel())

    async def acancel_handoff(self) -> bool:
        await self._await_drainer()
        return await self._arun(self._cancel)

    def end(self, reason: str | None = None) -> int:
        """End the call (``CallEnded``) and wait until every tier holds it. Returns its seq."""
        self._surface()
        return self._run(self._end(reason))

    async def aend(self, reason: str | None = None) -> int:
        await self._await_drainer()
        return await self._arun(lambda: self._end(reason))

    # -- context managers: leaving flushes, never ends the call ----------------------

    def __enter__(self) -> Session:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        # A fenced session leaves quietly: what it could not store is in ``discarded``.
        if et is None:
            try:
                self.flush()
            except FencedError:
                pass
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
        self._stop_heartbeat()
        if et is None:
            try:
                await self.aflush()
            except FencedError:
                pass
        else:
            try:
                await self.aflush()
            except VoiceStateError:
                pass


_WATCH_SLICE = 30.0  # seconds per wait: a watcher re-checks the call at least this often
log = logging.getLogger("voicestate.session")


async def _heartbeats(ref: weakref.ref[Session]) -> None:
    """Renew a session's lease a third of a lease after it was last renewed, by this loop or by
    an append (a call that is talking renews its lease itself, so this loop then costs no
    request); stops once the session is fenced, left or collected."""
    wait = 0.0
    while True:
        session = ref()
        if session is None or session.fenced:
            return
        interval = session.store.config.lease / 3
        wait = max(wait, session._renewed_at + interval - time.monotonic())
        del session  # hold no reference while sleeping: an abandoned session is collected
        if wait > 0:
            await asyncio.sleep(wait)
            wait = 0.0
            continue  # an append may have renewed it meanwhile
        session = ref()
        if session is None:
            return
        try:
            if not await session.aheartbeat():
                return
        except BackendUnavailable as exc:  # keep trying: the lease may still be saved
            log.warning("renewing the lease of %r on call %r failed: %s", session.agent, session.call_id, exc)
            wait = interval  # not sooner: the renewal time did not move
        except VoiceStateError:
            return
        del session
