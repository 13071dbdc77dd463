"""The default warm-transfer summary: plain facts from the state, no LLM."""

from __future__ import annotations

import json
from typing import Any

from ._state import CallState, _Seq

_INTENT_KEYS = ("intent", "reason", "topic", "issue")
_WHO_KEYS = ("caller", "from", "caller_id", "phone", "ani")


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def default_summary(state: CallState, to_agent: str) -> str:
    """Who called, what they want, facts gathered, open tool calls, the last unanswered question.

    What a human sees on escalation, so it reads as sentences, one per line.
    """
    lines = []
    meta, slots = state.meta, state.slots
    who = next((meta[k] for k in _WHO_KEYS if k in meta), None)
    channel = meta.get("channel")
    caller = f"Caller {_fmt(who)}" if who is not None else "The caller"
    if channel:
        caller += f" on {_fmt(channel)}"
    turns = state.turns
    intent = next((slots[k] for k in _INTENT_KEYS if k in slots), None)
    first_user = None if intent is not None else next((t for t in turns if t.role == "user"), None)
    if intent is not None:
        lines.append(f"{caller} wants: {_fmt(intent)}.")
    elif first_user is not None:
        lines.append(f'{caller} opened with: "{first_user.text}"')
    else:
        lines.append(f"{caller} has not spoken yet.")
    facts = {k: v for k, v in slots.items() if k not in _INTENT_KEYS}
    if facts:
        lines.append("Facts: " + ", ".join(f"{k}={_fmt(v)}" for k, v in facts.items()) + ".")
    pending = state.pending_tools()
    if pending:
        lines.append(
            "Still running: "
            + ", ".join(f"{t.name or 'a tool'} ({t.call_id}) started by {t.agent}" for t in pending)
            + "."
        )
    # The caller's words after the last agent turn got no answer yet. Read from the end:
    # a handoff's summary must not cost O(call length) (the handoff budget).
    n = len(turns)
    unanswered = []
    i = n - 1
    while i >= 0 and turns[i].role != "agent":
        unanswered.append(turns[i].text)
        i -= 1
    if unanswered:
        lines.append(f'Unanswered: "{" ".join(reversed(unanswered))}"')
    # interrupted turns are the changed ones (few): no scan of the whole call
    candidates = reversed(turns.changed()) if isinstance(turns, _Seq) else range(n - 1, -1, -1)
    barge = next((turns[j] for j in candidates if turns[j].interrupted), None)
    if barge is not None:
        lines.append(f'Last barge-in: the caller heard only "{barge.heard}" of {barge.agent}\'s turn.')
    lines.append(f"Handed to {to_agent} by {state.owner} after {n} turns.")
    return "\n".join(lines)
