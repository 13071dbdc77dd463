"""The ``"crewai"`` format: a call as the inputs a Crew's tasks take, and a Crew's result back.

``state.context("crewai", policy, agent=...)`` is a ``dict[str, str]`` for
``crew.kickoff(inputs=...)`` (task descriptions name them: ``{transcript}``):

- ``transcript``: the conversation under the context policy, one line a turn
  (``caller: ...``, ``<agent>: ...``); of an interrupted turn only what the
  caller heard, with the note that they cut in;
- ``facts``: the call's slots, ``key: value`` a line;
- ``pending_tools``: the tool calls still running, a line each;
- ``handoff_reason`` and ``summary``: of the handoff that brought the call to
  ``agent`` (empty when there is none);
- ``call_id``.

:func:`record_result` records a Crew's result in the call as the Crew's agent:
a turn for the caller (``AgentSpoke``) or a note for the next agent (``Note``).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import voicestate as vs


def render(state: vs.CallState, policy: vs.ContextPolicy) -> dict[str, str]:
    lines = []
    for m in state.context("openai", policy):
        role, content = m["role"], m.get("content")
        if role == "user":
            lines.append(f"caller: {content}")
        elif role == "assistant":
            who = m.get("name") or "agent"
            if content:
                lines.append(f"{who}: {content}")
            for call in m.get("tool_calls") or ():
                fn = call["function"]
                lines.append(f"{who} called {fn['name']}({fn['arguments']})")
        elif role == "tool":
            lines.append(f"tool result: {content}")
        elif role == "system" and lines:  # notes between turns (a barge-in); the prompt and summary go apart
            lines.append(f"({content.strip('[]')})")
    handoff = state.owner_handoff or state.pending_handoff
    return {
        "call_id": state.call_id,
        "transcript": "\n".join(lines),
        "facts": "\n".join(f"{k}: {text_of(v)}" for k, v in sorted(state.slots.items())),
        "pending_tools": "\n".join(
            f"{t.name}({text_of(dict(t.arguments))}) is still running" for t in state.pending_tools()
        ),
        "handoff_reason": (handoff.reason or "") if handoff is not None else "",
        "summary": (handoff.summary or "") if handoff is not None else "",
    }


def text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def record_result(session: vs.Session, result: Any, *, to: Literal["caller", "next agent"] = "caller") -> int:
    """Record a Crew's result (a ``CrewOutput``, a ``TaskOutput`` or text) in the call, as the
    session's agent: a turn the caller hears (``to="caller"``), or a note for the next agent.
    Returns the stored seq. Fenced like every owner write."""
    return session.record(_result_event(result, to, "record_result"))


async def arecord_result(session: vs.Session, result: Any, *, to: Literal["caller", "next agent"] = "caller") -> int:
    return await session.arecord(_result_event(result, to, "arecord_result"))


def _result_event(result: Any, to: str, fn: str) -> vs.Event:
    text = _result_text(result)
    if to == "caller":
        return vs.AgentSpoke(text)
    if to == "next agent":
        return vs.Note(text)
    raise vs.InvalidArgument(f"{fn}(to=...) is 'caller' or 'next agent', not {to!r}")


def _result_text(result: Any) -> str:
    raw = getattr(result, "raw", result)
    if not isinstance(raw, str) or not raw.strip():
        raise vs.InvalidArgument(f"a Crew's result to record is text (or has .raw text), not {type(result).__name__}")
    return raw.strip()
