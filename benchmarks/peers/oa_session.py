"""OpenAI Agents SDK ``RedisSession`` (``agents.extensions.memory``; asyncio only).

- append = ``await session.add_items(items)`` of the turn's Responses-API input items:
  ``{"role": "user", ...}``, [``function_call``, ``function_call_output``],
  ``{"role": "assistant", ...}``; the prefix seeded with one ``add_items``, untimed;
- resume warm = a new ``RedisSession(sid, redis_client=<the warm client>)`` and
  ``await session.get_items()`` (the items stay plain dicts);
- keys: ``PREFIX:sid`` (hash), ``PREFIX:sid:messages`` (list), ``PREFIX:sid:counter``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from .common import AsyncPeer, Ctx, Row, Turn, drive_async

NAME = "OpenAI Agents RedisSession"


def items(turn: Turn) -> list[Any]:
    out: list[Any] = [{"role": "user", "content": turn.user}]
    if turn.tool is not None:
        t = turn.tool
        args = json.dumps(t.arguments)
        out.append({"type": "function_call", "call_id": t.call_id, "name": t.name, "arguments": args})
        out.append({"type": "function_call_output", "call_id": t.call_id, "output": json.dumps(t.result)})
    out.append({"role": "assistant", "content": turn.agent})
    return out


class OpenAIRedisSession:
    name = NAME
    group = "peer"
    stores = True

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        from agents.extensions.memory import RedisSession

        self.cls = RedisSession
        self.r = client
        self.prefix = prefix

    async def open(self, sid: str) -> Any:
        return self.cls(sid, redis_client=self.r, key_prefix=self.prefix)

    def prepare(self, turn: Turn) -> list[Any]:
        return items(turn)

    async def seed(self, handle: Any, turns: Sequence[Turn]) -> None:
        if turns:
            await handle.add_items([i for t in turns for i in items(t)])

    async def append(self, handle: Any, payload: list[Any]) -> None:
        await handle.add_items(payload)

    async def resume(self, sid: str) -> int:
        session = self.cls(sid, redis_client=self.r, key_prefix=self.prefix)
        return len(await session.get_items())

    def pattern(self, sid: str) -> str:
        return f"{self.prefix}:{sid}*"

    async def close(self, handle: Any) -> None:
        await handle.close()  # a no-op for a client it does not own


async def measure(ctx: Ctx, n: int) -> Row:
    client = aioredis.Redis.from_url(ctx.url)
    try:
        peer: AsyncPeer = OpenAIRedisSession(client, f"{ctx.prefix}:oa{n}")
        return await drive_async(peer, ctx, n, "s")
    finally:
        await client.aclose()
