"""Figure d: handoff + resume across two OS processes on SQLite, 200 and 1,000 turns.

Process A (this one) holds calls of N turns (built untimed, a chunk at a time)
and times ``packet = s.handoff(to="billing"); token = packet.to_token()``.
Process B, a long-lived worker started once (multiprocessing, spawn) with its
own store on the same SQLite file and the same keys, receives the token over a
pipe and times ``store.resume(token, agent="billing")`` itself. The pipe is
never timed. Reported: handoff (A), resume (B) and their per-call sum.

DESIGN.md's budgets for this figure are for Redis, which the core does not
ship, so the verdict is n/a. Floor, measured in B on the same call right next
to its resume (rotating which goes first): "load the raw call", i.e. a
bare ``sqlite3`` SELECT of the call's event rows (the columns the library
reads) plus ``json.loads`` of each of the call's OpenAI messages (2.4 per
turn, the JSON built once from the same call): DESIGN's raw-JSON floor.

Beside them, in B, on the same call: the same load by replaying the whole log
(a second store on the same file whose backend declares no snapshots: how
every resume worked before snapshots), and the best peer, OpenAI Agents'
``SQLiteSession.get_items()`` of the same messages (its own file, one loop),
when ``openai-agents`` is installed (``nox -s bench`` installs it).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import sqlite3
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import attrs

import voicestate as vs

from .common import KEYS, Figure, build_call, fresh, timed_figure, unmeasured

REDIS_BUDGET = {200: "Redis: p50 ≤ 1.5 ms, p99 ≤ 5 ms", 1000: "Redis: p50 below the raw-load floor"}
_SELECT = "SELECT seq, id, data, chain, epoch, final FROM vs_events WHERE call_id = ? AND seq <= ? ORDER BY seq"


# --- process B ------------------------------------------------------------------------


def _raw_load(raw: sqlite3.Connection, call_id: str, upto: int, messages: list[str]) -> tuple[int, int]:
    """The floor: SELECT the call's rows 1..upto, json.loads each of its messages. (ns, rows read)."""
    t0 = time.perf_counter_ns()
    rows = raw.execute(_SELECT, (call_id, upto)).fetchall()
    [json.loads(m) for m in messages]
    return time.perf_counter_ns() - t0, len(rows)


class Peer:
    """OpenAI Agents' SQLiteSession holding the call's messages, if the package is installed."""

    def __init__(self, db: str) -> None:
        self.why = ""
        self.loop = asyncio.new_event_loop()
        self.session: Any = None
        try:
            from agents.memory import SQLiteSession  # type: ignore[import-not-found]
        except ImportError as exc:
            self.why = f"openai-agents is not installed ({exc.name})"
            self.cls = None
        else:
            self.cls = SQLiteSession
        self.db = db

    def load_messages(self, key: str, messages: list[str]) -> None:
        if self.cls is None:
            return
        self.session = self.cls(session_id=key, db_path=self.db)
        self.loop.run_until_complete(self.session.add_items([json.loads(m) for m in messages]))

    def time_get_items(self, n_messages: int) -> int | None:
        if self.session is None:
            return None
        t0 = time.perf_counter_ns()
        items = self.loop.run_until_complete(self.session.get_items())
        took = time.perf_counter_ns() - t0
        if len(items) != n_messages:
            raise RuntimeError(f"the peer returned {len(items)} items, not {n_messages}")
        return took


def _resume_one(
    store: vs.Store,
    replay: vs.Store,
    peer: Peer,
    raw: sqlite3.Connection,
    call_id: str,
    upto: int,
    token: str,
    rotation: int,
    messages: list[str],
) -> tuple[int, int, int | None, int | None, int, int, int]:
    """Time one resume, the floor, the replayed load and the peer on the same call, in rotating order:
    (resume ns, floor ns, replay ns, peer ns, rows, seq, turns)."""
    out: dict[str, Any] = {}

    def do_resume() -> None:
        t0 = time.perf_counter_ns()
        out["session"] = store.resume(token, agent="billing")
        out["resume"] = time.perf_counter_ns() - t0

    def do_floor() -> None:
        out["floor"], out["rows"] = _raw_load(raw, call_id, upto, messages)

    def do_replay() -> None:
        t0 = time.perf_counter_ns()
        st = replay.load(call_id)
        out["replay"] = time.perf_counter_ns() - t0
        out["replay_turns"] = len(st.turns)

    def do_peer() -> None:
        out["peer"] = peer.time_get_items(len(messages))

    steps = [do_resume, do_floor, do_replay, do_peer]
    k = rotation % len(steps)
    for step in steps[k:] + steps[:k]:
        step()
    session = out["session"]
    if out["replay_turns"] != len(session.state.turns):
        raise RuntimeError("the replayed load and the resume disagree")
    return (
        out["resume"],
        out["floor"],
        out["replay"],
        out["peer"],
        out["rows"],
        session.seq,
        len(session.state.turns),
    )


def worker(conn: Connection, db: str, keys: str) -> None:
    """Process B: resume calls by token and time it; time the floor, the replay and the peer on the same call."""
    store = vs.open_store(f"sqlite:///{db}", signing_keys=keys)
    replay = vs.open_store(f"sqlite:///{db}", signing_keys=keys)
    backend = replay.tiers.deciding.backend
    backend.capabilities = attrs.evolve(backend.capabilities, snapshots=False)  # type: ignore[misc]
    peer = Peer(str(Path(db).with_name("peer.db")))
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
            peer.load_messages(f"peer-{len(messages)}", messages)
            fresh()
            conn.send(("ok", peer.why))
            continue
        _, call_id, upto, token, rotation = msg
        try:
            conn.send(_resume_one(store, replay, peer, raw, call_id, upto, token, rotation, messages))
        except Exception as exc:  # reported to A, which fails the figure with it
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    raw.close()
    replay.close()
    store.close()


class Worker:
    """Process B's handle in process A."""

    def __init__(self, db: Path) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child, str(db), KEYS), daemon=True)
        self.proc.start()
        child.close()
        self.peer_why = ""

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
    out: dict[str, list[int]] = {"handoff": [], "resume": [], "sum": [], "floor": [], "replay": [], "peer": []}
    perf = time.perf_counter_ns
    done = 0
    first = True
    while done < calls + warmup:
        n = min(chunk, calls + warmup - done)
        sessions = [build_call(store, f"h{turns}-{done + k}", turns) for k in range(n)]
        if first:
            b.peer_why = b.request("messages", _messages(sessions[0]))[1]
            first = False
        fresh()
        for s in sessions:
            t0 = perf()
            token = s.handoff(to="billing").to_token()
            handoff_ns = perf() - t0
            resume_ns, floor_ns, replay_ns, peer_ns, n_rows, seq, n_turns = b.request(
                "resume", s.call_id, s.seq, token, done
            )
            if not (seq == s.seq + 1 and n_rows == s.seq and n_turns == 2 * turns):
                raise RuntimeError(f"B resumed something else: seq {seq}, {n_rows} rows, {n_turns} turns")
            if done >= warmup:
                out["handoff"].append(handoff_ns)
                out["resume"].append(resume_ns)
                out["sum"].append(handoff_ns + resume_ns)
                out["floor"].append(floor_ns)
                out["replay"].append(replay_ns)
                if peer_ns is not None:
                    out["peer"].append(peer_ns)
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
            resume = timed_figure("resume in B: store.resume(token)", n, got["resume"], got["floor"], floor=floor)
            replay = timed_figure(
                "load in B replaying the whole log (no snapshot: before Core IV)",
                n,
                got["replay"],
                got["floor"],
                floor=floor,
            )
            if got["peer"]:
                peer = timed_figure(
                    "peer in B: OpenAI Agents SQLiteSession.get_items()", n, got["peer"], got["floor"], floor=floor
                )
                resume.note = f"{resume.p50 / peer.p50:.2f}× the peer's p50" if resume.p50 and peer.p50 else ""
            else:
                peer = unmeasured("peer in B: OpenAI Agents SQLiteSession.get_items()", n, b.peer_why)
            figures += [timed_figure("handoff in A: handoff() + to_token()", n, got["handoff"]), resume, replay, peer]
            figures.append(total)
    finally:
        b.stop()
        store.close()
    return figures
