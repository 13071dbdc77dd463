"""``sqlite:///path``: the embedded durable backend (stdlib sqlite3, WAL).

Safe for several processes on one host: each conditional append is one
``BEGIN IMMEDIATE`` transaction, so SQLite's write lock serialises appenders and
the checks and the insert see the same state. Event ids are unique per call by
a UNIQUE index. Async twins run the sync method in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ._backend import OK, AppendResult, CallMeta, Capabilities, StoredEvent
from ._errors import BackendUnavailable, ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vs_calls (
    call_id TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL,
    epoch   INTEGER NOT NULL,
    head    BLOB NOT NULL,
    ended   INTEGER NOT NULL DEFAULT 0
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


class _Duplicate(Exception):
    """Rolls the append's transaction back when an event id is already stored."""


class SQLiteBackend:
    capabilities = Capabilities(shared_across_processes=True, threads=True)

    def __init__(self, path: str, *, timeout: float = 30.0) -> None:
        if not path:
            raise ConfigError("sqlite:// needs a path: sqlite:///relative.db or sqlite:////abs/path.db")
        self.path = path
        self.url = f"sqlite:///{path}"
        self._timeout = timeout
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ConfigError(f"sqlite: directory {parent!r} does not exist; create it or pick another path")
        try:
            self._conn().executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: cannot create the schema: {exc}") from exc

    # One connection per thread: sqlite3 connections must not be shared across threads.
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise BackendUnavailable(f"{self.url}: the store is closed")
            try:
                conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"{self.url}: cannot open the database: {exc}") from exc
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _tx(self, conn: sqlite3.Connection, *, immediate: bool) -> Iterator[None]:
        try:
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: {exc}") from exc
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise BackendUnavailable(f"{self.url}: commit failed: {exc}") from exc

    def _meta(self, conn: sqlite3.Connection, call_id: str) -> CallMeta | None:
        row = conn.execute("SELECT seq, epoch, head, ended FROM vs_calls WHERE call_id = ?", (call_id,)).fetchone()
        return None if row is None else CallMeta(row[0], row[1], row[2], bool(row[3]))

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
    ) -> AppendResult:
        conn = self._conn()
        try:
            with self._tx(conn, immediate=True):
                meta = self._meta(conn, call_id)
                seq = 0 if meta is None else meta.seq
                if (
                    seq != expected_seq
                    or (meta is not None and expected_head is not None and meta.head != expected_head)
                    or (
                        expected_epoch is not None and meta is not None and (meta.ended or meta.epoch != expected_epoch)
                    )
                ):
                    # A retry of stored events is a duplicate, whatever the seq now is.
                    dups = self._duplicates(conn, call_id, events)
                    return AppendResult("duplicate", None, dups) if dups else AppendResult("conflict", meta)
                try:
                    self._insert(conn, call_id, events, meta)
                except sqlite3.IntegrityError:  # the unique (call_id, id) index: some ids are stored
                    raise _Duplicate from None  # roll back first: this batch's own rows must not count
                return OK
        except _Duplicate:
            dups = self._duplicates(conn, call_id, events)
            return (
                AppendResult("duplicate", None, dups) if dups else AppendResult("conflict", self._meta(conn, call_id))
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: append failed: {exc}") from exc

    def _duplicates(self, conn: sqlite3.Connection, call_id: str, events: Sequence[StoredEvent]) -> dict[str, int]:
        ids = [e.id for e in events]
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT id, seq FROM vs_events WHERE call_id = ? AND id IN ({marks})", (call_id, *ids)
        ).fetchall()
        return dict(rows)

    def _insert(
        self, conn: sqlite3.Connection, call_id: str, events: Sequence[StoredEvent], meta: CallMeta | None
    ) -> None:
        conn.executemany(
            "INSERT INTO vs_events (call_id, seq, id, data, chain, epoch, final) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(call_id, e.seq, e.id, e.data, e.chain, e.epoch, int(e.final)) for e in events],
        )
        last = events[-1]
        ended = int((meta is not None and meta.ended) or any(e.final for e in events))
        conn.execute(
            "INSERT INTO vs_calls (call_id, seq, epoch, head, ended) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (call_id) DO UPDATE SET seq = excluded.seq, epoch = excluded.epoch, "
            "head = excluded.head, ended = excluded.ended",
            (call_id, last.seq, last.epoch, last.chain, ended),
        )

    def load(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[StoredEvent]:
        try:
            rows = (
                self._conn()
                .execute(
                    "SELECT seq, id, data, chain, epoch, final FROM vs_events "
                    "WHERE call_id = ? AND seq >= ? AND seq <= ? ORDER BY seq",
                    (call_id, from_seq, to_seq if to_seq is not None else 2**62),
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: load failed: {exc}") from exc
        out = [StoredEvent(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]
        # A tier holds a gapless prefix; anything past a gap is not trusted.
        for i, e in enumerate(out):
            if e.seq != from_seq + i:
                return out[:i]
        return out

    def write_at(self, call_id: str, events: Sequence[StoredEvent]) -> int:
        conn = self._conn()
        try:
            with self._tx(conn, immediate=True):
                meta = self._meta(conn, call_id)
                hw = 0 if meta is None else meta.seq
                todo: list[StoredEvent] = []
                for e in events:
                    if e.seq <= hw + len(todo):
                        continue
                    if e.seq != hw + len(todo) + 1:
                        break
                    todo.append(e)
                if todo:
                    self._insert(conn, call_id, todo, meta)
                return hw + len(todo)
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: write failed: {exc}") from exc

    def high_water(self, call_id: str) -> int:
        meta = self.get_meta(call_id)
        return 0 if meta is None else meta.seq

    def delete(self, call_id: str) -> bool:
        conn = self._conn()
        try:
            with self._tx(conn, immediate=True):
                conn.execute("DELETE FROM vs_events WHERE call_id = ?", (call_id,))
                return conn.execute("DELETE FROM vs_calls WHERE call_id = ?", (call_id,)).rowcount > 0
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.url}: delete failed: {exc}") from exc

    def close(self) -> None:
        self._closed = True
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
        return await asyncio.to_thread(self.get_meta, call_id)

    async def aappend(
        self,
        call_id: str,
        events: Sequence[StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
    ) -> AppendResult:
        return await asyncio.to_thread(self.append, call_id, events, expected_seq, expected_epoch, expected_head)

    async def aload(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[StoredEvent]:
        return await asyncio.to_thread(self.load, call_id, from_seq, to_seq)

    async def awrite_at(self, call_id: str, events: Sequence[StoredEvent]) -> int:
        return await asyncio.to_thread(self.write_at, call_id, events)

    async def ahigh_water(self, call_id: str) -> int:
        return await asyncio.to_thread(self.high_water, call_id)

    async def adelete(self, call_id: str) -> bool:
        return await asyncio.to_thread(self.delete, call_id)

    async def aclose(self) -> None:
        self.close()
