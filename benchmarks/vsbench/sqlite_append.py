"""Figure b: the owner's ``record`` of one turn (user + agent, one call) into ``sqlite:///…``, sync.

Measured at 1,000 events in the call: the samples are spread over several
calls seeded with exactly 1,000 events (untimed), each receiving at most
``PER_CALL`` timed turns. Floor, measured in the same run and interleaved with
it call by call: a bare ``sqlite3`` INSERT of the very rows (same bytes) the
library stored for those turns into a table of the same shape (same columns,
primary key and unique id index), one transaction per turn, on a second
database file with the same PRAGMAs (WAL, synchronous=NORMAL) and seeded with
the same rows. DESIGN.md sets no budget for SQLite: the ratio is reported.
"""

from __future__ import annotations

import math
import random
import sqlite3
import time
from pathlib import Path

import voicestate as vs

from .common import KEYS, Figure, fresh, sentence, timed_figure

EVENTS_IN_CALL = 1_000
PER_CALL = 100
_COLUMNS = "call_id, seq, id, data, chain, epoch, final"
_FLOOR_SCHEMA = """
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
_INSERT = f"INSERT INTO vs_events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_ROWS_AFTER = f"SELECT {_COLUMNS} FROM vs_events WHERE call_id = ? AND seq > ? ORDER BY seq"


def connect(path: Path) -> sqlite3.Connection:
    """A bare connection with the library's settings: autocommit, WAL, synchronous=NORMAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _turn_event(i: int, rng: random.Random) -> vs.Event:
    return vs.UserSpoke(sentence(rng, 20)) if i % 2 == 0 else vs.AgentSpoke(sentence(rng, 40))


def _seed(store: vs.Store, call_id: str, n_events: int, rng: random.Random) -> vs.Session:
    """A call holding exactly ``n_events`` events: CallStarted + alternating user/agent turns."""
    s = store.open(call_id, agent="triage")
    todo = n_events - 1
    while todo > 0:
        k = min(todo, 200)
        s.record(
            *(vs.UserSpoke(sentence(rng, 20)) if i % 2 == 0 else vs.AgentSpoke(sentence(rng, 40)) for i in range(k))
        )
        todo -= k
    return s


def _floor_turns(floor: sqlite3.Connection, rows: list[tuple[object, ...]]) -> list[int]:
    """Insert ``rows`` two by two (one turn), one transaction per turn; nanoseconds per turn."""
    perf = time.perf_counter_ns
    out = []
    for i in range(0, len(rows), 2):
        pair = rows[i : i + 2]
        t0 = perf()
        floor.execute("BEGIN")
        floor.executemany(_INSERT, pair)
        floor.execute("COMMIT")
        out.append(perf() - t0)
    return out


def samples(tmp: Path, count: int, warmup: int) -> tuple[list[int], list[int]]:
    """(library ns per turn, floor ns per turn), ``count`` each."""
    rng = random.Random(11)
    store = vs.open_store(f"sqlite:///{tmp / 'b.db'}", signing_keys=KEYS)
    reader = connect(tmp / "b.db")
    floor = connect(tmp / "floor.db")
    floor.executescript(_FLOOR_SCHEMA)
    n_calls = math.ceil(count / PER_CALL) + 1  # the first call is the warm-up
    sessions = [_seed(store, f"append-{k}", EVENTS_IN_CALL, rng) for k in range(n_calls)]
    floor.execute("BEGIN")
    floor.executemany(_INSERT, reader.execute(f"SELECT {_COLUMNS} FROM vs_events").fetchall())
    floor.execute("COMMIT")
    lib_ns: list[int] = []
    floor_ns: list[int] = []
    perf = time.perf_counter_ns
    fresh()
    for k, s in enumerate(sessions):
        n = min(warmup, PER_CALL) if k == 0 else min(PER_CALL, count - len(lib_ns))
        turns = [(vs.UserSpoke(sentence(rng, 20)), vs.AgentSpoke(sentence(rng, 40))) for _ in range(n)]
        start = s.seq
        batch = []
        rec = s.record
        for user, agent in turns:
            t0 = perf()
            rec(user, agent)
            batch.append(perf() - t0)
        rows = reader.execute(_ROWS_AFTER, (s.call_id, start)).fetchall()
        if len(rows) != 2 * n:
            raise RuntimeError(f"expected {2 * n} new rows in {s.call_id}, found {len(rows)}")
        floor_batch = _floor_turns(floor, rows)
        if k:
            lib_ns += batch
            floor_ns += floor_batch
    reader.close()
    floor.close()
    store.close()
    return lib_ns, floor_ns


def run(tmp: Path, count: int, warmup: int) -> list[Figure]:
    fresh()
    lib, floor = samples(tmp, count, warmup)
    return [
        timed_figure(
            "SQLite append: record(user, agent), sync",
            f"{EVENTS_IN_CALL:,} events",
            lib,
            floor,
            floor="bare sqlite3 INSERT of the same 2 rows, 1 tx, same PRAGMAs",
            note="no budget in DESIGN.md; the issue's wish is ≤ 1.5× the floor",
        )
    ]
