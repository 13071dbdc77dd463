"""``sqlite:///path``: the embedded durable backend (stdlib sqlite3, WAL).

Safe for several processes on one host: each conditional append is one
``BEGIN IMMEDIATE`` transaction, so SQLite's write lock serialises appenders and
the checks and the insert see the same state. Event ids are unique per call by
a UNIQUE index. Async twins run the sync method in the backend's own worker thread (one
queue, no executor machinery: the hop costs a fraction of ``asyncio.to_thread``),
except an append while SQLite's write lock is free and commits need no disk
sync (``synchronous=NORMAL``): that one runs at once on the caller's thread, on a
connection that never waits for the lock and never checkpoints (the worker
does), because waking another thread costs more than the append itself.

Durability: ``synchronous=NORMAL`` (the default) in WAL mode survives a crash
of the process (every acknowledged event is in the WAL) but may lose the last
transactions on power loss or an OS crash; ``?synchronous=full`` syncs the WAL
at every commit and survives those too, at a cost per append.

Watching is a cheap cross-process poll of the call's metadata row with backoff
(1 ms doubling to 20 ms), woken at once by appends made through this backend
object. Expired calls are purged lazily: when read, and in small sweeps.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ._backend import OK, AppendResult, CallMeta, Capabilities, MetaUpdate, Snapshot, StoredEvent
from ._errors import BackendUnavailable, ConfigError
from ._waiters import Waiters, Worker

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vs_calls (
    call_id     TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    epoch       INTEGER NOT NULL,
    head        BLOB NOT NULL,
    ended       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vs_tombstones (
    call_id     TEXT PRIMARY KEY,
    first_chain BLOB NOT NULL,
    deleted_at  REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vs_snapshots (
    call_id     TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    chain       BLOB NOT NULL,
    data        BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vs_events (
    call_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    id      TEXT NOT NULL,
    data    BLOB NOT NULL,
    chain   BLOB NOT NULL,
    epoch   INTEGER NOT NULL,
    final   INTEGER NOT NULL,
    PRIMARY KEY (call_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS vs_events_id ON vs_events (call_id, id);
"""

# Metadata columns added after the first release: added to an older database when opened.
_COLUMNS = {
    "owner": "TEXT",
    "pending_to": "TEXT",
    "lease_until": "REAL NOT NULL DEFAULT 0",
    "started_at": "REAL NOT NULL DEFAULT 0",
    "active_at": "REAL NOT NULL DEFAULT 0",
    "expires_at": "REAL",
    "tenant": "TEXT",
}
_META = "SELECT seq, epoch, head, ended, owner, pending_to, lease_until, started_at, active_at, expires_at, tenant"
_SYNC = {"normal": "NORMAL", "full": "FULL", "extra": "EXTRA"}
_TOMBSTONE_DAYS = 30  # how long a deleted call's tombstone stops late writes
_SWEEP_EVERY = 1000  # appends between sweeps of expired calls
_POLL_MAX = 0.02  # seconds: the longest wait between two reads of a watched call (other processes' appends)


class _Duplicate(Exception):
    """Rolls the append's transaction back when an event id is already stored."""


class _Busy(Exception):
    """The non-blocking path met SQLite's write lock held by another writer."""


_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_CHECKPOINT_EVERY = 256  # WAL pages (about) the loop's appends add between two worker checkpoints
_WAL_LIMIT = 4 << 20  # bytes: a WAL this large sends appends to the worker, whose connection checkpoints


def _row_meta(row: tuple[object, ...]) -> CallMeta:
    return CallMeta(
        row[0],  # type: ignore[arg-type]
        row[1],  # type: ignore[arg-type]
        row[2],  # type: ignore[arg-type]
        bool(row[3]),
        row[4],  # type: ignore[arg-type]
        row[5],  # type: ignore[arg-type]
        row[6],  # type: ignore[arg-type]
        row[7],  # type: ignore[arg-type]
        row[8],  # type: ignore[arg-type]
        row[9],  # type: ignore[arg-type]
        row[10],  # type: ignore[arg-type]
    )


class SQLiteBackend:
    capabilities = Capabilities(shared_across_processes=True, threads=True, watch=True, snapshots=True)

    def __init__(self, path: str, *, timeout: float = 30.0, synchronous: str = "normal", create: bool = True) -> None:
        if not path:
            raise ConfigError("sqlite:// needs a path: sqlite:///relative.db or sqlite:////abs/path.db")
        if synchronous.lower() not in _SYNC:
            raise ConfigError(f"sqlite: synchronous= must be one of {sorted(_SYNC)}, not {synchronous!r}")
        self.path = path
        self.url = f"sqlite:///{path}"
        self._timeout = timeout
        self._sync = _SYNC[synchronous.lower()]
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._waiters = Waiters()
        self._worker = Worker(f"voicestate-sqlite:{os.path.basename(path)}")
        self._appends = 0
        self._inline_pages = 0  # WAL pages (about) added by inline appends since the last worker checkpoint
        self._wal = path + "-wal"
        self._inline = self._sync == "NORMAL"  # a full sync per commit never runs on the loop
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ConfigError(f"sqlite: directory {parent!r} does not exist; create it or pick another path")
        if not create and not os.path.exists(path):
            raise ConfigError(f"sqlite: no database at {os.path.abspath(path)!r}; check the path")
        try:
            conn = self._conn()
            conn.executescript(_SCHEMA)
            have = {r[1] for r in conn.execute("PRAGMA table_info(vs_calls)")}
            for name, decl in _COLUMNS.items():
                if name not in have:
                    conn.execute(f"ALTER TABLE vs_calls ADD COLUMN {name} {decl}")
            conn.execute(
                "CREATE INDEX IF NOT EXISTS vs_calls_expires ON vs_calls (expires_at) WHERE expires_at IS NOT NULL"
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: cannot create the schema: {exc}") from exc

    # One connection per thread: sqlite3 connections must not be shared across threads.
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        return conn if conn is not None else self._open("conn", self._timeout)

    def _fast(self) -> sqlite3.Connection:
        """The event loop thread's non-blocking connection: no busy wait, no automatic checkpoint
        (a checkpoint may sync the disk; the worker thread runs them). The others keep SQLite's
        automatic checkpoint."""
        conn: sqlite3.Connection | None = getattr(self._local, "fast", None)
        return conn if conn is not None else self._open("fast", 0, "PRAGMA wal_autocheckpoint=0")

    def _open(self, slot: str, timeout: float, *pragmas: str) -> sqlite3.Connection:
        if self._closed:
            raise BackendUnavailable(f"{self.url}: the store is closed")
        try:
            conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
            limit = f"PRAGMA journal_size_limit={_WAL_LIMIT // 2}"  # a restarted WAL is cut back to this
            base = ("PRAGMA journal_mode=WAL", f"PRAGMA synchronous={self._sync}", limit)
            for pragma in (*base, *pragmas):
                conn.execute(pragma)
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: cannot open the database: {exc}") from exc
        setattr(self._local, slot, conn)
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _inline_append(
        self,
        call_id: str,
        events: Sequence[StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None,
        update: MetaUpdate | None,
    ) -> AppendResult | None:
        """An async append done at once on the loop's thread, if the write lock is free (tens of
        microseconds, no disk sync: ``synchronous=NORMAL``); None: take the worker thread."""
        try:
            wal = os.stat(self._wal).st_size
        except OSError:
            wal = 0
        if wal > _WAL_LIMIT:
            # Under continuous writes a background checkpoint never catches up: this append goes to
            # the worker, whose connection checkpoints while nobody here writes, so the WAL restarts
            # (and is cut back to journal_size_limit).
            return None
        try:
            res = self._append(
                self._fast(), call_id, events, expected_seq, expected_epoch, expected_head, update, nowait=True
            )
        except _Busy:
            return None
        pages = 2 + sum(len(e.data) for e in events) // 4096  # the rows and the metadata row, about
        before, self._inline_pages = self._inline_pages, self._inline_pages + pages
        if before // _CHECKPOINT_EVERY != self._inline_pages // _CHECKPOINT_EVERY:
            self._worker.submit(self._checkpoint)
        return res

    def _checkpoint(self) -> None:
        try:
            self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:  # a busy checkpoint is retried by the next one
            pass

    @contextmanager
    def _tx(self, conn: sqlite3.Connection, *, immediate: bool, nowait: bool = False) -> Iterator[None]:
        try:
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        except sqlite3.Error as exc:
            if nowait and getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES:
                raise _Busy from None  # another writer holds the lock: wait for it in the worker instead
            raise BackendUnavailable(f"{self.url}: {exc}") from exc
        try:
            yield
        except BaseException:
            self._rollback(conn)
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)  # SQLite may have rolled back already (a full disk does)
            raise BackendUnavailable(f"{self.url}: commit failed: {exc}") from exc

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:  # the cause is what the caller reports
                pass

    def _meta(self, conn: sqlite3.Connection, call_id: str) -> CallMeta | None:
        """The live call's metadata; an expired call is absent (and purged, when in a transaction)."""
        row = conn.execute(f"{_META} FROM vs_calls WHERE call_id = ?", (call_id,)).fetchone()
        if row is None:
            return None
        meta = _row_meta(row)
        now = time.time()
        if meta.expires_at is not None and meta.expires_at <= now:
            if conn.in_transaction:
                self._drop(conn, call_id, now)
            return None
        return meta

    def get_meta(self, call_id: str) -> CallMeta | None:
        try:
            return self._meta(self._conn(), call_id)
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: {exc}") from exc

    def append(
        self,
        call_id: str,
        events: Sequence[StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
        update: MetaUpdate | None = None,
    ) -> AppendResult:
        return self._append(self._conn(), call_id, events, expected_seq, expected_epoch, expected_head, update)

    def _append(
        self,
        conn: sqlite3.Connection,
        call_id: str,
        events: Sequence[StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None,
        update: MetaUpdate | None,
        nowait: bool = False,
    ) -> AppendResult:
        try:
            with self._tx(conn, immediate=True, nowait=nowait):
                meta = self._meta(conn, call_id)
                seq = 0 if meta is None else meta.seq
                if (
                    seq != expected_seq
                    or (meta is not None and expected_head is not None and meta.head != expected_head)
                    or (
                        expected_epoch is not None and meta is not None and (meta.ended or meta.epoch != expected_epoch)
                    )
                    or (
                        meta is not None
                        and update is not None
                        and update.lapsed_by is not None
                        and meta.lease_until > update.lapsed_by
                    )
                ):
                    # A retry of stored events is a duplicate, whatever the seq now is.
                    dups = self._duplicates(conn, call_id, events)
                    return AppendResult("duplicate", None, dups) if dups else AppendResult("conflict", meta)
                try:
                    if meta is None:
                        conn.execute("DELETE FROM vs_tombstones WHERE call_id = ?", (call_id,))
                        self._purge_content(conn, call_id)  # an expired call of the same id
                    self._insert(conn, call_id, events, meta, update)
                except sqlite3.IntegrityError:  # the unique (call_id, id) index: some ids are stored
                    raise _Duplicate from None  # roll back first: this batch's own rows must not count
            self._appended(call_id, events)
            return OK
        except _Duplicate:
            dups = self._duplicates(conn, call_id, events)
            return (
                AppendResult("duplicate", None, dups) if dups else AppendResult("conflict", self._meta(conn, call_id))
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: append failed: {exc}") from exc

    def _appended(self, call_id: str, events: Sequence[StoredEvent]) -> None:
        if self._waiters.active:
            self._waiters.notify(call_id)
        self._appends += 1
        if self._appends % _SWEEP_EVERY == 0:
            self._worker.submit(self.sweep)  # housekeeping, never on the caller's time

    def _duplicates(self, conn: sqlite3.Connection, call_id: str, events: Sequence[StoredEvent]) -> dict[str, int]:
        ids = [e.id for e in events]
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT id, seq FROM vs_events WHERE call_id = ? AND id IN ({marks})", (call_id, *ids)
        ).fetchall()
        return dict(rows)

    def _insert(
        self,
        conn: sqlite3.Connection,
        call_id: str,
        events: Sequence[StoredEvent],
        meta: CallMeta | None,
        update: MetaUpdate | None,
    ) -> None:
        conn.executemany(
            "INSERT INTO vs_events (call_id, seq, id, data, chain, epoch, final) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(call_id, e.seq, e.id, e.data, e.chain, e.epoch, int(e.final)) for e in events],
        )
        last = events[-1]
        ended = (meta is not None and meta.ended) or any(e.final for e in events)
        if update is None:  # keep what was set (a cache or behind tier filled without one)
            base = meta or CallMeta(0, 0, b"", False)
            update = MetaUpdate.keep(base, base.active_at)
        started = update.at if meta is None else meta.started_at
        tenant = update.tenant if meta is None else meta.tenant
        lease = update.lease_until
        if meta is not None and meta.epoch == last.epoch:  # within one epoch a lease only grows
            lease = max(lease, meta.lease_until)
        owner, pending, lease = (None, None, 0.0) if ended else (update.owner, update.pending_to, lease)
        conn.execute(
            "INSERT OR REPLACE INTO vs_calls (call_id, seq, epoch, head, ended, owner, pending_to, lease_until, "
            "started_at, active_at, expires_at, tenant) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                call_id,
                last.seq,
                last.epoch,
                last.chain,
                int(ended),
                owner,
                pending,
                lease,
                started,
                update.at,
                update.expires_at,
                tenant,
            ),
        )

    def load(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[StoredEvent]:
        try:
            conn = self._conn()
            if self._meta(conn, call_id) is None:
                return []
            rows = conn.execute(
                "SELECT seq, id, data, chain, epoch, final FROM vs_events "
                "WHERE call_id = ? AND seq >= ? AND seq <= ? ORDER BY seq",
                (call_id, from_seq, to_seq if to_seq is not None else 2**62),
            ).fetchall()
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: load failed: {exc}") from exc
        out = [StoredEvent(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]
        # A tier holds a gapless prefix; anything past a gap is not trusted.
        for i, e in enumerate(out):
            if e.seq != from_seq + i:
                return out[:i]
        return out

    def write_at(self, call_id: str, events: Sequence[StoredEvent], update: MetaUpdate | None = None) -> int:
        conn = self._conn()
        try:
            with self._tx(conn, immediate=True):
                meta = self._meta(conn, call_id)
                if meta is not None and events:
                    overlap = next((e for e in events if e.seq <= meta.seq), None)
                    if overlap is not None:
                        row = conn.execute(
                            "SELECT chain FROM vs_events WHERE call_id = ? AND seq = ?", (call_id, overlap.seq)
                        ).fetchone()
                        if row is None or row[0] != overlap.chain:  # a stale copy of a re-created call
                            self._drop(conn, call_id, time.time())
                            meta = None
                hw = 0 if meta is None else meta.seq
                if meta is None:
                    first = events[0] if events else None
                    if first is None or first.seq != 1:
                        return 0
                    tomb = conn.execute(
                        "SELECT first_chain FROM vs_tombstones WHERE call_id = ?", (call_id,)
                    ).fetchone()
                    if tomb is not None and tomb[0] == first.chain:
                        return 0  # a late write of the deleted call: never bring it back
                    conn.execute("DELETE FROM vs_tombstones WHERE call_id = ?", (call_id,))
                todo: list[StoredEvent] = []
                for e in events:
                    if e.seq <= hw + len(todo):
                        continue
                    if e.seq != hw + len(todo) + 1:
                        break
                    todo.append(e)
                if todo:
                    self._insert(conn, call_id, todo, meta, update)
                hw += len(todo)
            if todo:
                self._appended(call_id, todo)
            return hw
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: write failed: {exc}") from exc

    def high_water(self, call_id: str) -> int:
        meta = self.get_meta(call_id)
        return 0 if meta is None else meta.seq

    def renew(self, call_id: str, epoch: int, lease_until: float) -> CallMeta | None:
        conn = self._conn()
        try:
            with self._tx(conn, immediate=True):
                conn.execute(
                    "UPDATE vs_calls SET lease_until = ? WHERE call_id = ? AND epoch = ? AND ended = 0",
                    (lease_until, call_id, epoch),
                )
                return self._meta(conn, call_id)
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: lease renewal failed: {exc}") from exc

    def list_calls(self, tenant: str | None, after: str | None, limit: int) -> list[tuple[str, CallMeta]]:
        now = time.time()
        try:
            rows = (
                self._conn()
                .execute(
                    f"{_META}, call_id FROM vs_calls WHERE call_id > ? AND (? IS NULL OR tenant = ?) "
                    "AND (expires_at IS NULL OR expires_at > ?) ORDER BY call_id LIMIT ?",
                    ("" if after is None else after, tenant, tenant, now, limit),
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: listing calls failed: {exc}") from exc
        return [(r[11], _row_meta(r)) for r in rows]

    def wait_for(self, call_id: str, after: int, timeout: float) -> CallMeta | None:
        return self._waiters.wait_for(lambda: self.get_meta(call_id), after, timeout, _POLL_MAX)

    def put_snapshot(self, call_id: str, snapshot: Snapshot) -> None:
        conn = self._conn()
        try:
            with self._tx(conn, immediate=True):
                if self._meta(conn, call_id) is None:
                    return
                conn.execute(
                    "INSERT INTO vs_snapshots (call_id, seq, chain, data) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (call_id) DO UPDATE SET seq = excluded.seq, chain = excluded.chain, "
                    "data = excluded.data WHERE excluded.seq > vs_snapshots.seq",
                    (call_id, snapshot.seq, snapshot.chain, snapshot.data),
                )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: snapshot write failed: {exc}") from exc

    def get_snapshot(self, call_id: str) -> Snapshot | None:
        try:
            row = (
                self._conn()
                .execute("SELECT seq, chain, data FROM vs_snapshots WHERE call_id = ?", (call_id,))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: snapshot read failed: {exc}") from exc
        return None if row is None else Snapshot(row[0], row[1], row[2])

    def _purge_content(self, conn: sqlite3.Connection, call_id: str) -> None:
        conn.execute("DELETE FROM vs_events WHERE call_id = ?", (call_id,))
        conn.execute("DELETE FROM vs_snapshots WHERE call_id = ?", (call_id,))

    def _drop(self, conn: sqlite3.Connection, call_id: str, now: float) -> bool:
        """Delete the call's content, leaving a tombstone (inside a transaction)."""
        first = conn.execute("SELECT chain FROM vs_events WHERE call_id = ? AND seq = 1", (call_id,)).fetchone()
        self._purge_content(conn, call_id)
        existed = conn.execute("DELETE FROM vs_calls WHERE call_id = ?", (call_id,)).rowcount > 0
        if first is not None:
            conn.execute(
                "INSERT OR REPLACE INTO vs_tombstones (call_id, first_chain, deleted_at) VALUES (?, ?, ?)",
                (call_id, first[0], now),
            )
        return existed

    def delete(self, call_id: str) -> bool:
        conn = self._conn()
        try:
            with self._tx(conn, immediate=True):
                existed = self._meta(conn, call_id) is not None
                self._drop(conn, call_id, time.time())
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: delete failed: {exc}") from exc
        self._waiters.notify(call_id)
        return existed

    def sweep(self, limit: int = 100) -> int:
        """Purge up to ``limit`` expired calls (and old tombstones); the number purged."""
        now = time.time()
        conn = self._conn()
        try:
            with self._tx(conn, immediate=True):
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT call_id FROM vs_calls WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?",
                        (now, limit),
                    )
                ]
                for call_id in ids:
                    self._drop(conn, call_id, now)
                conn.execute("DELETE FROM vs_tombstones WHERE deleted_at < ?", (now - _TOMBSTONE_DAYS * 86400,))
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: purge failed: {exc}") from exc
        return len(ids)

    def close(self) -> None:
        self._closed = True
        self._worker.stop()
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing is best effort
                pass
        self._local = threading.local()

    # Async twins: sqlite3 blocks, so they run in a worker thread.
    async def aget_meta(self, call_id: str) -> CallMeta | None:
        return await self._worker.call(self.get_meta, call_id)

    async def aappend(
        self,
        call_id: str,
        events: Sequence[StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
        update: MetaUpdate | None = None,
    ) -> AppendResult:
        if self._inline:
            res = self._inline_append(call_id, events, expected_seq, expected_epoch, expected_head, update)
            if res is not None:
                return res
        return await self._worker.call(
            self.append, call_id, events, expected_seq, expected_epoch, expected_head, update
        )

    async def aload(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[StoredEvent]:
        return await self._worker.call(self.load, call_id, from_seq, to_seq)

    async def awrite_at(self, call_id: str, events: Sequence[StoredEvent], update: MetaUpdate | None = None) -> int:
        return await self._worker.call(self.write_at, call_id, events, update)

    async def ahigh_water(self, call_id: str) -> int:
        return await self._worker.call(self.high_water, call_id)

    async def arenew(self, call_id: str, epoch: int, lease_until: float) -> CallMeta | None:
        return await self._worker.call(self.renew, call_id, epoch, lease_until)

    async def alist_calls(self, tenant: str | None, after: str | None, limit: int) -> list[tuple[str, CallMeta]]:
        return await self._worker.call(self.list_calls, tenant, after, limit)

    async def await_for(self, call_id: str, after: int, timeout: float) -> CallMeta | None:
        return await self._waiters.await_for(call_id, lambda: self.aget_meta(call_id), after, timeout, _POLL_MAX)

    async def aput_snapshot(self, call_id: str, snapshot: Snapshot) -> None:
        await self._worker.call(self.put_snapshot, call_id, snapshot)

    async def aget_snapshot(self, call_id: str) -> Snapshot | None:
        return await self._worker.call(self.get_snapshot, call_id)

    async def adelete(self, call_id: str) -> bool:
        return await self._worker.call(self.delete, call_id)

    async def aclose(self) -> None:
        self.close()
