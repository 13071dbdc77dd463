"""``create_server``: the MCP server over a voicestate store, its tools, resources and prompt."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, ToolAnnotations
from pydantic import AnyHttpUrl, Field

import voicestate as vs

from ._auth import StaticBearer
from ._desk import Desk, explain, tool_errors
from ._models import (
    Briefing,
    CallList,
    CallSummary,
    CallView,
    ContextView,
    HandoffOffered,
    PacketVerdict,
    Released,
    Timeline,
    ToolCallWritten,
    ToolResultWritten,
    Written,
)
from ._views import NotJSON, briefing, briefing_text, call_view, context_view, timeline, timeline_text
from ._watch import Follower

CallId = Annotated[str, Field(description="the call's id, as list_calls shows it", min_length=1, max_length=128)]

INSTRUCTIONS = """\
voicestate holds the canonical state of live voice calls: every turn (with what the caller
actually heard of an interrupted one), tool calls (finished or still running), facts (slots),
notes and handoffs. Read a call with get_call, get_context (the conversation as chat messages,
only what the caller heard) and get_timeline. Anyone may add a note, deliver a late tool result
or end a call. {agent_line}"""

_AGENT_LINE = (
    "This server acts as the agent {agent!r}: redeem a handoff addressed to it (redeem_handoff, with the "
    "packet or its vs1. token), then record turns, set facts and hand the call on (hand_off returns the "
    "token for the receiver). Writes are fenced: once another agent owns the call, they fail."
)
_READER_LINE = "This server acts for no agent: it reads and writes only from outside (no owner writes)."


def create_server(
    store: vs.Store,
    *,
    agent: str | None = None,
    bearer_token: str | None = None,
    idle_release: float | None = 300.0,
    name: str = "voicestate",
) -> MCPServer[Any]:
    """An MCP server over ``store`` (one tenant: the store's).

    ``agent``: the agent this server acts as (its owner tools, and private facts);
    without it the server only reads and writes from outside. ``bearer_token``:
    the token every streamable-HTTP request must carry (``Authorization: Bearer``).
    stdio has no token: the process's owner is the client. ``idle_release``:
    let go of a call no tool call touched for this many seconds (None: never), so that an
    agent that went away does not keep the call's lease alive.
    """
    if agent is not None and (not isinstance(agent, str) or not 1 <= len(agent) <= 128 or not agent.isprintable()):
        raise vs.ConfigError(f"agent {agent!r:.60}: an agent name is 1 to 128 printable characters")
    if idle_release is not None and not (
        isinstance(idle_release, (int, float)) and 0 < idle_release < math.inf and not isinstance(idle_release, bool)
    ):
        raise vs.ConfigError(f"idle_release is seconds (> 0) or None, not {idle_release!r:.40}")
    desk = Desk(store, agent, idle_release)
    bus = InMemorySubscriptionBus()
    follower = Follower(store, bus)

    # Streamable HTTP enters the lifespan once; stdio and in-process clients once per connection:
    # the sessions and watches are the server's, shared, closed when the last connection goes.
    users: list[asyncio.Task[None]] = []  # the reaper, once per open connection

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[None]:
        users.append(users[0] if users else asyncio.get_running_loop().create_task(desk.reap()))
        try:
            yield
        finally:
            reaper = users.pop()
            if not users:
                reaper.cancel()
                await follower.close()
                await desk.close()

    auth: dict[str, Any] = {}
    if bearer_token is not None:
        auth = {
            # A shared bearer token, no OAuth: no resource_server_url, so the server publishes no
            # protected-resource metadata pointing at an authorization server that does not exist.
            # (The SDK requires an issuer_url; without an auth server provider it is never served.)
            "auth": AuthSettings(issuer_url=AnyHttpUrl("http://localhost"), resource_server_url=None),
            "token_verifier": StaticBearer(bearer_token),
        }
    server: MCPServer[Any] = MCPServer(
        name,
        instructions=INSTRUCTIONS.format(agent_line=_AGENT_LINE.format(agent=agent) if agent else _READER_LINE),
        version=_version(),
        lifespan=lifespan,
        subscriptions=bus,
        log_level="WARNING",
        **auth,
    )
    server.middleware.append(follower.middleware)
    _reading_tools(server, desk)
    _outside_tools(server, desk)
    if agent is not None:
        _agent_tools(server, desk, agent)
    _resources(server, desk)
    return server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("voicestate-mcp")
    except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return "0+unknown"


READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def _reading_tools(server: MCPServer[Any], desk: Desk) -> None:
    store = desk.store

    @server.tool(
        annotations=READ,
        description="List the store's voice calls, in call-id order. status: 'active' (default), "
        "'ended' or 'any'. stale=true: only active calls whose owner's lease ran out (the owner is presumed "
        "dead: take_over_call can recover them). owner: only calls this agent owns. Page with `after`.",
    )
    @tool_errors
    async def list_calls(
        status: Literal["active", "ended", "any"] = "active",
        owner: str | None = None,
        stale: bool = False,
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
        after: Annotated[str | None, Field(description="next_after of the previous page")] = None,
    ) -> CallList:
        infos = await store.acalls(
            status=None if status == "any" else status,
            owner=owner,
            stale=True if stale else None,
            limit=limit,
            after=after,
        )
        now = time.time()
        calls = [CallSummary.of(i, now) for i in infos]
        return CallList(calls=calls, next_after=calls[-1].call_id if len(calls) == limit else None)

    @server.tool(
        annotations=READ,
        description="A call's current state: owner and epoch, status, facts (slots), the last turns (with "
        "what the caller heard of an interrupted one), every tool call and which are still pending, the "
        "pending handoff, notes. Use get_context for the conversation as chat messages.",
    )
    @tool_errors
    async def get_call(call_id: CallId, last_turns: Annotated[int, Field(ge=0, le=1000)] = 20) -> CallView:
        state, held = await desk.state(call_id)
        return call_view(state, desk.agent, last_turns, held=held)

    @server.tool(
        annotations=READ,
        description="The call's conversation rendered for an agent, as JSON. format 'openai' (default) gives "
        "chat messages {role, content, name, tool_calls}: what to feed a model that continues the call. "
        "heard_only (default true): an interrupted agent turn contributes only what the caller heard. "
        "last_turns: keep only the last N turns (running tool calls always stay). summary: lead with the "
        "handoff summary; facts: the current slots; tools: include tool calls and results.",
    )
    @tool_errors
    async def get_context(
        call_id: CallId,
        format: str = "openai",
        last_turns: Annotated[int | None, Field(ge=1)] = None,
        heard_only: bool = True,
        tools: bool = True,
        summary: bool = True,
        facts: bool = True,
        for_agent: Annotated[
            str | None,
            Field(description="render for this agent (only on a server that acts for no agent); default: the owner"),
        ] = None,
    ) -> ContextView:
        if for_agent is not None and desk.agent is not None and for_agent != desk.agent:
            raise ToolError(
                f"this server acts as {desk.agent!r} and renders contexts for it only "
                "(another agent's context holds its system prompt). Next: drop for_agent."
            )
        state, _ = await desk.state(call_id)
        policy = vs.ContextPolicy(
            last_turns=last_turns, heard_only=heard_only, tools=tools, summary=summary, facts=facts
        )
        try:
            return context_view(state, format, policy, desk.agent or for_agent)
        except NotJSON:
            raise ToolError(
                f"the format {format!r} renders a framework's objects, not JSON. Next: use format 'openai' "
                "(chat messages), or a format that renders JSON."
            ) from None

    @server.tool(
        annotations=READ,
        description="The call's events in order, each with who, what and detail lines (as `voicestate inspect` "
        "prints them) and every field. after: only events after this seq (0: from the start); page with "
        "next_after.",
    )
    @tool_errors
    async def get_timeline(
        call_id: CallId,
        after: Annotated[int, Field(ge=0)] = 0,
        limit: Annotated[int, Field(ge=1, le=1000)] = 200,
    ) -> Timeline:
        state = await store.aload(call_id)
        events = await store.aevents(call_id, after=after)
        return timeline(call_id, events, state, limit, desk.agent)

    @server.tool(
        annotations=READ,
        description="Check a handoff packet (its JSON) or its vs1. token without redeeming it: the signature, "
        "then the call's log. verdict 'valid' means pending and redeemable now by to_agent; otherwise it "
        "says what happened (redeemed, replaced, cancelled, cleared, ended, expired, invalid with a reason). "
        "agent: the agent that would redeem it (checks the target).",
    )
    @tool_errors
    async def verify_packet(
        packet: Annotated[str, Field(description="the packet's JSON or its vs1. token", max_length=1_000_000)],
        agent: str | None = None,
    ) -> PacketVerdict:
        return PacketVerdict.of(await store.averify(packet, agent=agent))


def _outside_tools(server: MCPServer[Any], desk: Desk) -> None:
    store = desk.store

    async def written(call_id: str, seq: int) -> Written:
        state, _ = await desk.state(call_id)
        return Written(call_id=call_id, seq=seq, status=state.status, owner=state.owner)

    @server.tool(
        description="Add a note to a call, for humans and the next agent (e.g. a supervisor's remark). "
        "Anyone may add one, to an active or an ended call; it does not change who owns the call.",
    )
    @tool_errors
    async def add_note(call_id: CallId, text: Annotated[str, Field(min_length=1, max_length=20_000)]) -> Written:
        seq = await desk.outside(call_id, lambda agent: vs.Note(text, agent=agent))
        return await written(call_id, seq)

    @server.tool(
        description="Deliver the result (or the error) of a tool call that is still pending in the call, e.g. a "
        "lookup that finished after the call was handed off. The first result wins: a tool call that already "
        "has one is left as it is (accepted=false, nothing written). Give result (any JSON) or error (text).",
    )
    @tool_errors
    async def deliver_tool_result(
        call_id: CallId,
        tool_call_id: Annotated[str, Field(description="the tool call's id (pending_tools in get_call)")],
        result: Any = None,
        error: str | None = None,
    ) -> ToolResultWritten:
        if (result is None) == (error is None):
            raise ToolError("give the tool's result (any JSON) or its error (text): exactly one of them")
        state, _ = await desk.state(call_id)
        tool = state.tools.get(tool_call_id)
        if tool is None:
            known = ", ".join(sorted(state.tools)) or "none"
            raise ToolError(
                f"call {call_id!r} has no tool call {tool_call_id!r} (its tool calls: {known}). "
                "Next: get_call lists them with their status."
            )
        if tool.status != "pending":
            return ToolResultWritten(
                call_id=call_id, tool_call_id=tool_call_id, seq=tool.seq, status=tool.status, accepted=False
            )
        # One event id per tool call: deliveries racing each other store one event, not several.
        eid = "mcp-result-" + hashlib.sha256(tool_call_id.encode()).hexdigest()[:32]
        seq = await desk.outside(
            call_id, lambda agent: vs.ToolReturned(tool_call_id, result=result, error=error, agent=agent, id=eid)
        )
        state, _ = await desk.state(call_id)
        now = state.tools[tool_call_id]
        won = (now.result, now.error) == (result, error)  # another result may have landed first
        return ToolResultWritten(call_id=call_id, tool_call_id=tool_call_id, seq=seq, status=now.status, accepted=won)

    @server.tool(
        annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True),
        description="End a call (the caller hung up, or the call is over): nobody owns it afterwards, only "
        "notes and late tool results can still be added. Ending an ended call changes nothing.",
    )
    @tool_errors
    async def end_call(call_id: CallId, reason: str | None = None) -> Written:
        session = desk.held(call_id)
        if session is not None:
            try:
                seq = await session.aend(reason)
                await desk.release(call_id, session)
                return await written(call_id, seq)
            except vs.FencedError:
                await desk.release(call_id, session)  # deposed: ending is still anyone's to do
        state = await store.aload(call_id)
        if state.status == "ended":
            events = await store.aevents(call_id)
            seq = next((e.seq or 0 for e in reversed(events) if isinstance(e, vs.CallEnded)), state.seq)
            return Written(call_id=call_id, seq=seq, status="ended", owner=None)
        seq = await store.aappend(call_id, vs.CallEnded(reason, agent=desk.agent))
        return await written(call_id, seq)


def _agent_tools(server: MCPServer[Any], desk: Desk, agent: str) -> None:
    store = desk.store

    def written(session: vs.Session, seq: int) -> Written:
        return Written(call_id=session.call_id, seq=seq, status=session.state.status, owner=session.state.owner)

    async def owner_write(call_id: str, *events: vs.Event) -> Written:
        session = desk.need(call_id)
        try:
            seq = await session.arecord(*events)
        finally:
            await desk.after(session)
        return written(session, seq)

    @server.tool(
        description=f"Take a call handed to {agent!r}: redeem its handoff with the packet's JSON or its vs1. "
        "token (or the bare call id, unless the store requires the signed packet). This server then owns "
        "the call: it records turns, sets facts and hands off as the owner, and renews the lease until "
        "released. Returns the briefing: reason, summary, facts, pending tools, the unanswered question.",
    )
    @tool_errors
    async def redeem_handoff(
        packet: Annotated[
            str, Field(description="the packet's JSON, its vs1. token, or the call id", max_length=1_000_000)
        ],
    ) -> Briefing:
        session = await store.aresume(packet.strip(), agent=agent)
        await desk.keep(session)
        return briefing(session.state, agent, session.state.owner_handoff)

    @server.tool(
        annotations=ToolAnnotations(destructive_hint=True),
        description=f"Take over a call whose owner died (its lease ran out; list_calls stale=true lists them) as "
        f"{agent!r}, clearing any pending handoff. from_epoch: the epoch you saw die, so of several recovery "
        "agents exactly one wins. force: take it even though the owner's lease is live (an operator's decision).",
    )
    @tool_errors
    async def take_over_call(call_id: CallId, from_epoch: int | None = None, force: bool = False) -> Briefing:
        if call_id.strip().startswith(("{", "vs1.")):
            raise ToolError("take_over_call takes a call id, not a packet. Next: redeem a packet with redeem_handoff.")
        session = await store.aresume(call_id, agent=agent, takeover=True, from_epoch=from_epoch, force=force)
        await desk.keep(session)
        return briefing(session.state, agent, None)

    @server.tool(
        description="Set facts (slots) in a call this server owns, merged key by key; a null value deletes "
        "the key. private=true keeps them to this agent (no other agent ever sees them).",
    )
    @tool_errors
    async def set_slots(call_id: CallId, values: dict[str, Any], private: bool = False) -> Written:
        if not values:
            raise ToolError("values is empty: give at least one key")
        return await owner_write(call_id, vs.SlotsSet(values, scope=f"agent:{agent}" if private else "call"))

    @server.tool(
        description="Record a turn in a call this server owns: speaker 'agent' (what this agent said) or "
        "'caller' (a final transcript of the caller). For an agent turn the caller cut off, give heard (the "
        "prefix the caller actually heard) and heard_ms (the playout offset): the next agent then sees only "
        "what was heard.",
    )
    @tool_errors
    async def record_turn(
        call_id: CallId,
        speaker: Literal["agent", "caller"],
        text: Annotated[str, Field(min_length=1, max_length=100_000)],
        heard: str | None = None,
        heard_ms: Annotated[int | None, Field(ge=0)] = None,
    ) -> Written:
        if speaker == "caller":
            if heard is not None or heard_ms is not None:
                raise ToolError("heard and heard_ms describe an interrupted agent turn, not the caller's")
            return await owner_write(call_id, vs.UserSpoke(text))
        if (heard is None) != (heard_ms is None):
            raise ToolError("an interrupted turn needs both heard (the text heard) and heard_ms (the playout offset)")
        turn = vs.AgentSpoke(text)
        if heard is None:
            return await owner_write(call_id, turn)
        return await owner_write(call_id, turn, vs.Interrupted(turn=turn.id, heard=heard, heard_ms=heard_ms))

    @server.tool(
        description="Record that this agent started a tool call in a call it owns (its result comes later, "
        "through deliver_tool_result, from here or from whoever runs the tool). Returns the stored seq and "
        "the tool call's id (tool_call_id, or a new one if omitted).",
    )
    @tool_errors
    async def record_tool_call(
        call_id: CallId, name: str, arguments: dict[str, Any] | None = None, tool_call_id: str | None = None
    ) -> ToolCallWritten:
        ev = vs.ToolCalled(tool_call_id or f"mcp-{uuid.uuid4().hex[:16]}", name, arguments or {})
        done = await owner_write(call_id, ev)
        return ToolCallWritten(tool_call_id=ev.call_id, **done.model_dump())

    @server.tool(
        description="Hand a call this server owns to another agent: kind 'transfer' (a specialist), 'escalate' "
        "(a human), 'persona' or 'return'. This server stays the owner, and keeps recording, until the "
        "receiver redeems the packet; then it lets the call go. Returns the vs1. token to give the receiver "
        "(and the packet's JSON, which redeems it too).",
    )
    @tool_errors
    async def hand_off(
        call_id: CallId,
        to_agent: str,
        reason: str | None = None,
        kind: Literal["transfer", "escalate", "persona", "return"] = "transfer",
        summary: Annotated[str | None, Field(description="for the receiver; default: voicestate writes one")] = None,
        ttl_seconds: Annotated[float | None, Field(gt=0, description="how long the packet is valid")] = None,
    ) -> HandoffOffered:
        session = desk.need(call_id)
        try:
            packet = await session.ahandoff(to_agent, reason=reason, kind=kind, summary=summary, ttl=ttl_seconds)
        finally:
            await desk.after(session)
        try:
            token: str | None = packet.to_token()
        except vs.PacketError:  # a long call id makes a token over its 256 characters: the JSON still works
            token = None
        return HandoffOffered(
            call_id=call_id,
            packet_id=packet.packet_id,
            token=token,
            packet=packet.to_json(),
            to_agent=packet.to_agent,
            kind=packet.kind,
            expires_at=packet.expires_at,
            seq=packet.seq,
        )

    @server.tool(
        description="Withdraw the pending handoff of a call this server owns (before the receiver redeems it): "
        "this server stays in charge.",
    )
    @tool_errors
    async def cancel_handoff(call_id: CallId) -> Written:
        session = desk.need(call_id)
        try:
            await session.acancel_handoff()
        finally:
            await desk.after(session)
        return written(session, session.state.seq)

    @server.tool(
        description="Stop acting in a call: flush what was recorded and stop renewing its lease. The call "
        "goes on (it is not ended); its lease runs out unless it is handed off first.",
    )
    @tool_errors
    async def release_call(call_id: CallId) -> Released:
        session = await desk.release(call_id)
        if session is None:
            return Released(call_id=call_id, released=False, seq=None, detail="this server held no session for it")
        return Released(
            call_id=call_id, released=True, seq=session.state.seq, detail="released: its lease runs out unless renewed"
        )


def _resources(server: MCPServer[Any], desk: Desk) -> None:
    store = desk.store

    async def state_of(call_id: str) -> vs.CallState:
        try:
            return await store.aload(call_id)
        except vs.VoiceStateError as exc:  # an unknown or malformed call id: not found, and why
            raise ResourceNotFoundError(explain(exc)) from None

    @server.resource(
        "voicestate://calls",
        name="calls",
        description="The store's active calls (the first 500): owner, epoch, seq, lease, pending handoff.",
        mime_type="application/json",
    )
    async def calls() -> str:
        infos = await store.acalls(status="active", limit=500)
        now = time.time()
        return CallList(calls=[CallSummary.of(i, now) for i in infos], next_after=None).model_dump_json()

    @server.resource(
        "voicestate://calls/{call_id}",
        name="call",
        description="A call's state (as get_call returns it, the last 20 turns).",
        mime_type="application/json",
    )
    async def call(call_id: str) -> str:
        try:  # a reader's look is not the agent's use: it does not keep an idle call held
            state, held = await desk.state(call_id, touch=False)
        except vs.VoiceStateError as exc:
            raise ResourceNotFoundError(explain(exc)) from None
        return call_view(state, desk.agent, 20, held).model_dump_json()

    @server.resource(
        "voicestate://calls/{call_id}/context",
        name="call-context",
        description="A call's conversation as OpenAI chat messages, only what the caller heard.",
        mime_type="application/json",
    )
    async def context(call_id: str) -> str:
        state = await state_of(call_id)
        return json.dumps(state.context("openai", vs.ContextPolicy(), agent=desk.agent))

    @server.resource(
        "voicestate://calls/{call_id}/timeline",
        name="call-timeline",
        description="A call's timeline, as `voicestate inspect` prints it.",
        mime_type="text/plain",
    )
    async def call_timeline(call_id: str) -> str:
        state = await state_of(call_id)
        return timeline_text(await store.aevents(call_id), state, desk.agent)

    @server.prompt(
        name="receive_handoff",
        description="Brief an agent receiving a call: why it was handed over, the summary, the facts, the "
        "tool calls still running and the caller's unanswered question.",
    )
    async def receive_handoff(call_id: str) -> str:
        try:
            state = await store.aload(call_id)
        except vs.VoiceStateError as exc:  # passed through to the client as is, with what to do next
            raise MCPError(INVALID_PARAMS, explain(exc)) from None
        pending = state.pending_handoff
        handoff = pending if pending is not None else state.owner_handoff
        to = handoff.to_agent if handoff is not None else (desk.agent or state.owner or "agent")
        b = briefing(state, desk.agent or to, handoff)
        return briefing_text(b, state.owner, handoff.agent if handoff is not None else None)
