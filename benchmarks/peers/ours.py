"""voicestate on voicestate-redis, through the public API only.

- **append** = recording ONE turn as one append: ``session.record(*events)`` (sync) or
  ``await session.arecord(*events)`` (async) of the turn's 2 or 4 events (``UserSpoke``,
  [``ToolCalled``, ``ToolReturned``], ``AgentSpoke``): one ``EVALSHA``, one round trip.
  The prefix is seeded with ``record(*events)`` in batches, untimed.
- **resume warm** = ``store.load(call_id).context("openai", agent="billing")``
  (``await store.aload`` for the async row): the call's state read from Redis (its
  snapshot plus the events after it, or the whole log) and rendered as the OpenAI
  messages a receiving agent hands its model, on a store whose connections are warm.
  Why not ``store.resume``: it takes the call over (a new epoch, an ``OwnerChanged``
  event), and it needs a fresh handoff each time; sampled 200 times on the same session
  it would grow the call it measures and measure ownership changes the peers do not
  make (they have no owner). ``load`` + ``context`` is the part of a receive the peers'
  resume is comparable to.
- **resume(token) after a handoff** (an extra row, resume columns only): the receive
  as an agent does it, ``store.resume(token, agent="billing")`` + ``session.context("openai")``,
  each sample on a fresh N-turn call (seeded in bulk, ``handoff(to="billing").to_token()``
  in the sending session, both untimed), deleted afterwards.
- **cmds/append**: every command ``INFO commandstats`` counts, the ``EVALSHA`` and the
  commands its script runs (see docs/backends/redis.md); **bytes/session** sums
  ``MEMORY USAGE`` over ``PREFIX:{call_id}:*`` (metadata hash, event list, id hash,
  snapshot, tombstone), not the store-wide ``PREFIX:calls`` index.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from vsbench.common import KEYS

import voicestate as vs

from .common import (
    AsyncPeer,
    Ctx,
    Row,
    SyncPeer,
    Turn,
    drive_async,
    drive_sync,
    finish_row,
    make_turns,
    n_messages,
    perf,
)

SYNC = "voicestate-redis record() (sync)"
ASYNC = "voicestate-redis arecord() (async)"
HANDOFF = "voicestate-redis resume(token) after a handoff (sync)"
SEED_BATCH = 512  # events per record() while seeding

warnings.simplefilter("ignore", vs.EphemeralKeyWarning)


def events(turn: Turn) -> list[vs.Event]:
    """The turn's events, freshly built (new event ids)."""
    out: list[vs.Event] = [vs.UserSpoke(turn.user)]
    if turn.tool is not None:
        t = turn.tool
        out.append(vs.ToolCalled(t.call_id, t.name, dict(t.arguments)))
        out.append(vs.ToolReturned(t.call_id, t.result))
    out.append(vs.AgentSpoke(turn.agent))
    return out


def _seed_events(turns: Sequence[Turn]) -> list[list[vs.Event]]:
    flat = [ev for t in turns for ev in events(t)]
    return [flat[i : i + SEED_BATCH] for i in range(0, len(flat), SEED_BATCH)]


def open_store(ctx: Ctx, name: str) -> vs.Store:
    return vs.open_store(f"{ctx.url}?prefix={store_prefix(ctx, name)}", signing_keys=KEYS)


def store_prefix(ctx: Ctx, name: str) -> str:
    return f"{ctx.prefix}-{name}"


class Sync:
    name = SYNC
    group = "ours"
    stores = True

    def __init__(self, store: vs.Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def open(self, sid: str) -> vs.Session:
        return self.store.open(sid, agent="triage")

    def prepare(self, turn: Turn) -> list[vs.Event]:
        return events(turn)

    def seed(self, handle: vs.Session, turns: Sequence[Turn]) -> None:
        for batch in _seed_events(turns):
            handle.record(*batch)

    def append(self, handle: vs.Session, payload: list[vs.Event]) -> None:
        handle.record(*payload)

    def resume(self, sid: str) -> int:
        return len(self.store.load(sid).context("openai", agent="billing"))

    def pattern(self, sid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:*"

    def close(self, handle: vs.Session) -> None:
        handle.__exit__(None, None, None)


class Async:
    name = ASYNC
    group = "ours"
    stores = True

    def __init__(self, store: vs.Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self._open: dict[int, vs.Opening] = {}

    async def open(self, sid: str) -> vs.Session:
        opening = self.store.aopen(sid, agent="triage")
        session = await opening.__aenter__()
        self._open[id(session)] = opening
        return session

    def prepare(self, turn: Turn) -> list[vs.Event]:
        return events(turn)

    async def seed(self, handle: vs.Session, turns: Sequence[Turn]) -> None:
        for batch in _seed_events(turns):
            await handle.arecord(*batch)

    async def append(self, handle: vs.Session, payload: list[vs.Event]) -> None:
        await handle.arecord(*payload)

    async def resume(self, sid: str) -> int:
        return len((await self.store.aload(sid)).context("openai", agent="billing"))

    def pattern(self, sid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:*"

    async def close(self, handle: vs.Session) -> None:
        await self._open.pop(id(handle)).__aexit__(None, None, None)


def sync(ctx: Ctx, n: int) -> Row:
    store = open_store(ctx, f"s{n}")
    try:
        peer: SyncPeer = Sync(store, store_prefix(ctx, f"s{n}"))
        return drive_sync(peer, ctx, n, "c")
    finally:
        store.close()


async def async_(ctx: Ctx, n: int) -> Row:
    store = open_store(ctx, f"a{n}")
    try:
        peer: AsyncPeer = Async(store, store_prefix(ctx, f"a{n}"))
        return await drive_async(peer, ctx, n, "c")
    finally:
        await store.aclose()


def handoff_resume(ctx: Ctx, n: int) -> Row:
    """The receive with a real handoff: a fresh call per sample (see the module docstring)."""
    s = ctx.settings
    turns = make_turns(n)
    want = n_messages(turns)
    store = open_store(ctx, f"h{n}")
    sender = open_store(ctx, f"h{n}")  # the sending agent's store: its connections, not the receiver's
    resume_ns: list[int] = []
    try:
        for i in range(s.warmup + s.samples):
            sid = f"h{i}"
            session = sender.open(sid, agent="triage")
            for batch in _seed_events(turns):
                session.record(*batch)
            token = session.handoff(to="billing").to_token()
            t0 = perf()
            received = store.resume(token, agent="billing")
            messages: list[Any] = received.context("openai")
            dt = perf() - t0
            if len(messages) < want:
                raise RuntimeError(f"resume rendered {len(messages)} messages, the call holds {want}")
            if i >= s.warmup:
                resume_ns.append(dt)
            sender.delete(sid)
    finally:
        sender.close()
        store.close()
    row = Row(HANDOFF, n, "ours", note="resume columns only: a fresh call per sample")
    return finish_row(row, [], resume_ns, {}, 0, None)
