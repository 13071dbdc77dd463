"""Redis figures beyond the append: handoff + resume across processes, appends per second
with many concurrent calls, and watch latency across processes.

Needs the ``voicestate-redis`` member and a Redis server, as ``redis_append`` (whose
``server()`` this reuses: ``VOICESTATE_BENCH_REDIS_URL``, else a private ``redis-server``).
Each group returns an unmeasured row when either is missing.

- Handoff + resume, 2 processes, at 200 and 1,000 turns (handoff.py's pattern): process A
  builds each call (untimed) and times ``s.handoff(to="billing").to_token()``; a long-lived
  worker B with its own store on the same Redis times ``store.resume(token)``. Floor, in B
  on the same call, rotating which goes first: a bare ``LRANGE`` of a list holding the
  call's OpenAI messages (one JSON text each, written once) + ``json.loads`` of each.
  DESIGN: p50 ≤ 1.5 ms, p99 ≤ 5 ms at 200 turns; p50 below the floor at 1,000.
- Appends per second, 1,000 concurrent calls: one task per call, each ``await
  s.arecord(UserSpoke)`` in a loop, on one event loop in one process; then the same
  1,000 calls split over 2 processes (500 each, started together, the rate over the
  union of their windows). Floor: the same number of tasks doing a bare ``RPUSH`` of the
  same bytes through ``redis.asyncio`` (its pool sized for the tasks: redis.asyncio's pool
  raises ``MaxConnectionsError`` past its limit instead of waiting). Reported as wall µs
  per append (1 / rate), the rate in the note. DESIGN: ≥ 20,000 appends/s from one
  process. Beside it, the server's CPU per append over the timed appends (``INFO cpu``),
  what one Redis core can take (docs/scaling.md).
- Watch across processes: process B appends notes (``store.append``) to a call that
  process A follows with ``store.awatch``; B stamps ``time.monotonic_ns()`` (one clock
  for every process on Linux) into each note's id just before appending. Floor: the same
  between a bare ``PUBLISH`` in B and a ``redis.asyncio`` subscriber in A. DESIGN: p50 ≤ 1 ms.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import voicestate as vs

from .common import KEYS, Figure, build_call, fresh, timed_figure, unmeasured
from .redis_append import server

HANDOFF_BUDGET = {200: "p50 ≤ 1.5 ms, p99 ≤ 5 ms", 1000: "p50 below the raw-load floor"}
RATE_BUDGET = 20_000.0  # appends/s from one process
TEXT = "Could you check the charge from March please."


def _missing(name: str, n: str) -> Figure | None:
    """An unmeasured row if the Redis member (or redis-py) is not installed."""
    try:
        import redis  # noqa: F401

        import voicestate_redis  # noqa: F401  (the member registers redis://)
    except ImportError as exc:
        return unmeasured(name, n, f"{exc.name} is not installed (nox -s bench installs it)")
    return None


def _store(url: str, prefix: str, extra: str = "") -> vs.Store:
    return vs.open_store(f"{url}?prefix={prefix}{extra}", signing_keys=KEYS)


def _spawn(target: Callable[..., None], *args: Any) -> tuple[Connection, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, *args), daemon=True)
    proc.start()
    child.close()
    return parent, proc


def _stop(conn: Connection, proc: Any) -> None:
    try:
        conn.send(("stop",))
    except OSError:
        pass  # already gone
    proc.join(30)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)


def _reply(conn: Connection) -> Any:
    reply = conn.recv()
    if isinstance(reply, tuple) and reply and reply[0] == "error":
        raise RuntimeError(f"the other process: {reply[1]}")
    return reply


# --- handoff + resume -------------------------------------------------------------------


def _resume_worker(conn: Connection, url: str, prefix: str) -> None:
    """Process B: resume calls by token; time the raw LRANGE + json.loads floor beside it."""
    import redis

    store = _store(url, prefix)
    raw = redis.Redis.from_url(url)
    key = f"bench:{prefix}:messages"
    n_messages = 0
    perf = time.perf_counter_ns
    while True:
        msg = conn.recv()
        try:
            if msg[0] == "stop":
                break
            if msg[0] == "messages":
                raw.delete(key)
                for i in range(0, len(msg[1]), 1_000):
                    raw.rpush(key, *msg[1][i : i + 1_000])
                n_messages = len(msg[1])
                fresh()
                conn.send(("ok",))
                continue
            _, call_id, token, rotation = msg
            out: dict[str, Any] = {}

            def do_resume(out: dict[str, Any] = out, token: str = token) -> None:
                t0 = perf()
                out["session"] = store.resume(token, agent="billing")
                out["resume"] = perf() - t0

            def do_floor(out: dict[str, Any] = out) -> None:
                t0 = perf()
                loaded = [json.loads(m) for m in raw.lrange(key, 0, -1)]
                out["floor"] = perf() - t0
                out["messages"] = len(loaded)

            steps = [do_resume, do_floor]
            k = rotation % 2
            for step in steps[k:] + steps[:k]:
                step()
            session = out["session"]
            if out["messages"] != n_messages:
                raise RuntimeError(f"the floor read {out['messages']} messages, not {n_messages}")
            conn.send((out["resume"], out["floor"], session.seq, len(session.state.turns)))
            store.delete(call_id)  # untimed: keep the server's memory bounded
        except Exception as exc:  # reported to A, which fails the figure with it
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    raw.delete(key)
    raw.close()
    store.close()


def _messages(session: vs.Session) -> list[str]:
    return [json.dumps(m) for m in session.context("openai")]


def handoff(calls: dict[int, int], warmup: int) -> list[Figure]:
    """Rows for each call size in ``calls`` (turns -> number of calls handed off)."""
    missing = _missing("handoff + resume, 2 processes, Redis", "200, 1,000 turns")
    if missing:
        return [missing]
    figures: list[Figure] = []
    perf = time.perf_counter_ns
    prefix = f"benchh{os.getpid()}"
    with server() as url:
        store = _store(url, prefix)
        conn, proc = _spawn(_resume_worker, url, prefix)
        try:
            for turns, n_calls in calls.items():
                got: dict[str, list[int]] = {"handoff": [], "resume": [], "sum": [], "floor": []}
                for i in range(n_calls + warmup):
                    s = build_call(store, f"h{turns}-{i}", turns)
                    if i == 0:
                        conn.send(("messages", _messages(s)))
                        _reply(conn)
                    fresh()
                    t0 = perf()
                    token = s.handoff(to="billing").to_token()
                    handoff_ns = perf() - t0
                    conn.send(("resume", s.call_id, token, i))
                    resume_ns, floor_ns, seq, n_turns = _reply(conn)
                    if not (seq == s.seq + 1 and n_turns == 2 * turns):
                        raise RuntimeError(f"B resumed something else: seq {seq}, {n_turns} turns")
                    if i >= warmup:
                        got["handoff"].append(handoff_ns)
                        got["resume"].append(resume_ns)
                        got["sum"].append(handoff_ns + resume_ns)
                        got["floor"].append(floor_ns)
                n = f"{turns:,} turns"
                floor = "B: bare LRANGE of the call's OpenAI messages (one JSON each) + json.loads"
                total = timed_figure(
                    "handoff + resume, 2 processes, Redis",
                    n,
                    got["sum"],
                    got["floor"],
                    floor=floor,
                    budget=HANDOFF_BUDGET.get(turns, "none in DESIGN.md"),
                )
                if turns == 200 and total.p50 is not None and total.p99 is not None:
                    ok = total.p50 <= 1_500 and total.p99 <= 5_000
                    total.verdict = "within budget" if ok else "OVER BUDGET"
                elif turns == 1000 and total.ratio is not None:
                    total.verdict = "within budget" if total.ratio < 1 else "OVER BUDGET"
                resume = timed_figure(
                    "resume in B over Redis: store.resume(token)", n, got["resume"], got["floor"], floor=floor
                )
                figures += [timed_figure("handoff in A over Redis: handoff() + to_token()", n, got["handoff"])]
                figures += [resume, total]
        finally:
            _stop(conn, proc)
            store.close()
    return figures


# --- appends per second -----------------------------------------------------------------


async def _drive(url: str, prefix: str, calls: int, rounds: int, tag: str, go: Callable[[], Any]) -> dict[str, int]:
    """``calls`` sessions appending ``rounds`` turns each, concurrently; then the raw floor.
    ``go`` is awaited between the setup and each timed part (the processes' barrier)."""
    import redis.asyncio as aioredis

    # the appends are pipelined on one connection; the store's other commands (opens, lease
    # renewals) use its pool, which waits past max_connections
    store = _store(url, prefix)
    sessions = [await store.aopen(f"{tag}-{i}", agent="triage") for i in range(calls)]

    async def one(s: Any, n: int) -> None:
        for _ in range(n):
            await s.arecord(vs.UserSpoke(TEXT))

    await asyncio.gather(*(one(s, 1) for s in sessions))  # warm: every connection open
    fresh()
    await go()
    raw = aioredis.Redis.from_url(url, max_connections=calls + 16)
    cpu0 = _server_cpu(await raw.info("cpu"))  # the server's CPU over the timed appends only
    t0 = time.monotonic_ns()
    await asyncio.gather(*(one(s, rounds) for s in sessions))
    t1 = time.monotonic_ns()
    cpu1 = _server_cpu(await raw.info("cpu"))
    data = vs.plugins.encode_event(vs.UserSpoke(TEXT), "triage")

    async def push(i: int, n: int) -> None:
        for _ in range(n):
            await raw.rpush(f"bench:{tag}:raw:{i}", data)

    await asyncio.gather(*(push(i, 1) for i in range(calls)))
    await go()
    r0 = time.monotonic_ns()
    await asyncio.gather(*(push(i, rounds) for i in range(calls)))
    r1 = time.monotonic_ns()
    await raw.delete(*(f"bench:{tag}:raw:{i}" for i in range(calls)))
    await raw.aclose()
    for s in sessions:  # stop their background lease renewals
        await s.__aexit__(None, None, None)
    for i in range(calls):
        await store.adelete(f"{tag}-{i}")
    await store.aclose()
    return {"appends": calls * rounds, "t0": t0, "t1": t1, "r0": r0, "r1": r1, "cpu_ns": cpu1 - cpu0}


def _server_cpu(info: dict[str, Any]) -> int:
    """The Redis server's CPU time so far (its main thread and the others), in ns."""
    return int((float(info["used_cpu_user"]) + float(info["used_cpu_sys"])) * 1e9)


def _rate_worker(conn: Connection, url: str, prefix: str, calls: int, rounds: int, tag: str) -> None:
    """One of the processes of the 2-process figure: set up, then wait for A's go before each part."""
    loop = asyncio.new_event_loop()

    async def go() -> None:
        conn.send(("ready",))
        await loop.run_in_executor(None, conn.recv)

    try:
        out = loop.run_until_complete(_drive(url, prefix, calls, rounds, tag, go))
        conn.send(("done", out))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    conn.recv()  # stop
    loop.close()


def _rate_figures(name: str, n: str, parts: list[dict[str, int]], note: str) -> Figure:
    appends = sum(p["appends"] for p in parts)
    ours = (max(p["t1"] for p in parts) - min(p["t0"] for p in parts)) / appends / 1000.0
    raw = (max(p["r1"] for p in parts) - min(p["r0"] for p in parts)) / appends / 1000.0
    rate, raw_rate = 1e6 / ours, 1e6 / raw
    return Figure(
        name,
        n,
        "us",
        ours,
        None,
        raw,
        "bare RPUSH of the same bytes, as many redis.asyncio tasks (wall µs per push)",
        budget="≥ 20,000 appends/s from one process (≤ 50 µs wall per append)",
        verdict=("within budget" if rate >= RATE_BUDGET else "OVER BUDGET") if len(parts) == 1 else "n/a",
        note=f"{rate:,.0f} appends/s ({raw_rate:,.0f} raw RPUSH/s); {note}",
        raw={"appends": appends, "appends_per_s": rate, "raw_per_s": raw_rate},
    )


def throughput(calls: int, rounds: int) -> list[Figure]:
    name = "appends/s, 1,000 concurrent calls (wall µs per append)"
    missing = _missing(name, f"{calls:,} calls")
    if missing:
        return [missing]
    figures: list[Figure] = []
    with server() as url:

        async def nothing() -> None:
            return None

        prefix = f"bencht{os.getpid()}"
        one = asyncio.run(_drive(url, prefix, calls, rounds, "p1", nothing))
        figures.append(
            _rate_figures(
                f"{name}, 1 process, Redis",
                f"{calls:,} calls",
                [one],
                f"{rounds} appends per call, one event loop",
            )
        )
        per_append = one["cpu_ns"] / one["appends"] / 1000.0
        figures.append(
            Figure(
                "Redis server CPU per append (one event), 1,000 concurrent calls",
                f"{calls:,} calls",
                "us",
                per_append,
                None,
                note=f"INFO cpu over the timed appends: one server core would take "
                f"{1e6 / per_append:,.0f} appends/s (docs/scaling.md)",
                raw={"server_cpu_ns": one["cpu_ns"], "appends": one["appends"]},
            )
        )
        workers = [_spawn(_rate_worker, url, prefix, calls // 2, rounds, f"p2{k}") for k in range(2)]
        try:
            parts: list[dict[str, int]] = []
            for _ in range(2):  # the timed appends, then the raw floor: both start together
                for conn, _proc in workers:
                    _reply(conn)
                for conn, _proc in workers:
                    conn.send(("go",))
            for conn, _proc in workers:
                parts.append(_reply(conn)[1])
        finally:
            for conn, proc in workers:
                _stop(conn, proc)
        figures.append(
            _rate_figures(
                f"{name}, 2 processes, Redis",
                f"{calls:,} calls",
                parts,
                f"{calls // 2} calls per process, {rounds} appends per call",
            )
        )
    return figures


# --- watch across processes -------------------------------------------------------------


def _watch_appender(conn: Connection, url: str, prefix: str, n: int) -> None:
    """Process B: append n notes stamped with the send time, then publish n bare stamps."""
    import redis

    try:
        store = _store(url, prefix)
        raw = redis.Redis.from_url(url)
        conn.recv()  # the watcher follows the call
        for i in range(n):
            time.sleep(0.004)
            store.append("w", vs.Note(f"tick {i}", id=f"t{time.monotonic_ns()}"))
        store.append("w", vs.CallEnded("done"))
        conn.recv()  # the raw subscriber is subscribed
        for _ in range(n):
            time.sleep(0.004)
            raw.publish(f"bench:{prefix}:raw", str(time.monotonic_ns()))
        raw.publish(f"bench:{prefix}:raw", "end")
        store.delete("w")
        raw.close()
        store.close()
        conn.send(("done",))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    conn.recv()  # stop


def watch(samples: int, warmup: int = 5) -> list[Figure]:
    name = "watch: append seen by a watcher in another process, Redis"
    missing = _missing(name, "1 event")
    if missing:
        return [missing]
    import redis.asyncio as aioredis

    prefix = f"benchw{os.getpid()}"
    lat: list[int] = []
    floor: list[int] = []
    with server() as url:
        store = _store(url, prefix)
        store.open("w", agent="triage")
        conn, proc = _spawn(_watch_appender, url, prefix, samples + warmup)

        async def follow() -> None:
            conn.send(("go",))
            async for ev in store.awatch("w", after=1):
                if isinstance(ev, vs.Note):
                    lat.append(time.monotonic_ns() - int(ev.id[1:]))
            client = aioredis.Redis.from_url(url)
            ps = client.pubsub()
            await ps.subscribe(f"bench:{prefix}:raw")
            while (await ps.get_message(timeout=5.0) or {}).get("type") != "subscribe":
                pass
            conn.send(("go",))
            while True:
                msg = await ps.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if msg is None:
                    raise RuntimeError("the raw publisher went quiet")
                if msg["data"] == b"end":
                    break
                floor.append(time.monotonic_ns() - int(msg["data"]))
            await ps.aclose()
            await client.aclose()
            await store.aclose()

        try:
            fresh()
            asyncio.run(follow())
            _reply(conn)
        finally:
            _stop(conn, proc)
    lat, floor = lat[warmup:], floor[warmup:]
    fig = timed_figure(
        name,
        "1 event",
        lat,
        floor,
        floor="bare PUBLISH in B seen by a redis.asyncio subscriber in A",
        budget="p50 ≤ 1 ms",
        note="a publish from the append script wakes the watcher, which reads the metadata and the new events",
    )
    if fig.p50 is not None:
        fig.verdict = "within budget" if fig.p50 <= 1_000 else "OVER BUDGET"
    return [fig]


# --- bytes stored per call ------------------------------------------------------------------


def bytes_per_call() -> list[Figure]:
    """Redis memory of one 1,000-turn call (``MEMORY USAGE`` summed over its keys, Redis's own
    count with its overhead) against the call's raw JSON (its OpenAI messages, as storage.py),
    without snapshots and with them (the newest one, as ``snapshot_every`` leaves it). Beside
    it, the raw floor: the same messages as one JSON text each in a list (``RPUSH``)."""
    missing = _missing("bytes stored per call, Redis", "1,000 turns")
    if missing is not None:
        return [missing]
    import redis

    turns = 1_000
    figures: list[Figure] = []
    with server() as url:
        raw = redis.Redis.from_url(url)
        for label, every in (("without snapshots", 0), ("with its snapshot", 500)):
            prefix = f"bytes{len(figures)}"
            store = vs.open_store(f"{url}?prefix={prefix}", signing_keys=KEYS, snapshot_every=every)
            session = build_call(store, "bytes-call", turns)
            messages = session.context("openai")
            raw_json = len(json.dumps(messages).encode())
            keys = [k for k in raw.scan_iter(match=f"{prefix}:*", count=1000) if b":calls" not in k]
            used = sum(int(raw.memory_usage(k, samples=0) or 0) for k in keys)
            floor_key = f"floor:{prefix}"
            raw.rpush(floor_key, *[json.dumps(m) for m in messages])
            floor = int(raw.memory_usage(floor_key, samples=0) or 0)
            store.close()
            ratio = used / raw_json
            figures.append(
                Figure(
                    f"bytes stored per call on Redis, {label}",
                    f"{turns:,} turns",
                    "bytes",
                    float(used),
                    None,
                    float(raw_json),
                    "the call's raw JSON (OpenAI messages)",
                    budget="≤ 1.3 × raw JSON",
                    verdict="within budget" if ratio <= 1.3 else "OVER BUDGET",
                    note=f"{len(keys)} keys; the raw list of the same messages (RPUSH) uses {floor:,} bytes "
                    f"({floor / raw_json:.2f}× raw JSON)",
                )
            )
    return figures
