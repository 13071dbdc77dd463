"""What every peer shares: the call, the sampling plan, the Redis counters, the row, the drivers.

The call is the peer baseline's (shared/notes/peer-baseline.md): a turn is a user
utterance of 20 words and an assistant reply of 40; every 5th turn also an assistant
tool call and its result (2.4 messages a turn on average). Each peer turns a ``Turn``
into its own messages (outside the timer: building them is the application's work).

A peer is an adapter (``SyncPeer`` or ``AsyncPeer``) over the library's own API; the
drivers below measure every adapter the same way:

- **append**: the wall time of persisting ONE turn, on the last turns of sessions
  already holding about N turns (``plan``: N=20, turns 11-20 of 20 sessions; N=200,
  turns 101-200 of 2; N=1000, turns 801-1000 of 1, with 200 samples), the prefix of
  each session seeded in bulk, untimed;
- **resume warm**: a fresh library object (what a receiving agent builds) on an already
  connected client loading the whole N-turn history into the library's messages,
  rotating over those sessions;
- **redis cmds/append**: the ``INFO commandstats`` delta over the timed appends (the
  ``INFO`` calls themselves left out) divided by the appends; commands a Lua script
  runs count too, as Redis counts them;
- **bytes/session**: one more session grown naturally (every turn through append),
  the sum of ``MEMORY USAGE key SAMPLES 0`` over its keys (found with ``SCAN``).

Warm-ups (appends and resumes on a throwaway session) run first. ``perf_counter_ns``,
gc left on; ``gc.collect()`` before each timed loop only.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from vsbench.common import fresh, percentiles_us, sentence

perf = time.perf_counter_ns

TOOL_ARGS = {"account": "A-77", "month": "2026-03", "limit": 5}


# --- the call -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    call_id: str
    name: str
    arguments: dict[str, Any]
    result: dict[str, Any]


@dataclass(frozen=True)
class Turn:
    """One turn: the caller's utterance, the tool call and result (every 5th turn), the reply."""

    index: int
    user: str
    agent: str
    tool: Tool | None = None

    @property
    def n_messages(self) -> int:
        return 4 if self.tool is not None else 2


def make_turns(n: int, seed: int = 7) -> list[Turn]:
    """The ``n`` turns of a call, the same text for every peer."""
    rng = random.Random(seed)
    out: list[Turn] = []
    for i in range(n):
        user = sentence(rng, 20)
        tool = None
        if i % 5 == 4:
            result = {"invoices": [{"id": f"INV-{i}-{k}", "amount": 42.5 + k, "status": "paid"} for k in range(2)]}
            tool = Tool(f"call_{i:05d}", "lookup_invoices", dict(TOOL_ARGS), result)
        out.append(Turn(i, user, sentence(rng, 40), tool))
    return out


def n_messages(turns: Sequence[Turn]) -> int:
    return sum(t.n_messages for t in turns)


def chat_messages(turn: Turn) -> list[dict[str, Any]]:
    """The turn as OpenAI chat messages (what the raw floors store, one JSON text each)."""
    out: list[dict[str, Any]] = [{"role": "user", "content": turn.user}]
    if turn.tool is not None:
        t = turn.tool
        call = {"id": t.call_id, "type": "function", "function": {"name": t.name, "arguments": json.dumps(t.arguments)}}
        out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        out.append({"role": "tool", "tool_call_id": t.call_id, "content": json.dumps(t.result)})
    out.append({"role": "assistant", "content": turn.agent})
    return out


# --- settings and the sampling plan -------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...] = (20, 200, 1000)
    samples: int = 200  # appends and warm resumes per figure
    warmup: int = 10
    natural_limit: dict[str, int] = field(default_factory=dict)  # peer -> largest N grown naturally


@dataclass(frozen=True)
class Plan:
    """Append sessions for one N: ``sessions`` sessions, ``seeded`` turns seeded, ``timed`` appended."""

    n: int
    sessions: int
    seeded: int
    timed: int


def plan(n: int, samples: int) -> Plan:
    timed = max(1, min(n // 2, samples))
    sessions = -(-samples // timed)
    return Plan(n, sessions, n - timed, timed)


@dataclass(frozen=True)
class Ctx:
    """What a driver gets: the server, an admin client for the counters, the run's key prefix."""

    url: str
    admin: redis.Redis
    prefix: str  # every key of the run starts with it
    settings: Settings


# --- Redis counters -----------------------------------------------------------------------


def command_calls(admin: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = admin.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def add_delta(total: dict[str, int], before: dict[str, int], after: dict[str, int]) -> None:
    """Add ``after - before`` per command into ``total``, leaving out the ``INFO`` calls."""
    for name, calls in after.items():
        d = calls - before.get(name, 0)
        if d and name != "info":
            total[name] = total.get(name, 0) + d


def memory_usage(admin: redis.Redis, pattern: str) -> tuple[int, int]:
    """(bytes, keys): ``MEMORY USAGE key SAMPLES 0`` summed over the keys ``SCAN`` finds."""
    keys = list(admin.scan_iter(match=pattern, count=1000))
    total = 0
    for i in range(0, len(keys), 500):
        pipe = admin.pipeline(transaction=False)
        for k in keys[i : i + 500]:
            pipe.memory_usage(k, samples=0)
        total += sum(int(v or 0) for v in pipe.execute())
    return total, len(keys)


def purge(admin: redis.Redis, pattern: str) -> None:
    """Remove the keys matching ``pattern`` (never FLUSHDB: the server may be shared)."""
    batch: list[bytes] = []
    for key in admin.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            admin.unlink(*batch)
            batch.clear()
    if batch:
        admin.unlink(*batch)


# --- the row --------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: one library (or floor) at one N."""

    peer: str
    n: int
    group: str  # "floor", "ours", "peer"
    append_us: dict[str, float] | None = None
    resume_us: dict[str, float] | None = None
    cmds_per_append: float | None = None
    bytes_per_session: int | None = None
    commands_per_append: dict[str, float] = field(default_factory=dict)
    keys_per_session: int | None = None
    error: str | None = None
    note: str = ""

    def p(self, figure: str, q: str = "p50") -> float | None:
        stats = self.append_us if figure == "append" else self.resume_us
        return None if stats is None else stats[q]


def finish_row(
    row: Row,
    append_ns: list[int],
    resume_ns: list[int],
    commands: dict[str, int],
    appends: int,
    memory: tuple[int, int] | None,
) -> Row:
    if append_ns:
        row.append_us = percentiles_us(append_ns)
    if resume_ns:
        row.resume_us = percentiles_us(resume_ns)
    if appends and commands:
        row.commands_per_append = {k: v / appends for k, v in sorted(commands.items())}
        row.cmds_per_append = sum(commands.values()) / appends
    if memory is not None:
        row.bytes_per_session, row.keys_per_session = memory
    return row


# --- adapters and drivers ---------------------------------------------------------------------


class SyncPeer(Protocol):
    name: str
    group: str
    stores: bool  # False for PING: nothing to seed, count or weigh

    def open(self, sid: str) -> Any: ...
    def prepare(self, turn: Turn) -> Any: ...
    def seed(self, handle: Any, turns: Sequence[Turn]) -> None: ...
    def append(self, handle: Any, payload: Any) -> None: ...
    def resume(self, sid: str) -> int: ...  # messages loaded
    def pattern(self, sid: str) -> str: ...  # SCAN pattern of one session's keys
    def close(self, handle: Any) -> None: ...


class AsyncPeer(Protocol):
    name: str
    group: str
    stores: bool

    async def open(self, sid: str) -> Any: ...
    def prepare(self, turn: Turn) -> Any: ...
    async def seed(self, handle: Any, turns: Sequence[Turn]) -> None: ...
    async def append(self, handle: Any, payload: Any) -> None: ...
    async def resume(self, sid: str) -> int: ...
    def pattern(self, sid: str) -> str: ...
    async def close(self, handle: Any) -> None: ...


def _check(peer: str, got: int, want: int) -> None:
    if got < want:
        raise RuntimeError(f"{peer}: resume loaded {got} messages, the call holds {want}")


def _natural(ctx: Ctx, name: str, n: int) -> bool:
    limit = ctx.settings.natural_limit.get(name)
    return limit is None or n <= limit


def _not_grown(ctx: Ctx, name: str) -> str:
    limit = ctx.settings.natural_limit.get(name)
    return f"bytes/session not measured: no call is grown naturally past {limit} turns (storage grows as N²)"


def drive_sync(peer: SyncPeer, ctx: Ctx, n: int, tag: str) -> Row:
    """Measure a synchronous library at N turns (see the module docstring)."""
    s = ctx.settings
    turns = make_turns(n)
    want = n_messages(turns) if peer.stores else 0
    p = plan(n, s.samples)
    # warm-up: a throwaway session, a few appends and resumes
    warm = peer.open(f"{tag}-warm")
    peer.seed(warm, turns[:10])
    for t in turns[10 : 10 + s.warmup]:
        peer.append(warm, peer.prepare(t))
    for _ in range(s.warmup):
        peer.resume(f"{tag}-warm")
    peer.close(warm)
    append_ns: list[int] = []
    commands: dict[str, int] = {}
    sids: list[str] = []
    for k in range(p.sessions):
        sid = f"{tag}-a{k}"
        h = peer.open(sid)
        peer.seed(h, turns[: p.seeded])
        payloads = [peer.prepare(t) for t in turns[p.seeded :]]
        fresh()
        before = command_calls(ctx.admin)
        for payload in payloads:
            t0 = perf()
            peer.append(h, payload)
            append_ns.append(perf() - t0)
        add_delta(commands, before, command_calls(ctx.admin))
        peer.close(h)
        sids.append(sid)
    resume_ns: list[int] = []
    fresh()
    for i in range(s.samples):
        sid = sids[i % len(sids)]
        t0 = perf()
        got = peer.resume(sid)
        resume_ns.append(perf() - t0)
        if peer.stores:
            _check(peer.name, got, want)
    memory = None
    if peer.stores and _natural(ctx, peer.name, n):
        sid = f"{tag}-natural"
        h = peer.open(sid)
        for t in turns:
            peer.append(h, peer.prepare(t))
        peer.close(h)
        memory = memory_usage(ctx.admin, peer.pattern(sid))
    row = Row(peer.name, n, peer.group)
    if peer.stores and memory is None:
        row.note = _not_grown(ctx, peer.name)
    return finish_row(row, append_ns, resume_ns, commands, len(append_ns), memory)


async def drive_async(peer: AsyncPeer, ctx: Ctx, n: int, tag: str) -> Row:
    """``drive_sync`` for an asyncio library, on the running event loop."""
    s = ctx.settings
    turns = make_turns(n)
    want = n_messages(turns) if peer.stores else 0
    p = plan(n, s.samples)
    warm = await peer.open(f"{tag}-warm")
    await peer.seed(warm, turns[:10])
    for t in turns[10 : 10 + s.warmup]:
        await peer.append(warm, peer.prepare(t))
    for _ in range(s.warmup):
        await peer.resume(f"{tag}-warm")
    await peer.close(warm)
    append_ns: list[int] = []
    commands: dict[str, int] = {}
    sids: list[str] = []
    for k in range(p.sessions):
        sid = f"{tag}-a{k}"
        h = await peer.open(sid)
        await peer.seed(h, turns[: p.seeded])
        payloads = [peer.prepare(t) for t in turns[p.seeded :]]
        fresh()
        before = command_calls(ctx.admin)
        for payload in payloads:
            t0 = perf()
            await peer.append(h, payload)
            append_ns.append(perf() - t0)
        add_delta(commands, before, command_calls(ctx.admin))
        await peer.close(h)
        sids.append(sid)
    resume_ns: list[int] = []
    fresh()
    for i in range(s.samples):
        sid = sids[i % len(sids)]
        t0 = perf()
        got = await peer.resume(sid)
        resume_ns.append(perf() - t0)
        if peer.stores:
            _check(peer.name, got, want)
    memory = None
    if peer.stores and _natural(ctx, peer.name, n):
        sid = f"{tag}-natural"
        h = await peer.open(sid)
        for t in turns:
            await peer.append(h, peer.prepare(t))
        await peer.close(h)
        memory = memory_usage(ctx.admin, peer.pattern(sid))
    row = Row(peer.name, n, peer.group)
    if peer.stores and memory is None:
        row.note = _not_grown(ctx, peer.name)
    return finish_row(row, append_ns, resume_ns, commands, len(append_ns), memory)


def error_row(name: str, n: int, group: str, exc: BaseException) -> Row:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return Row(name, n, group, error=text[:300])


Measure = Callable[[Ctx, int], Row]
