"""``VoiceStateChatMessageHistory``: LangChain's chat message history on a voice call.

For ``RunnableWithMessageHistory`` and older LangChain code (the class is
deprecated upstream since langchain-core 1.6.4, still widely used). Reading
gives the call's context in the ``"langchain"`` format, rendered for this
agent with the call's policy: what every agent and the caller said (only what
the caller heard of an interrupted turn), the handoff summary and the facts.
Writing records the messages as the call's events through the owning session,
fenced like every owner write.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

import voicestate as vs

from ._format import parse


class VoiceStateChatMessageHistory(BaseChatMessageHistory):
    """The chat history of call ``call_id`` in ``store``, as seen and written by ``agent``.

    ``session``: the owner's session, when the app holds it (the usual case:
    the agent redeemed a handoff or opened the call). Without one, the first
    write opens the call when it does not exist yet, or redeems a pending
    handoff addressed to ``agent``; otherwise it raises ``OwnershipError``
    (another agent owns the call). ``policy`` is the context policy of what is
    read. ``clear()`` is refused: a call's log is append-only.
    """

    def __init__(
        self,
        call_id: str,
        *,
        store: vs.Store,
        agent: str,
        session: vs.Session | None = None,
        policy: vs.ContextPolicy | None = None,
    ) -> None:
        if not isinstance(store, vs.Store):
            raise vs.ConfigError(f"store must be a voicestate Store (vs.open_store(...)), not {type(store).__name__}")
        if not isinstance(agent, str) or not agent:
            raise vs.ConfigError(f"agent must be the name of the agent this history speaks as, not {agent!r}")
        if session is not None and (session.call_id != call_id or session.agent != agent):
            raise vs.ConfigError(
                f"session is {session.agent!r}'s on call {session.call_id!r}, not {agent!r}'s on {call_id!r}"
            )
        self.call_id = call_id
        self.store = store
        self.agent = agent
        self.session = session
        self.policy = policy

    # -- reading -----------------------------------------------------------------------

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The call's context, rendered now for this agent."""
        state = self.session.refresh() if self.session is not None else self.store.load(self.call_id)
        result: list[BaseMessage] = state.context("langchain", self.policy, agent=self.agent)
        return result

    async def aget_messages(self) -> list[BaseMessage]:
        if self.session is not None:
            state = await self.session.arefresh()
        else:
            state = await self.store.aload(self.call_id)
        result: list[BaseMessage] = state.context("langchain", self.policy, agent=self.agent)
        return result

    # -- writing -----------------------------------------------------------------------

    def _owner(self) -> vs.Session:
        if self.session is not None:
            return self.session
        try:
            state = self.store.load(self.call_id)
        except vs.CallNotFound:
            self.session = self.store.open(self.call_id, agent=self.agent)
            return self.session
        self.session = self.store.resume(self.call_id, agent=self._redeemable(state))
        return self.session

    async def _aowner(self) -> vs.Session:
        if self.session is not None:
            return self.session
        try:
            state = await self.store.aload(self.call_id)
        except vs.CallNotFound:
            self.session = await self.store.aopen(self.call_id, agent=self.agent)
            return self.session
        self.session = await self.store.aresume(self.call_id, agent=self._redeemable(state))
        return self.session

    def _redeemable(self, state: vs.CallState) -> str:
        pending = state.pending_handoff
        if pending is not None and pending.to_agent == self.agent:
            return self.agent
        raise vs.OwnershipError(
            f"call {self.call_id!r} is {state.owner!r}'s and no handoff to {self.agent!r} is pending: "
            "pass session= (the owner's session), or hand the call to this agent first"
        )

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Record ``messages`` as the call's events (``UserSpoke``, ``AgentSpoke``, ``ToolCalled``, ...)."""
        events = parse(list(messages))
        if events:
            self._owner().record(*events)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        events = parse(list(messages))
        if events:
            await (await self._aowner()).arecord(*events)

    def clear(self) -> None:
        raise vs.InvalidArgument(
            f"call {self.call_id!r}: a call's log is append-only and cannot be cleared; "
            "end it (session.end()) or delete it (store.delete(call_id))"
        )

    async def aclear(self) -> None:
        self.clear()

    def __repr__(self) -> str:
        return f"<VoiceStateChatMessageHistory {self.call_id!r} agent={self.agent!r}>"
