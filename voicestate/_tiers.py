"""Ordered tiers, hottest first: hot caches, the deciding tier, behind tiers.

The coldest ``write=through`` tier decides: an append is accepted only when it
accepts it, and hotter tiers are written after it (so an event it rejects is
applied nowhere). Reads ask it for the metadata and take events from the
hottest tier that holds them, refilling hotter ones. Behind tiers are written
by a background thread (``BehindWriter``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import attrs

from ._backend import AppendResult, Backend, CallMeta, MetaUpdate, Snapshot, StoredEvent
from ._codec import genesis, verify_chain
from ._errors import BackendUnavailable, ConfigError, IntegrityError
from ._io import Flow, call
from ._waiters import Waiters

log = logging.getLogger("voicestate.tiers")

WriteMode = Literal["through", "behind"]


@attrs.frozen
class Tier:
    backend: Backend
    write: WriteMode = "through"

    @property
    def url(self) -> str:
        """The tier's URL as shown in reprs, errors and logs: a password in it is masked."""
        return redact_url(self.backend.url)


def redact_url(url: str) -> str:
    """``url`` with the password of its user info (``user:secret@host``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can read: show nothing of its user info
        return url.split("://", 1)[0] + "://…" if "@" in url else url
    if not password:
        return url
    head, rest = url.split("://", 1)
    userinfo, _, tail = rest.partition("@")
    user = userinfo.split(":", 1)[0]
    return f"{head}://{user}:***@{tail}"


class Tiers:
    """The tier list of one store."""

    def __init__(self, tiers: Sequence[Tier], *, behind_queue: int = 10_000) -> None:
        if not tiers:
            raise ConfigError("a store needs at least one tier")
        through = [i for i, t in enumerate(tiers) if t.write == "through"]
        if not through:
            raise ConfigError("the deciding tier is the coldest write=through tier, and there is none")
        deciding = through[-1]
        if any(t.write == "behind" for t in tiers[:deciding]):
            raise ConfigError(
                "write=behind tiers must come after the deciding (coldest write=through) tier; "
                f"reorder the URLs so that {tiers[deciding].url} comes before every behind tier"
            )
        self.all = tuple(tiers)
        self.hot = tuple(tiers[:deciding])
        self.deciding = tiers[deciding]
        self.behind = tuple(tiers[deciding + 1 :])
        self.writer = BehindWriter(self, behind_queue) if self.behind else None

    @property
    def backend(self) -> Backend:
        return self.deciding.backend

    # -- reads ---------------------------------------------------------------

    def meta(self, call_id: str) -> Flow[CallMeta | None]:
        meta: CallMeta | None = yield call(self.deciding.backend, "get_meta", call_id)
        return meta

    def load(
        self, call_id: str, meta: CallMeta, from_seq: int = 1, previous: bytes | None = None
    ) -> Flow[list[StoredEvent]]:
        """Events ``from_seq .. meta.seq``, chain-verified, hotter tiers refilled.

        ``previous`` is the chain value before ``from_seq`` (known to the caller;
        the genesis for seq 1). A hot tier whose events do not chain (a stale
        cache of a deleted and recreated call) is purged for the call and skipped.
        """
        if previous is None:
            if from_seq != 1:
                raise ValueError("previous chain value needed when loading from the middle")
            previous = genesis(call_id)
        upto = meta.seq
        if from_seq > upto:
            return []
        for attempt in range(2):
            out: list[StoredEvent] = []
            short: list[Tier] = []  # hot tiers that lacked part of the range
            for tier in self.hot:
                nxt = from_seq + len(out)
                if nxt > upto:
                    break
                try:
                    got = yield call(tier.backend, "load", call_id, nxt, upto)
                except BackendUnavailable as exc:
                    log.warning("hot tier %s unreadable, reading past it: %s", tier.url, exc)
                    continue
                out.extend(got)
                if from_seq + len(out) <= upto:
                    short.append(tier)
            nxt = from_seq + len(out)
            if nxt <= upto:
                got = yield call(self.deciding.backend, "load", call_id, nxt, upto)
                out.extend(got)
            if len(out) != upto - from_seq + 1:
                raise IntegrityError(
                    f"call {call_id!r}: the deciding tier {self.deciding.url} reports seq {upto} "
                    f"but holds only {from_seq + len(out) - 1}"
                )
            bad = verify_chain(previous, out)
            if bad < 0 and out[-1].chain == meta.head:
                for tier in short:
                    try:  # with the deciding tier's metadata, so the copy expires with the call
                        yield call(tier.backend, "write_at", call_id, out, MetaUpdate.keep(meta, meta.active_at))
                    except BackendUnavailable as exc:
                        log.warning("could not refill hot tier %s: %s", tier.url, exc)
                return out
            if not self.hot or attempt:
                where = out[bad].seq if bad >= 0 else upto
                raise IntegrityError(
                    f"call {call_id!r}: stored events do not match their hash chain at seq {where}; "
                    "the store is corrupt or was tampered with"
                )
            for tier in self.hot:  # a stale cache: drop it and read from the deciding tier
                log.warning("hot tier %s holds a stale copy of call %r; purging it", tier.url, call_id)
                yield call(tier.backend, "delete", call_id)
        raise AssertionError("unreachable")  # pragma: no cover

    def wait_for(self, call_id: str, after: int, timeout: float) -> Flow[CallMeta | None]:
        """The deciding tier's metadata once its seq passes ``after`` (or the call goes, or ``timeout``)."""
        backend = self.deciding.backend
        target = backend if backend.capabilities.watch else Poller(backend)
        meta: CallMeta | None = yield call(target, "wait_for", call_id, after, timeout)
        return meta

    def snapshot(self, call_id: str, seq: int) -> Flow[Snapshot | None]:
        """The deciding tier's snapshot of the call, if it keeps them (a failed read is just slower);
        None also when the hottest tier holds the whole log (``seq`` events): it is read from there."""
        backend = self.deciding.backend
        if not backend.capabilities.snapshots:
            return None
        if self.hot:
            try:
                held = yield call(self.hot[0].backend, "high_water", call_id)
            except BackendUnavailable:
                held = 0
            if held >= seq:
                return None
        try:
            snap: Snapshot | None = yield call(backend, "get_snapshot", call_id)
        except BackendUnavailable as exc:
            log.warning("reading the snapshot of call %r failed, loading the log: %s", call_id, exc)
            return None
        return snap

    def put_snapshot(self, call_id: str, snap: Snapshot) -> Flow[None]:
        backend = self.deciding.backend
        if backend.capabilities.snapshots:
            try:
                yield call(backend, "put_snapshot", call_id, snap)
            except BackendUnavailable as exc:  # a snapshot only makes the next resume faster
                log.warning("writing a snapshot of call %r failed: %s", call_id, exc)

    def renew(self, call_id: str, epoch: int, lease_until: float) -> Flow[CallMeta | None]:
        meta: CallMeta | None = yield call(self.deciding.backend, "renew", call_id, epoch, lease_until)
        return meta

    def list_calls(self, tenant: str | None, after: str | None, limit: int) -> Flow[list[tuple[str, CallMeta]]]:
        got: list[tuple[str, CallMeta]] = yield call(self.deciding.backend, "list_calls", tenant, after, limit)
        return got

    def load_at(self, call_id: str, seq: int) -> Flow[StoredEvent | None]:
        """One event of the call from the deciding tier, or None."""
        got = yield call(self.deciding.backend, "load", call_id, seq, seq)
        return got[0] if got else None

    def load_first(self, call_id: str) -> Flow[StoredEvent | None]:
        """The call's first event (CallStarted) from the deciding tier, or None."""
        got = yield call(self.deciding.backend, "load", call_id, 1, 1)
        return got[0] if got else None

    # -- writes --------------------------------------------------------------

    def append(
        self,
        call_id: str,
        events: list[StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None,
        update: MetaUpdate | None,
    ) -> Flow[AppendResult]:
        res: AppendResult = yield call(
            self.deciding.backend, "append", call_id, events, expected_seq, expected_epoch, expected_head, update
        )
        if res.status == "ok":
            for tier in self.hot:
                yield from self._fill(tier, call_id, events, update)
            if self.writer is not None:
                self.writer.enqueue(call_id, events, update)
        return res

    def _fill(self, tier: Tier, call_id: str, events: list[StoredEvent], update: MetaUpdate | None) -> Flow[None]:
        # A cache never decides: failing to fill it loses nothing (the deciding tier has it).
        try:
            hw = yield call(tier.backend, "write_at", call_id, events, update)
            if hw < events[0].seq - 1:
                missing = yield call(self.deciding.backend, "load", call_id, hw + 1, events[0].seq - 1)
                yield call(tier.backend, "write_at", call_id, missing + events, update)
        except BackendUnavailable as exc:
            log.warning("hot tier %s missed seqs %d-%d: %s", tier.url, events[0].seq, events[-1].seq, exc)

    def delete(self, call_id: str) -> Flow[bool]:
        if self.writer is not None:
            self.writer.forget(call_id)
        existed = False
        if self.behind:
            # A behind tier keeps the tombstone of the log it holds. One that does not hold
            # this call yet (its batch still queued, here or in another process) is given the
            # call's first event before the delete, so its tombstone refuses that batch.
            meta = yield call(self.deciding.backend, "get_meta", call_id)
            first = [] if meta is None else (yield call(self.deciding.backend, "load", call_id, 1, 1))
            for tier in self.behind:
                if first:
                    yield call(tier.backend, "write_at", call_id, first, MetaUpdate.keep(meta, meta.active_at))
                existed = bool((yield call(tier.backend, "delete", call_id))) or existed
        for tier in (self.deciding, *self.hot):
            existed = bool((yield call(tier.backend, "delete", call_id))) or existed
        return existed

    def barrier(self, call_id: str | None, all_tiers: bool, timeout: float) -> Flow[None]:
        """Through tiers hold the log once an append returns; this also backfills
        and, with ``all_tiers``, waits for the behind tiers."""
        if self.writer is None:
            return
        if call_id is not None:
            self.writer.mark(call_id)  # backfill any gap a dead process left
        if all_tiers:
            yield call(self.writer, "drain", timeout)

    def close(self, timeout: float) -> Flow[None]:
        if self.writer is not None:
            yield call(self.writer, "stop", timeout)
        for tier in self.all:
            yield call(tier.backend, "close")


class Poller:
    """``wait_for`` for a backend without native watching: its metadata, polled with backoff
    (the loop of ``Waiters``, whose waits nobody cuts short here)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._waiters = Waiters()

    def wait_for(self, call_id: str, after: int, timeout: float) -> CallMeta | None:
        return self._waiters.wait_for(lambda: self.backend.get_meta(call_id), after, timeout, _POLL_MAX)

    async def await_for(self, call_id: str, after: int, timeout: float) -> CallMeta | None:
        read = lambda: self.backend.aget_meta(call_id)  # noqa: E731
        return await self._waiters.await_for(call_id, read, after, timeout, _POLL_MAX)


_POLL_MAX = 0.05  # seconds: the longest wait between two reads of a backend without native watching


class BehindWriter:
    """Writes behind tiers in the background, in seq order, batched, idempotently.

    Backpressure: the append path never waits on a behind tier. The queue holds
    at most ``limit`` events; when it is full, new events are not queued and
    their call is marked dirty instead, and the writer later copies what the
    behind tier lacks from the deciding tier (which holds everything). Memory
    stays bounded and nothing is lost; a tier that is down is retried with
    backoff the same way.
    """

    def __init__(self, tiers: Tiers, limit: int) -> None:
        self._tiers = tiers
        self._limit = limit
        self._queue: deque[tuple[str, list[StoredEvent], MetaUpdate | None]] = deque()
        self._queued = 0
        self._dirty: set[str] = set()
        self._busy = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.dropped = 0  # events not queued because the queue was full (backfilled later)
        self.failures = 0

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="voicestate-behind", daemon=True)
            self._thread.start()

    def enqueue(self, call_id: str, events: list[StoredEvent], update: MetaUpdate | None = None) -> None:
        with self._cond:
            if self._queued + len(events) > self._limit:
                self.dropped += len(events)
                self._dirty.add(call_id)
            else:
                self._queue.append((call_id, events, update))
                self._queued += len(events)
            self._start()
            self._cond.notify()

    def mark(self, call_id: str) -> None:
        with self._cond:
            self._dirty.add(call_id)
            self._start()
            self._cond.notify()

    def forget(self, call_id: str) -> None:
        with self._cond:
            self._dirty.discard(call_id)
            kept = [q for q in self._queue if q[0] != call_id]
            self._queue = deque(kept)
            self._queued = sum(len(q[1]) for q in kept)

    def pending(self) -> int:
        with self._cond:
            return self._queued + len(self._dirty) + self._busy

    def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._dirty or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BackendUnavailable(
                        f"behind tiers did not catch up within {timeout:g} s "
                        f"({self._queued} events queued, {len(self._dirty)} calls to backfill); "
                        "check that every write=behind tier is reachable"
                    )
                self._cond.wait(min(left, 0.05))

    async def adrain(self, timeout: float) -> None:
        await asyncio.to_thread(self.drain, timeout)

    def stop(self, timeout: float) -> None:
        try:
            self.drain(timeout)
        finally:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join(timeout)

    async def astop(self, timeout: float) -> None:
        await asyncio.to_thread(self.stop, timeout)

    def _run(self) -> None:
        backoff = 0.01
        while True:
            with self._cond:
                while not (self._queue or self._dirty or self._stopping):
                    self._cond.wait()
                if self._stopping and not (self._queue or self._dirty):
                    return
                batch: dict[str, tuple[list[StoredEvent], MetaUpdate | None]] = {}
                size = 0
                while self._queue and size < 512:
                    call_id, events, update = self._queue.popleft()
                    self._queued -= len(events)
                    size += len(events)
                    held = batch.get(call_id)
                    batch[call_id] = (events, update) if held is None else (held[0] + events, update or held[1])
                dirty, self._dirty = self._dirty, set()
                self._busy = len(batch) + len(dirty)
            failed: set[str] = set()
            for call_id, (events, update) in batch.items():
                if not self._write(call_id, events, update):
                    failed.add(call_id)
            for call_id in dirty - failed:
                if not self._backfill(call_id):
                    failed.add(call_id)
            with self._cond:
                self._busy = 0
                self._dirty |= failed
                self._cond.notify_all()
                stopping = self._stopping
            if failed:
                if stopping:
                    return
                with self._cond:  # a barrier's mark() wakes this early
                    self._cond.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            else:
                backoff = 0.01

    def _write(self, call_id: str, events: list[StoredEvent], update: MetaUpdate | None) -> bool:
        for tier in self._tiers.behind:
            try:
                hw = tier.backend.write_at(call_id, events, update)
                if hw < events[-1].seq:
                    return self._backfill(call_id)
            except Exception as exc:  # the tier is down: backfill later
                self.failures += 1
                log.warning("behind tier %s: %s (will backfill)", tier.url, exc)
                return False
        return True

    def _backfill(self, call_id: str) -> bool:
        """Make each behind tier hold the deciding tier's log: what it lacks, and, where its copy
        is not the same log (compared by chain value, not only by length), the whole log again."""
        deciding = self._tiers.deciding.backend
        try:
            meta = deciding.get_meta(call_id)
            for tier in self._tiers.behind:
                if meta is None:
                    # Not a deletion: store.delete() reaches every tier itself and an expiry
                    # expires each copy. The deciding tier lost the call (a server back empty):
                    # the behind copy may be all that is left of it, so it stays.
                    if tier.backend.get_meta(call_id) is not None:
                        log.warning(
                            "behind tier %s holds call %r, which the deciding tier %s does not: kept as it is",
                            tier.url,
                            call_id,
                            self._tiers.deciding.url,
                        )
                    continue
                theirs = tier.backend.get_meta(call_id)
                hw = 0 if theirs is None else theirs.seq
                if hw > meta.seq:
                    tier.backend.delete(call_id)  # longer than the truth: a stale copy
                    hw = 0
                elif hw:
                    mine = deciding.load(call_id, hw, hw)
                    if not mine or mine[0].chain != theirs.head:  # type: ignore[union-attr]
                        tier.backend.delete(call_id)
                        hw = 0
                update = MetaUpdate.keep(meta, meta.active_at)
                if hw < meta.seq:
                    tier.backend.write_at(call_id, deciding.load(call_id, 1 if hw == 0 else hw + 1, meta.seq), update)
            return True
        except Exception as exc:
            self.failures += 1
            log.warning("backfilling call %r into behind tiers failed: %s", call_id, exc)
            return False


def describe(tiers: Tiers) -> list[dict[str, Any]]:
    """For the CLI and logs: each tier with its role."""
    out = []
    for t in tiers.all:
        role = "deciding" if t is tiers.deciding else ("cache" if t in tiers.hot else "behind")
        out.append({"url": t.url, "write": t.write, "role": role})
    return out
