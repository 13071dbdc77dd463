"""Rendering a call as a framework's messages. The core ships ``"openai"`` chat messages.

With ``heard_only`` (the default) an interrupted agent turn contributes only
what the caller heard; the unheard remainder appears nowhere. The interruption
is marked by a short system note after the truncated assistant message, never
inside the assistant's own text, so a model will not read it aloud.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._state import CallState


@attrs.frozen
class ContextPolicy:
    """What goes into a rendered context.

    ``last_turns``: keep only the last N turns (tool calls within them stay).
    ``tools``: include tool calls and results. ``heard_only``: interrupted turns
    contribute what was heard. ``summary``: lead with a system message of the
    pending handoff's summary and the call's slots. ``mark_interruptions``: a
    system note after each interrupted turn.
    """

    last_turns: int | None = None
    tools: bool = True
    heard_only: bool = True
    summary: bool = True
    mark_interruptions: bool = True


INTERRUPTION_NOTE = "[The caller interrupted the assistant here; they heard only the text above.]"
PENDING_RESULT = {"status": "pending", "note": "This tool call is still running; its result will follow."}

Renderer = Callable[["CallState", ContextPolicy], Any]
_RENDERERS: dict[str, Renderer] = {}


def register_format(name: str, render_fn: Renderer) -> None:
    _RENDERERS[name] = render_fn


def render(state: CallState, fmt: str, policy: ContextPolicy | None) -> Any:
    fn = _RENDERERS.get(fmt)
    if fn is None:
        raise ConfigError(f"unknown context format {fmt!r}; known: {sorted(_RENDERERS)} (plugins add more)")
    return fn(state, policy or ContextPolicy())


def _openai(state: CallState, policy: ContextPolicy) -> list[dict[str, Any]]:
    turns = list(state.turns)
    if policy.last_turns is not None:
        turns = turns[-policy.last_turns :] if policy.last_turns > 0 else []
    first_seq = turns[0].seq if turns else state.seq + 1
    items: list[tuple[int, str, Any]] = [(t.seq, "turn", t) for t in turns]
    if policy.tools:
        items += [(tc.seq, "tool", tc) for tc in state.tools.values() if tc.seq >= first_seq or tc.status == "pending"]
    items.sort(key=lambda x: x[0])
    out: list[dict[str, Any]] = []
    if policy.summary:
        lines = []
        pending = state.pending_handoff
        if pending is not None and pending.summary:
            lines.append(f"Handoff summary: {pending.summary}")
        elif state.handoffs and state.handoffs[-1].summary:
            lines.append(f"Handoff summary: {state.handoffs[-1].summary}")
        if state.slots:
            lines.append("Known facts: " + json.dumps(dict(state.slots), sort_keys=True, ensure_ascii=False))
        if lines:
            out.append({"role": "system", "content": "\n".join(lines)})
    for _, kind, item in items:
        if kind == "turn":
            if item.role == "user":
                out.append({"role": "user", "content": item.text})
                continue
            text = item.heard if (item.interrupted and policy.heard_only) else item.text
            out.append({"role": "assistant", "content": text})
            if item.interrupted and policy.mark_interruptions:
                out.append({"role": "system", "content": INTERRUPTION_NOTE})
        else:
            out.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": item.call_id,
                            "type": "function",
                            "function": {
                                "name": item.name,
                                "arguments": json.dumps(dict(item.arguments), sort_keys=True),
                            },
                        }
                    ],
                }
            )
            # Every tool call gets an answer (OpenAI requires it): pending ones say so.
            if item.status == "ok":
                content = item.result
            elif item.status == "pending":
                content = PENDING_RESULT
            else:
                content = {"status": item.status, "error": item.error}
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": item.call_id,
                    "content": content if isinstance(content, str) else json.dumps(content, sort_keys=True),
                }
            )
    return out


register_format("openai", _openai)
