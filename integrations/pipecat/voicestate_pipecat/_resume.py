"""Crash recovery: a restarted pipeline takes over the call its dead worker owned."""

from __future__ import annotations

import asyncio
import time

from pipecat.processors.aggregators.llm_context import LLMContext

import voicestate as vs


async def resume_call(
    store: vs.Store,
    call_id: str,
    *,
    agent: str,
    takeover: bool = True,
    wait: float = 0.0,
    from_epoch: int | None = None,
    policy: vs.ContextPolicy | None = None,
) -> tuple[vs.Session, LLMContext]:
    """Resume ``call_id`` as ``agent`` and return the session and its ``LLMContext``.

    With ``takeover=True`` (the crash path) this takes the call from a dead
    owner, conditional on the epoch it saw die (``from_epoch``, default: the
    epoch read now), so of several recovery workers exactly one wins. While the
    old owner's lease is live the store refuses; ``wait`` is how many seconds to
    keep trying until it lapses (``0``: fail at once with ``OwnershipError``).
    If another worker recovers the call meanwhile, ``OwnershipError`` is raised
    at once. Build the pipeline's aggregator pair from the returned context
    (``LLMContextAggregatorPair(context)``) and record into the session.
    """
    if not takeover:
        session = await store.aresume(call_id, agent=agent)
        return session, session.context("pipecat", policy)
    if from_epoch is None:
        from_epoch = (await store.aload(call_id)).epoch
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        try:
            session = await store.aresume(call_id, agent=agent, takeover=True, from_epoch=from_epoch)
        except vs.OwnershipError:
            now = await store.aload(call_id)
            if time.monotonic() >= deadline or now.epoch != from_epoch or now.status == "ended":
                raise  # out of time, another worker recovered the call, or it is over
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)
            continue
        return session, session.context("pipecat", policy)
