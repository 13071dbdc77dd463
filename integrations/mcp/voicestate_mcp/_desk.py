"""The calls this server acts in as an agent: the owner sessions it holds, and the errors
every tool turns into what the model should do next."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

import voicestate as vs

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("voicestate_mcp")

# What to do next, by error type, after the store's own message (which says what happened).
_NEXT: dict[type[vs.VoiceStateError], str] = {
    vs.CallNotFound: "list the calls with list_calls (call ids are case-sensitive; an ended call expires)",
    vs.FencedError: "this server no longer owns the call: read it with get_call; "
    "to act in it again, be handed it (redeem_handoff)",
    vs.OwnershipError: "see who owns the call and what is pending with get_call",
    vs.PacketError: "check the packet with verify_packet; ask the sender for a new handoff if it cannot be redeemed",
    vs.BackendUnavailable: "the store is unreachable: retry in a moment (nothing was written)",
    vs.InvalidEvent: "correct the values as the message says (nothing was written)",
    vs.InvalidArgument: "correct the argument as the message says (nothing was written)",
    vs.ConfigError: "correct the argument as the message says (nothing was written)",
}


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """A tool's voicestate errors as tool errors (``is_error``) that say what to do next;
    nothing else of the exception (no traceback) reaches the client."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ToolError:
            raise
        except vs.VoiceStateError as exc:
            raise ToolError(explain(exc)) from None

    return wrapper


def explain(exc: vs.VoiceStateError) -> str:
    text = f"{type(exc).__name__}: {exc}"
    for cls, hint in _NEXT.items():
        if isinstance(exc, cls):
            return f"{text}. Next: {hint}."
    return text


class Desk:
    """The owner sessions of one agent, by call id. A session stays held until the agent
    releases it, ends the call, is fenced (its handoff was redeemed, or it was taken over), or
    goes ``idle`` seconds without a tool call on it: meanwhile its lease is renewed in the
    background by voicestate's async session. (An agent that went away without releasing its
    call would otherwise keep the call's lease alive, and no recovery worker would see it stale.)"""

    def __init__(self, store: vs.Store, agent: str | None, idle: float | None = None) -> None:
        self.store = store
        self.agent = agent
        self.idle = idle
        self._held: dict[str, vs.Session] = {}
        self._used: dict[str, float] = {}

    def held(self, call_id: str, *, touch: bool = True) -> vs.Session | None:
        """The live owner session of ``call_id``, if this server holds one (a fenced one is let go:
        its lease renewal stopped when it learnt it was fenced). ``touch``: this is the agent's
        use of the call (a tool call), which keeps it from being let go as idle."""
        session = self._held.get(call_id)
        if session is not None and session.fenced:
            del self._held[call_id]
            self._used.pop(call_id, None)
            log.info("let go of call %r: fenced (another agent owns it now)", call_id)
            return None
        if session is not None and touch:
            self._used[call_id] = time.monotonic()
        return session

    def need(self, call_id: str) -> vs.Session:
        """The owner session of ``call_id``, or a tool error saying how to get one."""
        if self.agent is None:
            raise ToolError("this server acts for no agent: restart it with --agent NAME to write as an owner")
        session = self.held(call_id)
        if session is None:
            raise ToolError(
                f"this server ({self.agent!r}) does not own call {call_id!r}. Next: redeem its handoff "
                "(redeem_handoff) or take a dead owner's call over (take_over_call); get_call shows its owner."
            )
        return session

    async def keep(self, session: vs.Session) -> None:
        old = self._held.get(session.call_id)
        self._held[session.call_id] = session  # before any await: the new one is the one held
        self._used[session.call_id] = time.monotonic()
        if old is not None and old is not session:
            await old.__aexit__(None, None, None)  # fenced by the new one already

    async def release(self, call_id: str, session: vs.Session | None = None) -> vs.Session | None:
        """Let the session go (``session``: only if it is still the one held): flush what it
        recorded and stop renewing its lease."""
        held = self._held.get(call_id)
        if held is None or (session is not None and held is not session):
            if session is not None:
                await session.__aexit__(None, None, None)  # a deposed one, replaced meanwhile
            return None
        del self._held[call_id]
        self._used.pop(call_id, None)
        await held.__aexit__(None, None, None)
        return held

    async def reap(self) -> None:
        """Let go of sessions no tool call touched for ``idle`` seconds (runs until cancelled)."""
        if self.idle is None:
            return
        while True:
            await asyncio.sleep(min(self.idle / 4, 5.0))
            now = time.monotonic()
            for call_id, used in list(self._used.items()):
                if now - used > self.idle and call_id in self._held:
                    log.warning("let go of call %r: no tool call on it for %.0f s", call_id, now - used)
                    try:
                        await self.release(call_id)
                    except Exception:  # one call's failure must not stop the others' release
                        log.exception("releasing idle call %r", call_id)

    async def state(self, call_id: str, *, touch: bool = True) -> tuple[vs.CallState, bool]:
        """The call's current state, and whether this server still holds it as the owner (a
        session that a takeover or a redeemed handoff deposed is let go here)."""
        session = self.held(call_id, touch=touch)
        if session is not None:
            try:
                state = await session.arefresh()
                if state.owner == self.agent and not session.fenced:
                    return state, True
            except vs.FencedError:
                pass
            await self.release(call_id, session)
        return await self.store.aload(call_id), False

    async def outside(self, call_id: str, event: Callable[[str | None], vs.Event]) -> int:
        """A write anyone may make (a note, a tool result, the end): through the held session
        if this server still owns the call, else with ``store.append``. ``event(agent)``
        builds the event (afresh for each attempt)."""
        session = self.held(call_id)
        if session is not None:
            try:
                seq = await session.arecord(event(None))
                await self.after(session)
                return seq
            except vs.FencedError:
                await self.release(call_id, session)  # deposed: the write is still anyone's to make
        return await self.store.aappend(call_id, event(self.agent))

    async def after(self, session: vs.Session) -> None:
        """After an owner write: a fenced or ended session is let go."""
        if session.fenced or session.state.status == "ended":
            await self.release(session.call_id, session)

    async def close(self) -> None:
        """Flush and let go of every session (the server is stopping)."""
        for call_id in list(self._held):
            try:
                await self.release(call_id)
            except Exception:  # stopping: one call's failure must not keep the others' sessions
                log.exception("flushing call %r on shutdown", call_id)
