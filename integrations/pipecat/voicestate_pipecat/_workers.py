"""Handing a call between Pipecat ``LLMWorker``\\ s through voicestate.

The sender records ``HandedOff`` and activates the target with
``LLMWorkerActivationArgs``: ``messages`` is the call's context as the policy
renders it *for the target*, and ``metadata[METADATA_KEY]`` carries the
packet's token. The target redeems the token (in this process or on another
host that reaches the store), which moves ownership and fences the sender, and
starts from the context it was handed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.llm_service import FunctionCallParams
from pipecat.workers.llm import LLMContextWorker, LLMWorker, LLMWorkerActivationArgs

import voicestate as vs

from ._format import context_messages
from ._recorder import RecordsCall

METADATA_KEY = "voicestate"
"""The key of ``LLMWorkerActivationArgs.metadata`` that holds the handoff:
``{"token", "call_id", "packet_id", "from"}``."""

log = logging.getLogger("voicestate.pipecat")


def handoff_args(
    packet: vs.HandoffPacket, messages: list[Any], *, run_llm: bool | None = None, metadata: Mapping[str, Any] = {}
) -> LLMWorkerActivationArgs:
    """The activation arguments that carry ``packet`` (as its token) and the target's context."""
    meta = dict(metadata)
    meta[METADATA_KEY] = {
        "token": packet.to_token(),
        "call_id": packet.call_id,
        "packet_id": packet.packet_id,
        "from": packet.from_agent,
    }
    return LLMWorkerActivationArgs(metadata=meta, messages=messages, run_llm=run_llm)


async def hand_off(
    worker: LLMWorker,
    session: vs.Session,
    to: str,
    *,
    reason: str | None = None,
    kind: str = "transfer",
    summary: str | None = None,
    policy: vs.ContextPolicy | None = None,
    run_llm: bool | None = None,
    ttl: float | None = None,
    metadata: Mapping[str, Any] = {},
    params: FunctionCallParams | None = None,
    wait: float = 2.0,
) -> vs.HandoffPacket:
    """Hand the call ``session`` owns to the worker named ``to``, and deactivate ``worker``.

    Records ``HandedOff`` (a barrier: it returns once the store holds the log),
    then ``worker.activate_worker(to, args=..., deactivate_self=True)`` with the
    context the policy selects for ``to`` and the packet's token. ``session``
    keeps ownership until the target redeems the token (see
    :func:`receive_handoff`). Called from a ``@tool`` handler, deliver the
    tool's result first (``await params.result_callback(...)``), as Pipecat asks,
    and pass the handler's ``params``: Pipecat runs the handler as soon as the
    LLM asks, before the recorder after the output transport has seen the turn
    that led to it, so the handoff first waits (up to ``wait`` seconds) until
    that tool call is in the session's state, and the packet covers the turn
    and the call. If the call is still not there (its frame is queued behind
    long audio), the handoff records it itself, with a warning.
    """
    if not isinstance(worker, LLMWorker):
        raise vs.ConfigError(f"hand_off moves a call between pipecat LLMWorkers, not {type(worker).__name__}")
    if params is not None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while params.tool_call_id not in session.state.tools and loop.time() < deadline:
            await asyncio.sleep(0.005)
        if params.tool_call_id not in session.state.tools:
            log.warning(
                "voicestate: tool call %r was not recorded within %s s; recording it before the handoff",
                params.tool_call_id,
                wait,
            )
            # record_nowait applies it to the state at once, so the recorder, when the frame
            # comes, sees the call and does not record it again.
            session.record_nowait(vs.ToolCalled(params.tool_call_id, params.function_name, dict(params.arguments)))
            await session.aflush()
    packet = await session.ahandoff(to, reason=reason, kind=kind, summary=summary, ttl=ttl)
    messages = list(session.state.context("pipecat", policy, agent=to).get_messages())
    args = handoff_args(packet, messages, run_llm=run_llm, metadata=metadata)
    await worker.activate_worker(to, args=args, deactivate_self=True)
    return packet


def _sender(args: Any) -> str | None:
    """Who handed off, read leniently: the args may be the malformed ones."""
    meta = args.get("metadata") if isinstance(args, Mapping) else None
    ref = meta.get(METADATA_KEY) if isinstance(meta, Mapping) else None
    sender = ref.get("from") if isinstance(ref, Mapping) else None
    return sender if isinstance(sender, str) and sender else None


async def _bounce(worker: LLMWorker, args: Any, exc: BaseException, bounce: bool) -> None:
    """The handoff failed: nothing for this worker to run on; the sender, who still owns the call, goes on."""
    if isinstance(args, dict):
        args["messages"] = None
    sender = _sender(args)
    if not bounce or sender is None or sender == worker.name:
        log.error("voicestate: %r could not redeem the handoff (%s); the sender still owns the call", worker.name, exc)
        return
    log.error("voicestate: %r could not redeem the handoff (%s); activating %r again", worker.name, exc, sender)
    note = {
        "role": "system",
        "content": f"The transfer to {worker.name} did not go through ({type(exc).__name__}). "
        "You still have the caller: tell them, and carry on.",
    }
    back = LLMWorkerActivationArgs(messages=[note], run_llm=True)
    await worker.activate_worker(sender, args=back, deactivate_self=True)


def _token(args: Mapping[str, Any] | LLMWorkerActivationArgs | None) -> str | None:
    """The handoff token ``args`` carry, ``None`` if they carry no handoff."""
    if args is None:
        return None
    if isinstance(args, LLMWorkerActivationArgs):
        args = args.to_dict()
    if not isinstance(args, Mapping):
        raise vs.InvalidArgument(f"activation args are a dict or LLMWorkerActivationArgs, not {type(args).__name__}")
    meta = args.get("metadata") or {}
    ref = meta.get(METADATA_KEY) if isinstance(meta, Mapping) else None
    if ref is None:
        return None
    token = ref.get("token") if isinstance(ref, Mapping) else None
    if not isinstance(token, str):
        raise vs.PacketError(
            "malformed",
            f"activation metadata[{METADATA_KEY!r}] holds no handoff token (got {ref!r:.80}); "
            "hand off with voicestate_pipecat.hand_off or handoff_args",
        )
    return token


async def receive_handoff(
    worker: LLMWorker,
    args: dict[str, Any] | None,
    store: vs.Store,
    *,
    agent: str | None = None,
    policy: vs.ContextPolicy | None = None,
    recorder: RecordsCall | None = None,
    context: LLMContext | None = None,
    bounce: bool = True,
) -> vs.Session | None:
    """Redeem the handoff that ``args`` carries, as ``agent`` (default: the worker's name).

    Call it first thing in ``on_activated``, then pass the same ``args`` on::

        async def on_activated(self, args):
            await receive_handoff(self, args, store, recorder=processor, context=self.context)
            await super().on_activated(args)

    It redeems the token (``store.aresume``: ownership moves, the sender is
    fenced) and sets ``args["messages"]`` to the call's context rendered now
    for this agent, so it includes what the caller said during the transfer.
    The worker's own context (``context``, default: an ``LLMContextWorker``'s)
    is emptied first, so the messages replace it instead of repeating what it
    held from an earlier turn in the call. ``recorder`` (a ``VoiceStateProcessor`` or ``VoiceStateObserver``
    recording this pipeline) is switched to the new session. Returns ``None``
    when ``args`` carries no handoff (the worker was activated otherwise).

    If the handoff cannot be redeemed (an expired, cancelled or replaced
    packet, a bad token, the store out of reach), the sender still owns the
    call but has deactivated itself. With ``bounce`` (the default) the sender
    is activated again (``deactivate_self=True``) with a system note that the
    transfer did not go through and ``run_llm=True``, so it tells the caller;
    this worker's ``args["messages"]`` is cleared, and the error is raised
    (Pipecat's bus logs it). A malformed token bounces the same way.
    """
    try:
        token = _token(args)
    except vs.VoiceStateError as exc:
        await _bounce(worker, args, exc, bounce)
        raise
    if token is None:
        return None
    if recorder is not None and recorder.session is not None and not recorder.session.fenced:
        # The sender recorded in this process: what it was saying is its own, so it goes
        # into the log before the redemption fences it.
        recorder.recorder.close_turn()
        try:
            await recorder.session.aflush()
        except vs.VoiceStateError as exc:
            log.warning("voicestate: the sender's last events are not stored yet: %s", exc)
    try:
        session = await store.aresume(token, agent=agent or worker.name)
    except Exception as exc:
        await _bounce(worker, args, exc, bounce)
        raise
    messages = context_messages(session, policy)
    if context is None and isinstance(worker, LLMContextWorker):
        context = worker.context
    if context is not None:
        context.set_messages([])
    if isinstance(args, dict):
        args["messages"] = messages
    if recorder is not None:
        recorder.session = session
    return session
