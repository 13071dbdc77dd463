"""The ``"pipecat"`` context format: a Pipecat ``LLMContext``, both directions.

Pipecat's messages are OpenAI chat messages, so the rendering is the core's
``"openai"`` format (same policy, same interruption notes, same pending-tool
answer) wrapped in an ``LLMContext``. Parsing takes an ``LLMContext`` or a list
of its messages and understands what Pipecat's assistant aggregator writes on
top of that: a tool message ``"IN_PROGRESS"`` (the call is still running, so
it stays pending), ``"CANCELLED"`` (a ``ToolCancelled``) and ``"COMPLETED"``
(a call that returned nothing; rendered back as ``null``). Messages meant for one LLM service
(``LLMSpecificMessage``) have no portable meaning and are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pipecat.frames.frames import LLMMessagesUpdateFrame
from pipecat.processors.aggregators.llm_context import LLMContext, LLMSpecificMessage

import voicestate as vs

IN_PROGRESS = "IN_PROGRESS"
CANCELLED = "CANCELLED"
COMPLETED = "COMPLETED"


def render(state: vs.CallState, policy: vs.ContextPolicy) -> LLMContext:
    return LLMContext(messages=state.context("openai", policy))


def _messages(messages: Any) -> list[Any]:
    if isinstance(messages, LLMContext):
        return list(messages.get_messages())
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise vs.InvalidArgument(
            f"the 'pipecat' format parses an LLMContext or a list of its messages, not {type(messages).__name__}"
        )
    return list(messages)


def parse(messages: Any) -> list[vs.Event]:
    plain: list[Any] = []
    cancelled: list[str] = []
    for m in _messages(messages):
        if isinstance(m, LLMSpecificMessage):
            continue  # one service's own message: nothing portable to keep
        if isinstance(m, dict) and m.get("role") == "tool":
            content = m.get("content")
            if content == IN_PROGRESS:
                continue  # still running: the call stays pending
            if content == CANCELLED:
                cancelled.append(str(m.get("tool_call_id")))
                continue
            if content == COMPLETED:
                m = {**m, "content": json.dumps(None)}
        plain.append(m)
    events = vs.parse_context("openai", plain)
    known = {ev.call_id for ev in events if isinstance(ev, vs.ToolCalled)}
    for call_id in cancelled:
        if call_id not in known:
            raise vs.InvalidEvent(f"a tool message answers call {call_id!r}, which no assistant message made")
    # A cancellation goes right after the call it ends, as the aggregator wrote it.
    out: list[vs.Event] = []
    for ev in events:
        out.append(ev)
        if isinstance(ev, vs.ToolCalled) and ev.call_id in cancelled:
            out.append(vs.ToolCancelled(ev.call_id, reason="cancelled in the Pipecat pipeline"))
    return out


def context_messages(source: vs.Session | vs.CallState, policy: vs.ContextPolicy | None = None) -> list[Any]:
    """The messages of ``source``'s context in the ``"pipecat"`` format, as a list (for
    ``LLMMessagesUpdateFrame``, ``LLMWorkerActivationArgs.messages`` or ``LLMContext.set_messages``)."""
    ctx: LLMContext = source.context("pipecat", policy)
    return list(ctx.get_messages())


def update_frame(
    source: vs.Session | vs.CallState, policy: vs.ContextPolicy | None = None, *, run_llm: bool | None = None
) -> LLMMessagesUpdateFrame:
    """An ``LLMMessagesUpdateFrame`` that replaces a running pipeline's context with ``source``'s.

    Queue it on the pipeline (``await worker.queue_frame(frame)``); the user
    aggregator replaces the context and, with ``run_llm=True``, runs the LLM.
    """
    return LLMMessagesUpdateFrame(messages=context_messages(source, policy), run_llm=run_llm)
