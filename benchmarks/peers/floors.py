"""The floors, on the same server and through the same drivers as the libraries.

- **redis PING (sync, hiredis)**: one round trip, no payload; its resume columns are a
  second PING (a floor, not a load);
- **raw redis-py RPUSH/LRANGE (sync)**: append = ``json.dumps`` of the turn's OpenAI chat
  messages and one ``RPUSH key m1 m2 [m3 m4]``; resume = ``LRANGE key 0 -1`` and
  ``json.loads`` of each element. The "× floor" columns divide by this row;
- **raw redis.asyncio RPUSH/LRANGE**: the same through ``redis.asyncio``, the floor to
  read the asyncio libraries against.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis

from .common import AsyncPeer, Ctx, Row, SyncPeer, Turn, chat_messages, drive_async, drive_sync

PING = "redis PING (sync, hiredis)"
RAW = "raw redis-py RPUSH/LRANGE (sync)"
RAW_ASYNC = "raw redis.asyncio RPUSH/LRANGE"


class Ping:
    name = PING
    group = "floor"
    stores = False

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def open(self, sid: str) -> Any:
        return None

    def prepare(self, turn: Turn) -> Any:
        return None

    def seed(self, handle: Any, turns: Sequence[Turn]) -> None:
        return None

    def append(self, handle: Any, payload: Any) -> None:
        self.r.ping()

    def resume(self, sid: str) -> int:
        self.r.ping()
        return 0

    def pattern(self, sid: str) -> str:
        return ""

    def close(self, handle: Any) -> None:
        return None


class Raw:
    name = RAW
    group = "floor"
    stores = True

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix

    def open(self, sid: str) -> str:
        return f"{self.prefix}:{sid}"

    def prepare(self, turn: Turn) -> list[dict[str, Any]]:
        return chat_messages(turn)

    def seed(self, handle: str, turns: Sequence[Turn]) -> None:
        msgs = [json.dumps(m) for t in turns for m in chat_messages(t)]
        for i in range(0, len(msgs), 1000):
            self.r.rpush(handle, *msgs[i : i + 1000])

    def append(self, handle: str, payload: list[dict[str, Any]]) -> None:
        self.r.rpush(handle, *[json.dumps(m) for m in payload])

    def resume(self, sid: str) -> int:
        return len([json.loads(m) for m in self.r.lrange(f"{self.prefix}:{sid}", 0, -1)])

    def pattern(self, sid: str) -> str:
        return f"{self.prefix}:{sid}"

    def close(self, handle: str) -> None:
        return None


class RawAsync:
    name = RAW_ASYNC
    group = "floor"
    stores = True

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix

    async def open(self, sid: str) -> str:
        return f"{self.prefix}:{sid}"

    def prepare(self, turn: Turn) -> list[dict[str, Any]]:
        return chat_messages(turn)

    async def seed(self, handle: str, turns: Sequence[Turn]) -> None:
        msgs = [json.dumps(m) for t in turns for m in chat_messages(t)]
        for i in range(0, len(msgs), 1000):
            await self.r.rpush(handle, *msgs[i : i + 1000])

    async def append(self, handle: str, payload: list[dict[str, Any]]) -> None:
        await self.r.rpush(handle, *[json.dumps(m) for m in payload])

    async def resume(self, sid: str) -> int:
        return len([json.loads(m) for m in await self.r.lrange(f"{self.prefix}:{sid}", 0, -1)])

    def pattern(self, sid: str) -> str:
        return f"{self.prefix}:{sid}"

    async def close(self, handle: str) -> None:
        return None


def ping(ctx: Ctx, n: int) -> Row:
    client = redis.Redis.from_url(ctx.url)
    try:
        peer: SyncPeer = Ping(client)
        return drive_sync(peer, ctx, n, f"{ctx.prefix}:ping{n}")
    finally:
        client.close()


def raw(ctx: Ctx, n: int) -> Row:
    client = redis.Redis.from_url(ctx.url)
    try:
        peer: SyncPeer = Raw(client, f"{ctx.prefix}:raw{n}")
        return drive_sync(peer, ctx, n, "s")
    finally:
        client.close()


async def raw_async(ctx: Ctx, n: int) -> Row:
    client = aioredis.Redis.from_url(ctx.url)
    try:
        peer: AsyncPeer = RawAsync(client, f"{ctx.prefix}:araw{n}")
        return await drive_async(peer, ctx, n, "s")
    finally:
        await client.aclose()
