"""LangGraph on ``langgraph-checkpoint-plainredis``'s ``AsyncRedisSaver`` (plain Redis, no modules).

The graph is ``StateGraph(MessagesState)`` (a ``messages`` channel reduced with
``add_messages``) with one node, ``agent``, compiled once with the saver. A turn is ONE
graph step: ``await graph.ainvoke({"messages": [user]}, config)`` whose node returns the
rest of the turn (tool call, tool result, reply: what the model would have produced),
with LangGraph's default durability; the checkpointer writes the input and the output
checkpoints and the pending writes. The prefix of a call is seeded in one
``ainvoke`` (one checkpoint), untimed, as the baseline did.

- resume warm = a new ``AsyncRedisSaver(client=<the warm client>)`` and
  ``await saver.aget_tuple({"configurable": {"thread_id": sid}})``: the latest
  checkpoint, its channel blobs and pending writes, every message deserialized;
- bytes/session: every key with the thread id (``cp``, ``blob``, ``wr``, ``idx``).
  Each checkpoint stores the whole message list again as a new blob, never pruned, so a
  naturally grown call costs O(N²) memory: past ``NATURAL_LIMIT`` turns it is not
  grown (a 1,000-turn call would hold on the order of 1 GiB).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from .common import AsyncPeer, Ctx, Row, Turn, drive_async

NAME = "LangGraph + checkpoint-plainredis (graph step)"
NATURAL_LIMIT = 200


def turn_messages(turn: Turn) -> tuple[Any, list[Any]]:
    """(the user's message, what the agent node returns) for one turn."""
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    reply: list[Any] = []
    if turn.tool is not None:
        t = turn.tool
        reply.append(AIMessage(content="", tool_calls=[{"name": t.name, "args": dict(t.arguments), "id": t.call_id}]))
        reply.append(ToolMessage(content=json.dumps(t.result), tool_call_id=t.call_id))
    reply.append(AIMessage(turn.agent))
    return HumanMessage(turn.user), reply


class LangGraphPlainRedis:
    name = NAME
    group = "peer"
    stores = True

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        from langgraph.graph import END, START, MessagesState, StateGraph
        from langgraph_checkpoint_plainredis import AsyncRedisSaver

        self.saver_cls = AsyncRedisSaver
        self.r = client
        self.prefix = prefix
        self.reply: list[Any] = []  # what the node returns on the next step

        def agent(state: MessagesState) -> dict[str, Any]:
            return {"messages": self.reply}

        builder = StateGraph(MessagesState)
        builder.add_node("agent", agent)
        builder.add_edge(START, "agent")
        builder.add_edge("agent", END)
        self.graph = builder.compile(checkpointer=AsyncRedisSaver(client=client, prefix=prefix))

    @staticmethod
    def config(sid: str) -> Any:
        return {"configurable": {"thread_id": sid}}

    async def open(self, sid: str) -> str:
        return sid

    def prepare(self, turn: Turn) -> tuple[Any, list[Any]]:
        return turn_messages(turn)

    async def seed(self, handle: str, turns: Sequence[Turn]) -> None:
        if turns:
            msgs: list[Any] = []
            for t in turns:
                user, reply = turn_messages(t)
                msgs += [user, *reply]
            self.reply = []
            await self.graph.ainvoke({"messages": msgs}, self.config(handle))

    async def append(self, handle: str, payload: tuple[Any, list[Any]]) -> None:
        user, self.reply = payload
        await self.graph.ainvoke({"messages": [user]}, self.config(handle))

    async def resume(self, sid: str) -> int:
        saver = self.saver_cls(client=self.r, prefix=self.prefix)
        got = await saver.aget_tuple(self.config(sid))
        if got is None:
            return 0
        return len(got.checkpoint["channel_values"].get("messages", []))

    def pattern(self, sid: str) -> str:
        return f"{self.prefix}:*:{sid}:*"

    async def close(self, handle: str) -> None:
        return None


async def measure(ctx: Ctx, n: int) -> Row:
    client = aioredis.Redis.from_url(ctx.url)
    try:
        peer: AsyncPeer = LangGraphPlainRedis(client, f"{ctx.prefix}:lg{n}")
        return await drive_async(peer, ctx, n, "s")
    finally:
        await client.aclose()
