"""The SQLite backend's own options and failure reports (the conformance suite covers the protocol)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

import voicestate as vs
from voicestate.backend import open_backend

KEYS = "t1:sqlite-tests-secret-0123456789"


@pytest.mark.parametrize(("query", "level"), [("", 1), ("?synchronous=normal", 1), ("?synchronous=full", 2)])
def test_synchronous_is_normal_unless_asked_for_full(tmp_path: Path, query: str, level: int) -> None:
    backend = open_backend(f"sqlite:///{tmp_path / 'c.db'}{query}")
    try:
        assert backend._conn().execute("PRAGMA synchronous").fetchone()[0] == level  # type: ignore[attr-defined]
    finally:
        backend.close()


def test_an_unknown_synchronous_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(vs.ConfigError, match=r"synchronous= must be one of \['extra', 'full', 'normal'\]"):
        open_backend(f"sqlite:///{tmp_path / 'c.db'}?synchronous=off")


def test_a_full_disk_reports_its_cause_and_keeps_what_was_stored(tmp_path: Path) -> None:
    store = vs.open_store(f"sqlite:///{tmp_path / 'c.db'}", signing_keys=KEYS)
    s = store.open("call-1", agent="triage")
    s.record(vs.UserSpoke("stored before the disk filled up"))
    conn = store.tiers.deciding.backend._conn()  # type: ignore[attr-defined]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # this connection cannot grow the file: a full disk
    with pytest.raises(vs.BackendUnavailable) as err:
        s.record(vs.AgentSpoke("x" * 200_000))
    assert "full" in str(err.value) and "cannot rollback" not in str(err.value)
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert [t.text for t in store.load("call-1").turns] == ["stored before the disk filled up"]
    s.record(vs.AgentSpoke("room again"))  # the session carries on once there is room
    assert store.load("call-1").turns[-1].text == "room again"
    store.close()
    raw = sqlite3.connect(tmp_path / "c.db")
    assert raw.execute("SELECT count(*) FROM vs_events").fetchone()[0] == 3
    raw.close()


def test_an_older_database_gains_the_new_metadata_columns(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    raw = sqlite3.connect(db)
    raw.executescript(
        "CREATE TABLE vs_calls (call_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, epoch INTEGER NOT NULL, "
        "head BLOB NOT NULL, ended INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    )
    raw.close()
    store = vs.open_store(f"sqlite:///{db}", signing_keys=KEYS)
    store.open("call-1", agent="triage")
    [info] = store.calls()
    assert (info.call_id, info.owner, info.status) == ("call-1", "triage", "active")
    store.close()


def test_an_async_append_waits_for_a_locked_database_without_blocking_the_loop(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    store = vs.open_store(f"sqlite:///{db}", signing_keys=KEYS)

    async def go() -> tuple[int, int]:
        s = await store.aopen("call-1", agent="triage")
        await s.arecord(vs.UserSpoke("the lock is free: this one ran inline"))
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        async def release() -> None:
            await asyncio.sleep(0.2)
            other.execute("COMMIT")

        tick = asyncio.create_task(ticker())
        rel = asyncio.create_task(release())
        seq = await s.arecord(vs.AgentSpoke("this one waited for the lock in the worker thread"))
        await rel
        tick.cancel()
        other.close()
        return seq, ticks

    seq, ticks = asyncio.run(go())
    assert seq == 3
    assert ticks >= 10, "the event loop was blocked while the append waited for the lock"
    assert [t.text for t in store.load("call-1").turns][-1] == "this one waited for the lock in the worker thread"
    store.close()


def test_full_synchronous_appends_never_run_on_the_loop(tmp_path: Path) -> None:
    full = open_backend(f"sqlite:///{tmp_path / 'f.db'}?synchronous=full")
    normal = open_backend(f"sqlite:///{tmp_path / 'n.db'}")
    try:
        assert (full._inline, normal._inline) == (False, True)  # type: ignore[attr-defined]
    finally:
        full.close()
        normal.close()


def test_the_wal_stays_bounded_when_appends_run_on_the_loop(tmp_path: Path) -> None:
    # Appends made inline on the event loop never checkpoint (that may sync the disk); the worker
    # thread does, and if it falls behind under continuous writes, appends move to the worker's
    # connection, which checkpoints by itself: the WAL is reused instead of growing without end.
    db = tmp_path / "c.db"
    store = vs.open_store(f"sqlite:///{db}", signing_keys=KEYS)

    async def go() -> None:
        s = await store.aopen("call-1", agent="triage")
        for i in range(1500):
            await s.arecord(vs.Note(f"{i} " + "x" * 8000))  # about 12 MB through the WAL

    asyncio.run(go())
    wal = db.with_name(db.name + "-wal")
    assert wal.stat().st_size < 8_000_000, f"the WAL grew to {wal.stat().st_size:,} bytes"
    assert len(store.load("call-1").notes) == 1500
    backend = store.tiers.deciding.backend
    assert backend._fast().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # type: ignore[attr-defined]
    assert backend._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # type: ignore[attr-defined]
    store.close()


def test_async_calls_on_a_closed_store_fail_at_once_instead_of_waiting_forever(tmp_path: Path) -> None:
    """The backend's worker thread is gone once the store closes: a later async call (a late
    tool result appended by a pipeline still running) must get an answer, not hang."""

    async def go() -> None:
        store = vs.open_store(f"sqlite:///{tmp_path / 'c.db'}")
        s = await store.aopen("c", agent="a")
        await s.arecord(vs.UserSpoke("hello"))
        await store.aload("c")  # the worker thread has served calls
        store.close()
        with pytest.raises(vs.BackendUnavailable, match="closed"):
            await asyncio.wait_for(store.aappend("c", vs.Note("late")), 5)
        with pytest.raises(vs.BackendUnavailable, match="closed"):
            await asyncio.wait_for(store.aload("c"), 5)

    asyncio.run(go())
