"""LangGraph: a graph step, and the bytes of a call, with ``VoiceStateSaver`` beside LangGraph's own savers.

DESIGN budgets: a LangGraph agent on a voice call stores ≤ 2 × the raw JSON of its messages;
the issue's goal for a step: within 1.5 × the same graph on LangGraph's ``InMemorySaver`` at
1,000 turns. Needs voicestate-langchain, langgraph, langgraph-checkpoint-sqlite and (for the
Redis rows) voicestate-redis and langgraph-checkpoint-plainredis; ``nox -s bench`` installs them.

The graph is ``StateGraph(MessagesState)`` with one node that returns the rest of the turn (the
tool call and its result every 5th turn, then the reply: what a model would produce), the peer
baseline's turn (20-word caller, 40-word reply, 2.4 messages a turn; benchmarks/peers). A turn is
ONE graph step, ``graph.invoke({"messages": [caller]}, config)``, with LangGraph's default
durability (it saves the input checkpoint, one after the input is applied and one after the
node). The arms, each a graph compiled with its saver:

- ``InMemorySaver``: LangGraph's in-process saver, the floor of the 1.5 × goal;
- ``SqliteSaver`` (langgraph-checkpoint-sqlite) on a file;
- ``VoiceStateSaver`` on a voice call (``thread_id`` = the call, the owner's session bound), on
  ``sqlite:///`` and on ``memory://``: the messages are the call's, recorded once;
- on Redis (a private server): ``VoiceStateSaver`` on voicestate-redis, and
  langgraph-checkpoint-plainredis's ``RedisSaver``. LangGraph's own Redis saver
  (langgraph-checkpoint-redis) needs the RedisJSON and RediSearch modules, which plain Redis
  lacks: it is not measured.

The arms grow in lockstep, one step each per turn in an order rotated every turn, so that
drift hits them alike: to 20 turns, then ``steps`` timed steps, to 200, ``steps`` timed. At
1,000 turns a LangGraph saver holds on the order of a GiB (every checkpoint stores the whole
message list again), so its thread is seeded with the 1,000-turn prefix in one step (one
checkpoint, as the peer baseline did) and its bytes are not counted there; the voicestate arms
keep growing step by step to 1,000. Then ``steps`` timed steps, interleaved.

Bytes per call: voicestate on SQLite counts each stored event as figure e does (``len(data)
+ len(chain) + 8``), with the store's default snapshots on and the snapshot's bytes in the note
(figure e's two rows); ``SqliteSaver`` the lengths of its rows' blobs (checkpoint, metadata and
write values); on Redis, ``MEMORY USAGE`` summed over the thread's keys (Redis's own count,
its per-key and per-element overhead included; voicestate-redis holds a call without
checkpoints at about 1.7 × its raw JSON by that count). Raw JSON: the conversation as OpenAI
chat messages, one JSON text each, as every other bytes figure.

    cd benchmarks && python -m vsbench.langgraph_saver [--quick]   # these figures alone
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import voicestate as vs

from .common import KEYS, Figure, fresh, timed_figure, unmeasured

SIZES = (20, 200, 1000)
NATURAL_LIMIT = 200  # beyond this, LangGraph's savers are seeded, not grown (their storage is O(N²))
STEP_GOAL = 1.5  # × InMemorySaver at 1,000 turns
BYTES_BUDGET = 2.0  # × the raw JSON of the messages


def _missing() -> str | None:
    for mod in ("voicestate_langchain", "langgraph.graph", "langgraph.checkpoint.sqlite"):
        try:
            __import__(mod)
        except ImportError:
            return f"{mod} is not installed (nox -s bench installs it)"
    return None


# --- the turns ---------------------------------------------------------------------------------


def _turns(n: int) -> list[tuple[Any, list[Any], list[dict[str, Any]]]]:
    """(the caller's message, what the node returns, the turn as OpenAI messages) for n turns."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from peers.common import chat_messages, make_turns

    out = []
    for t in make_turns(n):
        reply: list[Any] = []
        if t.tool is not None:
            reply.append(
                AIMessage("", tool_calls=[{"name": t.tool.name, "args": dict(t.tool.arguments), "id": t.tool.call_id}])
            )
            reply.append(ToolMessage(json.dumps(t.tool.result), tool_call_id=t.tool.call_id))
        reply.append(AIMessage(t.agent))
        out.append((HumanMessage(t.user), reply, chat_messages(t)))
    return out


class Arm:
    """One saver, its graph and its thread; ``step`` runs one turn, ``stored`` counts its bytes."""

    def __init__(self, name: str, saver: Any, thread: str, stored: Callable[[], int | None]) -> None:
        from langgraph.graph import END, START, MessagesState, StateGraph

        self.name, self.saver, self.thread, self.stored = name, saver, thread, stored
        self.reply: list[Any] = []

        def agent(state: MessagesState) -> dict[str, Any]:
            return {"messages": self.reply}

        builder = StateGraph(MessagesState).add_node("agent", agent).add_edge(START, "agent").add_edge("agent", END)
        self.graph = builder.compile(checkpointer=saver)
        self.config: Any = {"configurable": {"thread_id": thread}}
        self.turns = 0
        self.samples: dict[int, list[int]] = {}

    def step(self, user: Any, reply: list[Any]) -> int:
        self.reply = [m.model_copy() for m in reply]  # fresh objects: ids are the graph's to give
        t0 = time.perf_counter_ns()
        self.graph.invoke({"messages": [user.model_copy()]}, self.config)
        took = time.perf_counter_ns() - t0
        self.turns += 1 if self.turns >= 0 else 0
        return took

    def seed(self, turns: list[tuple[Any, list[Any], list[dict[str, Any]]]]) -> None:
        """The whole prefix in one step: one checkpoint holding every message (its bytes not counted)."""
        prefix: list[Any] = []
        for user, reply, _ in turns[:-1]:
            prefix += [user.model_copy(), *(m.model_copy() for m in reply)]
        user, reply, _ = turns[-1]
        self.reply = [m.model_copy() for m in reply]
        self.graph.invoke({"messages": [*prefix, user.model_copy()]}, self.config)
        self.turns = -len(turns)  # seeded: never compared with a grown arm's bytes


# --- the arms ----------------------------------------------------------------------------------


def _vs_bytes(store_url: str, call_id: str) -> Callable[[], int | None]:
    path = store_url.removeprefix("sqlite:///")

    def count() -> int:
        conn = sqlite3.connect(path)
        try:
            got = conn.execute(
                "SELECT sum(length(data)) + sum(length(chain)) + 8 * count(*) FROM vs_events WHERE call_id = ?",
                (call_id,),
            ).fetchone()[0]
            snap = conn.execute("SELECT length(data) FROM vs_snapshots WHERE call_id = ?", (call_id,)).fetchone()
        finally:
            conn.close()
        SNAPSHOTS[call_id] = int(snap[0]) if snap else 0
        return int(got or 0)

    return count


SNAPSHOTS: dict[str, int] = {}  # call id -> bytes of its snapshot, as the last count saw it


def _sqlite_saver_bytes(path: Path, thread: str) -> Callable[[], int | None]:
    def count() -> int:
        conn = sqlite3.connect(path)
        try:
            cp = conn.execute(
                "SELECT sum(length(checkpoint)) + sum(length(metadata)) FROM checkpoints WHERE thread_id = ?", (thread,)
            ).fetchone()[0]
            wr = conn.execute("SELECT sum(length(value)) FROM writes WHERE thread_id = ?", (thread,)).fetchone()[0]
        finally:
            conn.close()
        return int(cp or 0) + int(wr or 0)

    return count


def _redis_bytes(url: str, match: str) -> Callable[[], int | None]:
    def count() -> int:
        import redis

        r = redis.Redis.from_url(url)
        try:
            return sum(int(r.memory_usage(k, samples=0) or 0) for k in r.scan_iter(match=match, count=1000))
        finally:
            r.close()

    return count


def _voice_arm(name: str, store: vs.Store, call_id: str, stored: Callable[[], int | None]) -> Arm:
    from voicestate_langchain import VoiceStateSaver

    session = store.open(call_id, agent="billing")
    return Arm(name, VoiceStateSaver(store, session=session), call_id, stored)


@contextlib.contextmanager
def _arms(tmp: Path, thread: str) -> Iterator[tuple[list[Arm], Callable[[], list[Arm]]]]:
    """The arms that grow step by step, and a factory of the LangGraph arms seeded at 1,000 turns."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    with contextlib.ExitStack() as stack:
        sq_path = tmp / f"lg-{thread}.db"
        sq_conn = sqlite3.connect(sq_path, check_same_thread=False)
        stack.callback(sq_conn.close)
        vs_url = f"sqlite:///{tmp / f'vs-{thread}.db'}"
        vs_sqlite = vs.open_store(vs_url, signing_keys=KEYS)  # default snapshots: counted apart
        stack.callback(vs_sqlite.close)
        vs_memory = vs.open_store("memory://", signing_keys=KEYS)
        stack.callback(vs_memory.close)
        grown = [
            Arm("InMemorySaver", InMemorySaver(), thread, lambda: None),
            Arm("SqliteSaver (file)", SqliteSaver(sq_conn), thread, _sqlite_saver_bytes(sq_path, thread)),
            _voice_arm("VoiceStateSaver, voice call, sqlite:///", vs_sqlite, thread, _vs_bytes(vs_url, thread)),
            _voice_arm("VoiceStateSaver, voice call, memory://", vs_memory, thread, lambda: None),
        ]
        redis_url = stack.enter_context(_redis()) if _has_redis() else None
        if redis_url is not None:
            from langgraph_checkpoint_plainredis import RedisSaver

            prefix = f"vs{os.getpid()}{thread}"
            vs_redis = vs.open_store(f"{redis_url}?prefix={prefix}", signing_keys=KEYS)
            stack.callback(vs_redis.close)
            grown.append(
                _voice_arm(
                    "VoiceStateSaver, voice call, Redis", vs_redis, thread, _redis_bytes(redis_url, f"{prefix}:*")
                )
            )
            lg_prefix = f"lg{os.getpid()}{thread}"
            grown.append(
                Arm(
                    "plainredis RedisSaver",
                    RedisSaver(url=redis_url, prefix=lg_prefix),
                    thread,
                    _redis_bytes(redis_url, f"{lg_prefix}*"),
                )
            )

        def seeded() -> list[Arm]:
            seeded_path = tmp / f"lg-{thread}-seeded.db"
            conn = sqlite3.connect(seeded_path, check_same_thread=False)
            stack.callback(conn.close)
            arms = [
                Arm("InMemorySaver", InMemorySaver(), f"{thread}-s", lambda: None),
                Arm("SqliteSaver (file)", SqliteSaver(conn), f"{thread}-s", lambda: None),
            ]
            if redis_url is not None:
                from langgraph_checkpoint_plainredis import RedisSaver

                arms.append(
                    Arm(
                        "plainredis RedisSaver",
                        RedisSaver(url=redis_url, prefix=f"lgs{os.getpid()}"),
                        f"{thread}-s",
                        lambda: None,
                    )
                )
            return arms

        yield grown, seeded


def _has_redis() -> bool:
    try:
        import langgraph_checkpoint_plainredis  # noqa: F401

        import voicestate_redis  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    from voicestate_redis.testing import redis_server

    with redis_server() as url:
        yield url


# --- the run -----------------------------------------------------------------------------------


def _lockstep(arms: list[Arm], turns: list[Any], start: int, stop: int, key: int | None = None) -> None:
    """Turns ``start .. stop - 1``, one step of each arm per turn, the order rotated every turn."""
    for i in range(start, stop):
        user, reply, _ = turns[i]
        for arm in arms[i % len(arms) :] + arms[: i % len(arms)]:
            took = arm.step(user, reply)
            if key is not None:
                arm.samples.setdefault(key, []).append(took)


def run(tmp: Path, steps: int = 30) -> list[Figure]:
    why = _missing()
    if why is not None:
        return [unmeasured("LangGraph step and bytes per call", "20–1,000 turns", why)]
    fresh()
    turns = _turns(SIZES[-1] + steps)
    figures: list[Figure] = []
    with _arms(tmp, "call-lg") as (grown, seeded):
        done = 0
        for size in SIZES:
            ours = size > NATURAL_LIMIT
            natural = [a for a in grown if not ours or a.name.startswith("VoiceStateSaver")]
            _lockstep(natural, turns, done, size)  # grown step by step, untimed
            arms = list(natural)
            if ours:
                for arm in seeded():
                    arm.seed(turns[:size])
                    arms.append(arm)
            _lockstep(arms, turns, size, size + steps, key=size)  # timed: the history is size.. turns
            done = size + steps
            raw_json = sum(len(json.dumps(m).encode()) for t in turns[:done] for m in t[2])
            figures += _figures(size, arms, raw_json, done)
    return figures


def _figures(size: int, arms: list[Arm], raw_json: int, turns: int) -> list[Figure]:
    floor = next(a for a in arms if a.name == "InMemorySaver")
    out: list[Figure] = []
    for arm in arms:
        is_ours = arm.name.startswith("VoiceStateSaver")
        step = timed_figure(
            f"LangGraph step, {arm.name}",
            f"{size:,} turns",
            arm.samples[size],
            floor.samples[size],
            floor="InMemorySaver, same graph, same run",
            budget=f"≤ {STEP_GOAL} × InMemorySaver at 1,000 turns" if is_ours else "none (a peer)",
            note=f"{len(arm.samples[size])} steps",
        )
        if is_ours and size == SIZES[-1] and step.ratio is not None:
            step.verdict = "within goal" if step.ratio <= STEP_GOAL else "OVER GOAL"
        out.append(step)
        stored = arm.stored() if arm.turns == turns else None  # a seeded arm is not counted
        if stored:
            bratio = stored / raw_json
            out.append(
                Figure(
                    f"LangGraph bytes per call, {arm.name}",
                    f"{size:,} turns",
                    "bytes",
                    float(stored),
                    None,
                    float(raw_json),
                    "the conversation's raw JSON (OpenAI messages)",
                    budget=f"≤ {BYTES_BUDGET} × raw JSON" if is_ours else "none (a peer)",
                    verdict=("within budget" if bratio <= BYTES_BUDGET else "OVER BUDGET") if is_ours else "n/a",
                    note=f"{bratio:.2f}× raw JSON"
                    + (
                        f"; the log's events (as figure e counts); its one snapshot adds {SNAPSHOTS[arm.thread]:,} B"
                        if "sqlite" in arm.name and arm.thread in SNAPSHOTS
                        else (
                            "; Redis MEMORY USAGE of the call's keys, snapshot included" if "Redis" in arm.name else ""
                        )
                    ),
                    raw={"bytes": stored, "raw_json": raw_json},
                )
            )
    return out


def main() -> int:
    import argparse
    import tempfile

    from .report import markdown

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vsbench-lg-") as tmp:
        figures = run(Path(tmp), steps=8 if args.quick else 30)
    print(markdown(figures, title="LangGraph savers", quick=args.quick, seconds=0.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
