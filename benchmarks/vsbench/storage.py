"""Figure e: bytes stored per call on SQLite against the call's raw JSON, 1,000 turns.

Counted per stored event: ``len(data) + len(chain) + 8`` (the msgpack event
bytes, the 16-byte chain value, and 8 bytes for seq and epoch). Not counted:
the event id column (the id is also inside ``data``), the call id repeated on
each row, the per-call metadata row, and SQLite's page and index overhead (the
full-row count including the id and call id columns is in the JSON). Raw JSON:
``len(json.dumps(messages))`` of the same call rendered as OpenAI chat messages
(``session.context("openai")``). Budget (DESIGN.md): ≤ 1.3×.

A second row adds the call's snapshot (one per call, the newest: the fold,
turn texts included, written every ``snapshot_every`` events and at handoffs),
which the first row's counting leaves out; ``snapshot_every=0`` turns them off.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import voicestate as vs

from .common import KEYS, Figure, build_call

TURNS = 1_000
BUDGET = 1.3


def run(tmp: Path) -> list[Figure]:
    db = tmp / "bytes.db"
    store = vs.open_store(f"sqlite:///{db}", signing_keys=KEYS)
    s = build_call(store, "bytes-1000", TURNS)
    raw_json = len(json.dumps(s.context("openai")).encode())
    n_messages = len(s.context("openai"))
    store.close()
    conn = sqlite3.connect(db)
    n, data, chain, ids, call_ids = conn.execute(
        "SELECT count(*), sum(length(data)), sum(length(chain)), sum(length(CAST(id AS BLOB))), "
        "sum(length(CAST(call_id AS BLOB))) FROM vs_events WHERE call_id = ?",
        ("bytes-1000",),
    ).fetchone()
    snap = conn.execute("SELECT seq, length(data) FROM vs_snapshots WHERE call_id = ?", ("bytes-1000",)).fetchone()
    conn.close()
    counted = data + chain + 8 * n
    ratio = counted / raw_json
    snap_seq, snap_bytes = snap if snap is not None else (0, 0)
    with_snapshot = counted + snap_bytes
    return [
        Figure(
            "bytes stored per call (SQLite) vs its raw JSON",
            f"{TURNS:,} turns",
            "bytes",
            float(counted),
            None,
            float(raw_json),
            "len(json.dumps(OpenAI messages))",
            budget=f"≤ {BUDGET}×",
            verdict="within budget" if ratio <= BUDGET else "OVER BUDGET",
            note=f"{n:,} events (data + chain + 8 B each), {n_messages:,} messages",
            raw={
                "events": n,
                "messages": n_messages,
                "data_bytes": data,
                "chain_bytes": chain,
                "counted_bytes": counted,
                "with_id_and_call_id_columns": counted + ids + call_ids,
                "raw_json_bytes": raw_json,
            },
        ),
        Figure(
            "bytes stored per call (SQLite) with its snapshot vs its raw JSON",
            f"{TURNS:,} turns",
            "bytes",
            float(with_snapshot),
            None,
            float(raw_json),
            "len(json.dumps(OpenAI messages))",
            budget=f"≤ {BUDGET}× (DESIGN.md counts the call; a snapshot repeats its text)",
            verdict="within budget" if with_snapshot / raw_json <= BUDGET else "OVER BUDGET",
            note=f"the log above plus one snapshot of {snap_bytes:,} B at seq {snap_seq:,}",
            raw={"snapshot_bytes": snap_bytes, "snapshot_seq": snap_seq},
        ),
    ]
