"""``memory://[name]``: the in-process backend. Named instances are shared within a process.

An owner's single-event appends may arrive *unchained* (``chain == PENDING``):
DESIGN lets a hot in-process tier chain lazily, before anything leaves the
process. The chain values are computed, in order, the first time anything
reads the call (metadata, a load, another writer), so every reader sees a
fully chained log and the record path skips one SHA-256.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

from ._backend import OK, AppendResult, CallMeta, Capabilities, StoredEvent
from ._codec import PENDING, chain_next, genesis


class _Call:
    __slots__ = ("call_id", "ended", "events", "ids", "settled")

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.events: list[StoredEvent] = []  # index = seq - 1
        self.ids: dict[str, int] = {}
        self.ended = False
        self.settled = 0  # events[:settled] carry their chain values

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


class MemoryBackend:
    """Calls in a dict. Its sync methods run inline: no event loop, no thread hop."""

    capabilities = Capabilities(shared_across_processes=False, threads=True)

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.url = f"memory://{name}"
        self._calls: dict[str, _Call] = {}
        self._lock = threading.Lock()

    def _read(self, call_id: str, from_seq: int, to_seq: int | None) -> list[StoredEvent]:
        # Settle and slice under the lock: an unchained append may land in between otherwise.
        with self._lock:
            call = self._calls.get(call_id)
            if call is None:
                return []
            call.settle()
            return call.events[from_seq - 1 : to_seq]

    def get_meta(self, call_id: str) -> CallMeta | None:
        with self._lock:
            call = self._calls.get(call_id)
            if call is None or not call.events:
                return None
            call.settle()
            last = call.events[-1]
            return CallMeta(last.seq, last.epoch, last.chain, call.ended)

    def append(
        self,
        call_id: str,
        events: Sequence[StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
    ) -> AppendResult:
        with self._lock:
            call = self._calls.get(call_id)
            if call is None:
                if expected_seq != 0:
                    return AppendResult("conflict", None)
                call = self._calls[call_id] = _Call(call_id)
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
            ):
                last = stored[-1] if n else None
                meta = None if last is None else CallMeta(last.seq, last.epoch, last.chain, call.ended)
                return AppendResult("conflict", meta)
            for e in events:
                stored.append(e)
                ids[e.id] = e.seq
                if e.final:
                    call.ended = True
            call.settled = len(stored)
            return OK

    def append_unchained(self, call_id: str, event: StoredEvent, expected_epoch: int, after: StoredEvent) -> bool:
        """The owner's single-event append on the record path, inline, chained later.

        Stored only if the call's last event is the very object ``after`` (the
        owner's view of the log is the log), the epoch matches, the call has not
        ended and the id is new. False means "take the general path".
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
            return True

    def chained(self, call_id: str, from_seq: int, to_seq: int) -> list[StoredEvent]:
        """Events ``from_seq..to_seq`` with their chain values (settling pending ones)."""
        return self._read(call_id, from_seq, to_seq)

    def load(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[StoredEvent]:
        return self._read(call_id, from_seq, to_seq)

    def write_at(self, call_id: str, events: Sequence[StoredEvent]) -> int:
        with self._lock:
            call = self._calls.get(call_id)
            if call is None:
                call = self._calls[call_id] = _Call(call_id)
            call.settle()
            stored = call.events
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
            if not stored:
                del self._calls[call_id]
            return len(stored)

    def high_water(self, call_id: str) -> int:
        call = self._calls.get(call_id)
        return 0 if call is None else len(call.events)

    def delete(self, call_id: str) -> bool:
        with self._lock:
            return self._calls.pop(call_id, None) is not None

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
    ) -> AppendResult:
        return self.append(call_id, events, expected_seq, expected_epoch, expected_head)

    async def aload(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[StoredEvent]:
        return self.load(call_id, from_seq, to_seq)

    async def awrite_at(self, call_id: str, events: Sequence[StoredEvent]) -> int:
        return self.write_at(call_id, events)

    async def ahigh_water(self, call_id: str) -> int:
        return self.high_water(call_id)

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
