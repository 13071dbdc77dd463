"""LangChain community ``RedisChatMessageHistory`` (``langchain_community.chat_message_histories``; sync).

- append = ``history.add_messages(messages)`` of the turn's ``HumanMessage``,
  [``AIMessage(tool_calls=...)``, ``ToolMessage``], ``AIMessage`` (it falls back to one
  ``LPUSH`` per message); the prefix seeded with one ``add_messages``, untimed;
- resume warm = a new ``RedisChatMessageHistory(sid, url=...)`` pointed at the warm
  client (its constructor only takes a URL and builds a client of its own, which would
  connect on first use: its construction is timed, the swap too) and ``history.messages``
  (``LRANGE``, reverse, ``messages_from_dict``: a pydantic object per message);
- key: ``PREFIX`` + sid (one list).

The class and its base are deprecated (langchain-core's chat history, "being sunset");
their warnings are silenced here.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

import redis

from .common import Ctx, Row, SyncPeer, Turn, drive_sync

NAME = "LangChain RedisChatMessageHistory (community)"


def messages(turn: Turn) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    out: list[Any] = [HumanMessage(turn.user)]
    if turn.tool is not None:
        t = turn.tool
        out.append(AIMessage(content="", tool_calls=[{"name": t.name, "args": dict(t.arguments), "id": t.call_id}]))
        out.append(ToolMessage(content=json.dumps(t.result), tool_call_id=t.call_id))
    out.append(AIMessage(turn.agent))
    return out


class LangChainHistory:
    name = NAME
    group = "peer"
    stores = True

    def __init__(self, url: str, client: redis.Redis, prefix: str) -> None:
        from langchain_community.chat_message_histories import RedisChatMessageHistory

        self.cls = RedisChatMessageHistory
        self.url = url
        self.r = client
        self.prefix = prefix

    def open(self, sid: str) -> Any:
        return self.cls(sid, url=self.url, key_prefix=self.prefix)

    def prepare(self, turn: Turn) -> list[Any]:
        return messages(turn)

    def seed(self, handle: Any, turns: Sequence[Turn]) -> None:
        if turns:
            handle.add_messages([m for t in turns for m in messages(t)])

    def append(self, handle: Any, payload: list[Any]) -> None:
        handle.add_messages(payload)

    def resume(self, sid: str) -> int:
        history = self.cls(sid, url=self.url, key_prefix=self.prefix)
        history.redis_client = self.r
        return len(history.messages)

    def pattern(self, sid: str) -> str:
        return f"{self.prefix}{sid}"

    def close(self, handle: Any) -> None:
        handle.redis_client.close()


def measure(ctx: Ctx, n: int) -> Row:
    client = redis.Redis.from_url(ctx.url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer: SyncPeer = LangChainHistory(ctx.url, client, f"{ctx.prefix}:lc{n}:")
            return drive_sync(peer, ctx, n, "s")
    finally:
        client.close()
