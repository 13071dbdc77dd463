"""The ``"openai"`` context format: OpenAI chat-completions messages, both directions.

A context is rendered for one agent (``policy.agent``). In order:

- that agent's system prompt, as it was recorded (``system`` or ``developer``
  messages); no other agent's prompt ever appears;
- one ``system`` message: with ``summary``, the summary of the handoff that
  brought the call to the agent (or the pending one addressed to it), marked as
  of the handoff, then one ``Since the handoff: ...`` line per thing it may
  state otherwise now (a tool call running then has finished, a fact changed);
  with ``facts``, the call's current facts (slots; other agents' private slots
  never appear);
- then, in seq order, a user turn: ``{"role": "user", "content": text}``;
- an agent turn: ``{"role": "assistant", "content": text}`` (with ``heard_only``,
  what the caller heard; with ``attribute``, ``"name"`` is the speaking agent
  when it is another one), then, if it was interrupted and
  ``mark_interruptions``, ``{"role": "system", "content": INTERRUPTION_NOTE}``;
- a tool call: an assistant message with one ``tool_calls`` entry (named like a
  turn), answered at once by its ``tool`` message, because OpenAI rejects a
  tool call without an answer. A finished call answers with its result (a
  string as is, anything else as JSON); a failed or cancelled one with
  ``{"status": ..., "error": ...}``; a *pending* one with ``PENDING_RESULT``,
  which tells the model the result is still coming. The real result is
  rendered in its place once it arrives.

Parsing reverses this: leading system (or developer) messages that are not the
summary message become the recording agent's system prompt (``Note``s marked
``[system prompt] ``, further messages ``[system prompt, continued] ``), user
and assistant messages ``UserSpoke`` and ``AgentSpoke`` (an assistant's
``name`` becomes the event's ``agent``), tool calls ``ToolCalled``, tool
messages ``ToolReturned`` (or ``ToolCancelled``, or nothing for a pending
answer), the interruption note an ``Interrupted`` of the preceding assistant
turn, a ``Known facts:`` line a ``SlotsSet``, and any other system line a ``Note``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._context import (
    ContextPolicy,
    changes_since,
    prompt_note,
    summary_handoff,
    system_prompts,
)
from ._errors import InvalidEvent
from ._events import (
    AgentSpoke,
    Event,
    Interrupted,
    Note,
    SlotsSet,
    ToolCalled,
    ToolCancelled,
    ToolReturned,
    UserSpoke,
)
from ._packet import reject_constant  # NaN and Infinity are not JSON
from ._state import CallState, ToolCall

INTERRUPTION_NOTE = "[The caller interrupted the assistant here; they heard only the text above.]"
PENDING_RESULT = {"status": "pending", "note": "This tool call is still running; its result will follow."}
_PENDING_JSON = json.dumps(PENDING_RESULT, sort_keys=True)
SUMMARY_PREFIX = "Handoff summary (as of the handoff): "
SINCE_PREFIX = "Since the handoff: "
FACTS_PREFIX = "Known facts: "
_OURS = ("Handoff summary", SINCE_PREFIX, FACTS_PREFIX)  # lines of the summary message (older prefixes too)
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_-]")


def openai_name(agent: str) -> str:
    """``agent`` as an OpenAI message ``name`` (``^[a-zA-Z0-9_-]{1,64}$``): others become ``_``."""
    return _NOT_NAME.sub("_", agent)[:64] or "_"


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _tool_answer(tc: ToolCall) -> str:
    if tc.status == "ok":
        # A plain string goes as is; one that would read back as JSON is quoted, so it round-trips.
        if isinstance(tc.result, str) and _loads(tc.result) is tc.result:
            return tc.result
        return _dumps(tc.result)
    if tc.status == "pending":
        return _PENDING_JSON
    return _dumps({"status": tc.status, "error": tc.error})


def _lead(state: CallState, policy: ContextPolicy) -> list[dict[str, Any]]:
    """The system prompt of the agent the context is for, then the summary message."""
    out: list[dict[str, Any]] = [{"role": role, "content": text} for role, text in system_prompts(state, policy.agent)]
    lines = []
    if policy.summary:
        handoff = summary_handoff(state, policy.agent)
        if handoff is not None and handoff.summary:
            lines.append(SUMMARY_PREFIX + handoff.summary)
            lines += [SINCE_PREFIX + change for change in changes_since(state, handoff)]
    if policy.facts and state.slots:
        lines.append(FACTS_PREFIX + _dumps(dict(state.slots)))
    if lines:
        out.append({"role": "system", "content": "\n".join(lines)})
    return out


def render(state: CallState, policy: ContextPolicy) -> list[dict[str, Any]]:
    turns = list(state.turns)
    first_seq = 0  # everything, unless a window is asked for
    if policy.last_turns is not None:
        turns = turns[len(turns) - policy.last_turns :] if policy.last_turns else []
        first_seq = turns[0].seq if turns else state.seq + 1
    items: list[tuple[int, bool, Any]] = [(t.seq, True, t) for t in turns]
    if policy.tools:
        items += [(tc.seq, False, tc) for tc in state.tools.values() if tc.seq >= first_seq or tc.status == "pending"]
    items.sort(key=lambda x: x[0])
    viewer, attribute = policy.agent, policy.attribute
    out = _lead(state, policy)
    for _, is_turn, item in items:
        if is_turn:
            if item.role == "user":
                out.append({"role": "user", "content": item.text})
                continue
            text = item.heard if (item.interrupted and policy.heard_only) else item.text
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            if attribute and item.agent is not None and item.agent != viewer:
                msg["name"] = openai_name(item.agent)
            out.append(msg)
            if item.interrupted and policy.mark_interruptions:
                out.append({"role": "system", "content": INTERRUPTION_NOTE})
            continue
        call = {
            "id": item.call_id,
            "type": "function",
            "function": {"name": item.name, "arguments": _dumps(dict(item.arguments))},
        }
        msg = {"role": "assistant", "content": None, "tool_calls": [call]}
        if attribute and item.agent is not None and item.agent != viewer:
            msg["name"] = openai_name(item.agent)
        out.append(msg)
        out.append({"role": "tool", "tool_call_id": item.call_id, "content": _tool_answer(item)})
    return out


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # content parts: keep the text ones
        parts = [
            p.get("text", "")
            for p in content
            if isinstance(p, Mapping) and p.get("type") in ("text", "input_text", "output_text")
        ]
        return "".join(parts)
    raise InvalidEvent(f"{where}: content must be a string or a list of parts, not {type(content).__name__}")


def _loads(text: str) -> Any:
    """JSON if ``text`` is JSON, else ``text`` itself (the very object)."""
    try:
        return json.loads(text, parse_constant=reject_constant)
    except ValueError:
        return text


def _speaker(msg: Mapping[str, Any]) -> str | None:
    name = msg.get("name")
    return name if isinstance(name, str) and name else None


def parse(messages: Sequence[Mapping[str, Any]]) -> list[Event]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidEvent("openai messages must be a list of {'role': ..., 'content': ...} dicts")
    events: list[Event] = []
    last_agent: AgentSpoke | None = None
    leading = True  # still in the system messages before the conversation: the system prompt
    prompt_started = False
    for i, msg in enumerate(messages):
        where = f"message {i}"
        if not isinstance(msg, Mapping) or "role" not in msg:
            raise InvalidEvent(f"{where}: not a message dict with a 'role'")
        role = msg["role"]
        if role not in ("system", "developer"):
            leading = False
        if role == "user":
            events.append(UserSpoke(_text(msg.get("content"), where)))
        elif role == "assistant":
            content = msg.get("content")
            speaker = _speaker(msg)
            if content is not None and (content or not msg.get("tool_calls")):
                last_agent = AgentSpoke(_text(content, where), agent=speaker)
                events.append(last_agent)
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") or {}
                args = _loads(fn.get("arguments") or "{}")
                if not isinstance(args, dict):
                    args = {"arguments": args}
                events.append(ToolCalled(str(call.get("id")), str(fn.get("name", "")), args, agent=speaker))
        elif role == "tool":
            call_id = str(msg.get("tool_call_id"))
            content = _text(msg.get("content", ""), where)
            if content == _PENDING_JSON:
                continue  # still running: no result event
            value = _loads(content)
            if isinstance(value, dict) and set(value) == {"status", "error"} and value["status"] == "error":
                events.append(ToolReturned(call_id, None, str(value["error"])))
            elif isinstance(value, dict) and set(value) == {"status", "error"} and value["status"] == "cancelled":
                events.append(ToolCancelled(call_id, value["error"]))
            else:
                events.append(ToolReturned(call_id, value))
        elif role in ("system", "developer"):
            text = _text(msg.get("content"), where)
            lines = text.split("\n")
            if leading and text != INTERRUPTION_NOTE and not any(line.startswith(_OURS) for line in lines):
                # the recording agent's own prompt (a Note, so it is stored and survives a handoff back)
                events.append(Note(prompt_note(role, text, continued=prompt_started)))
                prompt_started = True
            elif text == INTERRUPTION_NOTE and last_agent is not None:
                events.append(Interrupted(turn=last_agent.id, heard=last_agent.text))
            else:
                for line in lines:
                    if line.startswith(FACTS_PREFIX):
                        facts = _loads(line[len(FACTS_PREFIX) :])
                        if isinstance(facts, dict):
                            events.append(SlotsSet(facts))
                            continue
                    if line:
                        events.append(Note(line))
        else:
            raise InvalidEvent(f"{where}: unknown role {role!r}")
    return events
