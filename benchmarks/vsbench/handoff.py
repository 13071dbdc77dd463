"""Figure d: handoff + resume across two OS processes on SQLite, 200 and 1,000 turns.

Process A (this one) holds calls of N turns (built untimed, a chunk at a time)
and times ``packet = s.handoff(to="billing"); token = packet.to_token()``.
Process B, a long-lived worker started once (multiprocessing, spawn) with its
own store on the same SQLite file and the same keys, receives the token over a
pipe and times ``store.resume(token, agent="billing")`` itself. The pipe is
never timed. Reported: handoff (A), resume (B) and their per-call sum.

DESIGN.md's budgets for this figure are for Redis, which the core does not
ship, so the verdict is n/a. Floor, measured in B on the same call right next
to its resume (alternating which goes first): "load the raw call", i.e. a
bare ``sqlite3`` SELECT of the call's event rows (the columns the library
reads) plus ``json.loads`` of each of the call's OpenAI messages (2.4 per
turn, the JSON built once from the same call): DESIGN's raw-JSON floor.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import voicestate as vs

from .common import KEYS, Figure, build_call, fresh, timed_figure

REDIS_BUDGET = {200: "Redis: p50 ≤ 1.5 ms, p99 ≤ 5 ms", 1000: "Redis: p50 below the raw-load floor"}
_SELECT = "SELECT seq, id, data, chain, epoch, final FROM vs_events WHERE call_id = ? AND seq <= ? ORDER BY seq"


# --- process B ------------------------------------------------------------------------


def _raw_load(raw: sqlite3.Connection, call_id: str, upto: int, messages: list[str]) -> tuple[int, int]:
    """The floor: SELECT the call's rows 1..upto, json.loads each of its messages. (ns, rows read)."""
    t0 = time.perf_counter_ns()
    rows = raw.execute(_SELECT, (call_id, upto)).fetchall()
    [json.loads(m) for m in messages]
    return time.perf_counter_ns() - t0, len(rows)


def _resume_one(
    store: vs.Store,
    raw: sqlite3.Connection,
    call_id: str,
    upto: int,
    token: str,
    floor_first: bool,
    messages: list[str],
) -> tuple[int, int, int, int, int]:
    """Time one resume and the floor of the same call: (resume ns, floor ns, rows, seq, turns)."""
    if floor_first:
        floor_ns, n_rows = _raw_load(raw, call_id, upto, messages)
    t0 = time.perf_counter_ns()
    session = store.resume(token, agent="billing")
    resume_ns = time.perf_counter_ns() - t0
    if not floor_first:
        floor_ns, n_rows = _raw_load(raw, call_id, upto, messages)
    return resume_ns, floor_ns, n_rows, session.seq, len(session.state.turns)


def worker(conn: Connection, db: str, keys: str) -> None:
    """Process B: resume calls by token and time it; time the raw-load floor of the same call."""
    store = vs.open_store(f"sqlite:///{db}", signing_keys=keys)
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    messages: list[str] = []
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            break
        if msg[0] == "messages":
            messages = msg[1]
            fresh()
            conn.send(("ok",))
            continue
        _, call_id, upto, token, floor_first = msg
        try:
            conn.send(_resume_one(store, raw, call_id, upto, token, floor_first, messages))
        except Exception as exc:  # reported to A, which fails the figure with it
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    raw.close()
    store.close()


class Worker:
    """Process B's handle in process A."""

    def __init__(self, db: Path) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child, str(db), KEYS), daemon=True)
        self.proc.start()
        child.close()

    def request(self, *msg: Any) -> Any:
        self.conn.send(msg)
        reply = self.conn.recv()
        if reply[0] == "error":
            raise RuntimeError(f"process B: {reply[1]}")
        return reply

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
        except OSError:
            pass  # B is already gone
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


# --- process A ------------------------------------------------------------------------


def _messages(session: vs.Session) -> list[str]:
    """The call as OpenAI chat messages, one JSON text per message (the raw-JSON floor's input)."""
    return [json.dumps(m) for m in session.context("openai")]


def measure(b: Worker, store: vs.Store, turns: int, calls: int, warmup: int, chunk: int) -> dict[str, list[int]]:
    """Hand off ``calls`` calls of ``turns`` turns to B; per call: A's, B's and the floor's nanoseconds."""
    out: dict[str, list[int]] = {"handoff": [], "resume": [], "sum": [], "floor": []}
    perf = time.perf_counter_ns
    done = 0
    first = True
    while done < calls + warmup:
        n = min(chunk, calls + warmup - done)
        sessions = [build_call(store, f"h{turns}-{done + k}", turns) for k in range(n)]
        if first:
            b.request("messages", _messages(sessions[0]))
            first = False
        fresh()
        for s in sessions:
            t0 = perf()
            token = s.handoff(to="billing").to_token()
            handoff_ns = perf() - t0
            resume_ns, floor_ns, n_rows, seq, n_turns = b.request("resume", s.call_id, s.seq, token, done % 2 == 0)
            if not (seq == s.seq + 1 and n_rows == s.seq and n_turns == 2 * turns):
                raise RuntimeError(f"B resumed something else: seq {seq}, {n_rows} rows, {n_turns} turns")
            if done >= warmup:
                out["handoff"].append(handoff_ns)
                out["resume"].append(resume_ns)
                out["sum"].append(handoff_ns + resume_ns)
                out["floor"].append(floor_ns)
            done += 1
        del sessions
    return out


def _redis_reference(turns: int, fig: Figure) -> str:
    """How the SQLite figure compares with DESIGN's Redis budget (for reference only, no verdict)."""
    if fig.p50 is None or fig.p99 is None or fig.ratio is None:
        return ""
    if turns == 200:
        here = f"{fig.p50 / 1000:.2f} / {fig.p99 / 1000:.2f} ms"
        return f"for reference, Redis's budget is p50 ≤ 1.5 ms, p99 ≤ 5 ms; here {here}"
    return f"for reference, Redis's budget is p50 below the raw-load floor (< 1×); here {fig.ratio:.2f}×"


def run(tmp: Path, calls: dict[int, int], warmup: int) -> list[Figure]:
    """Rows for each call size in ``calls`` (turns -> number of calls handed off)."""
    db = tmp / "handoff.db"
    store = vs.open_store(f"sqlite:///{db}", signing_keys=KEYS)
    b = Worker(db)
    figures = []
    try:
        for turns, n_calls in calls.items():
            fresh()
            got = measure(b, store, turns, n_calls, warmup, chunk=max(1, 4_000 // turns))
            n = f"{turns:,} turns"
            floor = "B: bare SELECT of the call's rows + json.loads of its messages"
            budget = REDIS_BUDGET.get(turns, "none") + " (not SQLite)"
            total = timed_figure(
                "handoff + resume, 2 processes, SQLite", n, got["sum"], got["floor"], floor=floor, budget=budget
            )
            total.note = _redis_reference(turns, total)
            figures += [
                timed_figure("handoff in A: handoff() + to_token()", n, got["handoff"]),
                timed_figure("resume in B: store.resume(token)", n, got["resume"], got["floor"], floor=floor),
                total,
            ]
    finally:
        b.stop()
        store.close()
    return figures
