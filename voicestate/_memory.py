"""``memory://[name]``: the in-process backend. Named instances are shared within a process.

An owner's single-event appends may arrive *unchained* (``chain == PENDING``):
DESIGN lets a hot in-process tier chain lazily, before anything leaves the
process. The chain values are computed, in order, the first time anything
reads the call (metadata, a load, another writer), so every reader sees a
fully chained log and the record path skips one SHA-256.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence

from ._backend import OK, AppendResult, CallMeta, Capabilities, MetaUpdate, StoredEvent
from ._codec import PENDING, chain_next, genesis
from ._waiters import Waiters

_MAX_TOMBSTONES = 100_000


class _Call:
    __slots__ = (
        "active_at",
        "call_id",
        "ended",
        "events",
        "expires_at",
        "ids",
        "lease_until",
        "owner",
        "pending_to",
        "settled",
        "started_at",
        "tenant",
    )

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.events: list[StoredEvent] = []  # index = seq - 1
        self.ids: dict[str, int] = {}
        self.ended = False
        self.settled = 0  # events[:settled] carry their chain values
        self.owner: str | None = None
        self.pending_to: str | None = None
        self.lease_until = 0.0
        self.started_at = 0.0
        self.active_at = 0.0
        self.expires_at: float | None = None
        self.tenant: str | None = None

    def settle(self) -> None:
        """Chain the pending events (under the backend's lock)."""
        events = self.events
        n = len(events)
        if self.settled == n:
            return
        i = self.settled
        head = events[i - 1].chain if i else genesis(self.call_id)
        new = tuple.__new__  # _replace is several times slower
        while i < n:
            e = events[i]
            if e[3] == PENDING:
                head = chain_next(head, e[2])
                events[i] = new(StoredEvent, (e[0], e[1], e[2], head, e[4], e[5]))
            else:
                head = e[3]
            i += 1
        self.settled = n

    def meta(self) -> CallMeta:
        self.settle()
        last = self.events[-1]
        return CallMeta(
            last.seq,
            last.epoch,
            last.chain,
            self.ended,
            self.owner,
            self.pending_to,
            self.lease_until,
            self.started_at,
            self.active_at,
            self.expires_at,
            self.tenant,
        )

    def update(self, update: MetaUpdate | None, creating: bool, same_epoch: bool) -> None:
        if update is not None:
            self.owner, self.pending_to = update.owner, update.pending_to
            # within one epoch a lease only grows: an outside writer's stale copy never shortens it
            lease = update.lease_until
            self.lease_until = max(self.lease_until, lease) if same_epoch else lease
            self.expires_at = update.expires_at
            self.active_at = update.at
            if creating:
                self.started_at, self.tenant = update.at, update.tenant
        if self.ended:
            self.owner = self.pending_to = None
            self.lease_until = 0.0


class MemoryBackend:
    """Calls in a dict. Its sync methods run inline: no event loop, no thread hop."""

    capabilities = Capabilities(shared_across_processes=False, threads=True, watch=True)

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.url = f"memory://{name}"
        self._calls: dict[str, _Call] = {}
        self._tombstones: dict[str, bytes] = {}  # deleted call id -> chain value of its first event
        self._lock = threading.Lock()
        self._waiters = Waiters()

    def _live(self, call_id: str) -> _Call | None:
        """The call, unless it is absent or expired (an expired one is purged now); under the lock."""
        call = self._calls.get(call_id)
        if call is None or not call.events:
            return None
        if call.expires_at is not None and call.expires_at <= time.time():
            self._drop(call_id)
            return None
        return call

    def _drop(self, call_id: str) -> bool:
        call = self._calls.pop(call_id, None)
        if call is None or not call.events:
            return False
        call.settle()
        tombs = self._tombstones
        tombs[call_id] = call.events[0].chain
        if len(tombs) > _MAX_TOMBSTONES:  # bounded: the oldest go first
            del tombs[next(iter(tombs))]
        self._notify(call_id)
        return True

    def _notify(self, call_id: str) -> None:
        if self._waiters.active:
            self._waiters.notify(call_id)

    def _read(self, call_id: str, from_seq: int, to_seq: int | None) -> list[StoredEvent]:
        # Settle and slice under the lock: an unchained append may land in between otherwise.
        with self._lock:
            call = self._live(call_id)
            if call is None:
                return []
            call.settle()
            return call.events[from_seq - 1 : to_seq]

    def get_meta(self, call_id: str) -> CallMeta | None:
        with self._lock:
            call = self._live(call_id)
            return None if call is None else call.meta()

    def append(
        self,
        call_id: str,
        events: Sequence[StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
        update: MetaUpdate | None = None,
    ) -> AppendResult:
        with self._lock:
            call = self._live(call_id)
            creating = call is None
            if call is None:
                if expected_seq != 0:
                    return AppendResult("conflict", None)
                call = _Call(call_id)
            call.settle()
            ids = call.ids
            for e in events:
                if e.id in ids:
                    return AppendResult("duplicate", None, {e.id: ids[e.id] for e in events if e.id in ids})
            stored = call.events
            n = len(stored)
            if (
                n != expected_seq
                or (n and expected_head is not None and stored[-1].chain != expected_head)
                or (expected_epoch is not None and n and (call.ended or stored[-1].epoch != expected_epoch))
                or (update is not None and update.lapsed_by is not None and call.lease_until > update.lapsed_by)
            ):
                return AppendResult("conflict", call.meta() if n else None)
            if creating:
                self._calls[call_id] = call
                self._tombstones.pop(call_id, None)
            before = stored[-1].epoch if n else None
            for e in events:
                stored.append(e)
                ids[e.id] = e.seq
                if e.final:
                    call.ended = True
            call.settled = len(stored)
            call.update(update, creating, before == stored[-1].epoch)
            self._notify(call_id)
            return OK

    def append_unchained(
        self, call_id: str, event: StoredEvent, expected_epoch: int, after: StoredEvent, lease_until: float
    ) -> bool:
        """The owner's single-event append on the record path, inline, chained later.

        Stored only if the call's last event is the very object ``after`` (the
        owner's view of the log is the log), the epoch matches, the call has not
        ended and the id is new; it renews the owner's lease. False means "take
        the general path".
        """
        with self._lock:
            call = self._calls.get(call_id)
            if call is None or event.id in call.ids or call.ended:
                return False
            stored = call.events
            last = stored[-1]
            if last is not after or last.epoch != expected_epoch:
                return False
            stored.append(event)
            call.ids[event.id] = event.seq
            call.lease_until = lease_until
            if self._waiters.active:
                self._waiters.notify(call_id)
            return True

    def chained(self, call_id: str, from_seq: int, to_seq: int) -> list[StoredEvent]:
        """Events ``from_seq..to_seq`` with their chain values (settling pending ones)."""
        return self._read(call_id, from_seq, to_seq)

    def load(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[StoredEvent]:
        return self._read(call_id, from_seq, to_seq)

    def write_at(self, call_id: str, events: Sequence[StoredEvent], update: MetaUpdate | None = None) -> int:
        with self._lock:
            call = self._live(call_id)
            if call is not None and events:
                call.settle()
                held = call.events
                overlap = next((e for e in events if e.seq <= len(held)), None)
                if overlap is not None and held[overlap.seq - 1].chain != overlap.chain:
                    self._drop(call_id)  # a stale copy of a deleted and re-created call
                    call = None
            creating = call is None
            if call is None:
                tomb = self._tombstones.get(call_id)
                first = events[0] if events else None
                if first is None or first.seq != 1 or (tomb is not None and tomb == first.chain):
                    return 0  # nothing to start from, or a late write of a deleted call
                call = _Call(call_id)
            stored = call.events
            had = len(stored)
            before = stored[-1].epoch if had else None
            for e in events:
                hw = len(stored)
                if e.seq <= hw:
                    continue
                if e.seq != hw + 1:
                    break
                stored.append(e)
                call.ids[e.id] = e.seq
                if e.final:
                    call.ended = True
            call.settled = len(stored)
            if len(stored) > had:  # only a write that stored something sets the metadata
                if creating:
                    self._calls[call_id] = call
                    self._tombstones.pop(call_id, None)
                call.update(update, creating, before == stored[-1].epoch)
                self._notify(call_id)
            return len(stored)

    def high_water(self, call_id: str) -> int:
        with self._lock:
            call = self._live(call_id)
            return 0 if call is None else len(call.events)

    def renew(self, call_id: str, epoch: int, lease_until: float) -> CallMeta | None:
        with self._lock:
            call = self._live(call_id)
            if call is None:
                return None
            if not call.ended and call.events[-1].epoch == epoch:
                call.lease_until = lease_until
            return call.meta()

    def list_calls(self, tenant: str | None, after: str | None, limit: int) -> list[tuple[str, CallMeta]]:
        with self._lock:
            ids = sorted(c for c in self._calls if after is None or c > after)
            out: list[tuple[str, CallMeta]] = []
            for call_id in ids:
                call = self._live(call_id)
                if call is not None and (tenant is None or call.tenant == tenant):
                    out.append((call_id, call.meta()))
                    if len(out) >= limit:
                        break
            return out

    def wait_for(self, call_id: str, after: int, timeout: float) -> CallMeta | None:
        return self._waiters.wait_for(lambda: self.get_meta(call_id), after, timeout, None)

    def delete(self, call_id: str) -> bool:
        with self._lock:
            existed = self._live(call_id) is not None  # an expired call did not exist (it is purged now)
            self._drop(call_id)
            return existed

    def close(self) -> None:
        pass

    # Async twins: the work is in memory, so they run inline too.
    async def aget_meta(self, call_id: str) -> CallMeta | None:
        return self.get_meta(call_id)

    async def aappend(
        self,
        call_id: str,
        events: Sequence[StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
        update: MetaUpdate | None = None,
    ) -> AppendResult:
        return self.append(call_id, events, expected_seq, expected_epoch, expected_head, update)

    async def aload(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[StoredEvent]:
        return self.load(call_id, from_seq, to_seq)

    async def awrite_at(self, call_id: str, events: Sequence[StoredEvent], update: MetaUpdate | None = None) -> int:
        return self.write_at(call_id, events, update)

    async def ahigh_water(self, call_id: str) -> int:
        return self.high_water(call_id)

    async def arenew(self, call_id: str, epoch: int, lease_until: float) -> CallMeta | None:
        return self.renew(call_id, epoch, lease_until)

    async def alist_calls(self, tenant: str | None, after: str | None, limit: int) -> list[tuple[str, CallMeta]]:
        return self.list_calls(tenant, after, limit)

    async def await_for(self, call_id: str, after: int, timeout: float) -> CallMeta | None:
        return await self._waiters.await_for(call_id, lambda: self.aget_meta(call_id), after, timeout, None)

    async def adelete(self, call_id: str) -> bool:
        return self.delete(call_id)

    async def aclose(self) -> None:
        pass


_named: weakref.WeakValueDictionary[str, MemoryBackend] = weakref.WeakValueDictionary()
_named_lock = threading.Lock()


def memory_backend(name: str = "") -> MemoryBackend:
    """A private instance for ``memory://``; the shared named one for ``memory://name``.

    A named instance lives while some store uses it.
    """
    if not name:
        return MemoryBackend()
    with _named_lock:
        backend = _named.get(name)
        if backend is None:
            backend = MemoryBackend(name)
            _named[name] = backend
        return backend
