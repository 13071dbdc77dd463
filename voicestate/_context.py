"""Context formats: a call rendered as a framework's messages, and parsed back.

Formats are plugins (``register_formats``); the core ships ``"openai"``. With
``heard_only`` (the default) an interrupted agent turn contributes only what
the caller heard; the unheard remainder appears nowhere. Interruptions are
marked outside the assistant's own text, so a model will not read them aloud.

A context is rendered *for* one agent (``ContextPolicy.agent``, filled in by
:func:`render`): that agent's system prompt leads it, its own turns are its
own, other agents' turns carry their names, and the handoff summary shown is
the one addressed to it. The format-independent parts (which system prompt,
which summary, what changed since that summary) live here, so every format
says the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import ConfigError
from ._plugins import ContextFormat, registry

if TYPE_CHECKING:
    from ._events import Event, HandedOff
    from ._state import CallState

PROMPT_MARKERS = {"system": "[system prompt] ", "developer": "[developer prompt] "}
"""A ``Note`` whose text starts with one of these is its writer's system (or
developer) prompt: rendered first, only for that agent. Recording one replaces
the agent's earlier prompt."""
CONTINUED_MARKERS = {"system": "[system prompt, continued] ", "developer": "[developer prompt, continued] "}
"""A further message of the same prompt (a prompt of several messages)."""


@attrs.frozen
class ContextPolicy:
    """What goes into a rendered context.

    ``last_turns``: keep only the last N turns (pending tool calls always stay).
    ``tools``: include tool calls and results. ``heard_only``: interrupted turns
    contribute what was heard. ``summary``: lead with the summary of the
    handoff that brought the call to ``agent``, and what changed since it.
    ``mark_interruptions``: a note after each interrupted turn. ``facts``: the
    call's current slots. ``attribute``: turns spoken by another agent carry
    its name. ``agent``: whom the context is for (its system prompt, its own
    turns unattributed); ``None`` means the session's agent (for
    ``state.context``, its ``agent=`` argument, else the call's owner).
    """

    last_turns: int | None = None
    tools: bool = True
    heard_only: bool = True
    summary: bool = True
    mark_interruptions: bool = True
    facts: bool = True
    attribute: bool = True
    agent: str | None = None

    def __attrs_post_init__(self) -> None:
        n = self.last_turns
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ConfigError(f"ContextPolicy.last_turns must be None or an integer >= 0, not {n!r}")
        for name in ("tools", "heard_only", "summary", "mark_interruptions", "facts", "attribute"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"ContextPolicy.{name} must be True or False, not {value!r}")
        if self.agent is not None and (not isinstance(self.agent, str) or not self.agent):
            raise ConfigError(f"ContextPolicy.agent must be None or an agent name, not {self.agent!r}")


def _format(fmt: str) -> ContextFormat:
    if not isinstance(fmt, str):
        raise ConfigError(f"a context format is a name such as 'openai', not {type(fmt).__name__} {fmt!r:.40}")
    found = registry().formats.get(fmt)
    if found is None:
        known = sorted(registry().formats)
        raise ConfigError(f"unknown context format {fmt!r}; known: {known} (integrations add more: pip install ...)")
    return found


def render(state: CallState, fmt: str, policy: ContextPolicy | None = None, *, agent: str | None = None) -> Any:
    """``state`` as ``fmt`` messages, for ``policy.agent``, else ``agent``, else the call's owner.

    The format's ``render(state, policy)`` receives the policy with ``agent``
    filled in (``None`` only when nobody owns the call and no agent was named).
    """
    if policy is None:
        policy = ContextPolicy()
    elif not isinstance(policy, ContextPolicy):
        raise ConfigError(
            f"policy must be a vs.ContextPolicy (e.g. vs.ContextPolicy(last_turns=10)), not {type(policy).__name__}"
        )
    if agent is not None and (not isinstance(agent, str) or not agent):
        raise ConfigError(f"agent must be None or an agent name, not {agent!r}")
    found = _format(fmt)
    if policy.agent is None:
        viewer = agent if agent is not None else state.owner
        if viewer is not None:
            policy = attrs.evolve(policy, agent=viewer)
    return found.render(state, policy)


def parse_context(fmt: str, messages: Any) -> list[Event]:
    """A framework's messages turned back into events, where the format allows."""
    found = _format(fmt)
    if found.parse is None:
        raise ConfigError(f"context format {fmt!r} renders only; it cannot be parsed back into events")
    events: Sequence[Event] = found.parse(messages)
    return list(events)


# -- what every format says, whatever its shape -------------------------------------------


def prompt_note(role: str, text: str, *, continued: bool = False) -> str:
    """The text of the ``Note`` that records a system (or developer) prompt message."""
    return (CONTINUED_MARKERS if continued else PROMPT_MARKERS)[role] + text


def prompt_of(text: str) -> tuple[str, str, bool] | None:
    """``(role, prompt, continued)`` if ``text`` (a Note's) records a system prompt, else None."""
    if text.startswith("["):
        for markers, continued in ((PROMPT_MARKERS, False), (CONTINUED_MARKERS, True)):
            for role, marker in markers.items():
                if text.startswith(marker):
                    return role, text[len(marker) :], continued
    return None


def system_prompts(state: CallState, agent: str | None) -> list[tuple[str, str]]:
    """``agent``'s system prompt as ``(role, text)`` messages: its latest prompt note and
    the continued ones it recorded after it. Other agents' prompts are never returned."""
    if agent is None:
        return []
    prompt: list[tuple[str, str]] = []
    for note in state.notes:
        if note.agent != agent:
            continue
        found = prompt_of(note.text)
        if found is not None:
            role, text, continued = found
            if not continued:
                prompt = []
            prompt.append((role, text))
    return prompt


def summary_handoff(state: CallState, agent: str | None) -> HandedOff | None:
    """The handoff whose summary ``agent`` sees: the pending one if addressed to it,
    else the one that brought the call to it (for no agent, to its last owner)."""
    pending = state.pending_handoff
    if pending is not None and agent is not None and pending.to_agent == agent:
        return pending
    arrived = state.owner_handoff
    if arrived is not None and (agent is None or arrived.to_agent == agent):
        return arrived
    return None


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


_FINISHED = {"ok": "has since returned", "error": "has since failed", "cancelled": "was since cancelled"}


def changes_since(state: CallState, handoff: HandedOff) -> list[str]:
    """What changed since ``handoff`` that its summary may state otherwise: tool
    calls running then that have finished, call slots set, changed or removed."""
    then = state._at_handoff(handoff)
    if then is None:
        return []
    out: list[str] = []
    for call_id, now in state.tools.items():  # in call order
        if call_id in then.pending_tools and now.status != "pending":
            line = f"{now.name or 'a tool'} ({call_id}), running at the handoff, {_FINISHED[now.status]}"
            if now.status != "ok" and now.error is not None:
                line += f": {now.error}"
            out.append(line + ".")
    then_slots, now_slots = then.slots, state.slots
    for key in now_slots:
        value = _dumps(now_slots[key])
        if key not in then_slots:
            out.append(f"{key} is now {value} (new).")
        elif _dumps(then_slots[key]) != value:  # 1 and True differ here
            out.append(f"{key} is now {value} (was {_dumps(then_slots[key])}).")
    for key in then_slots:
        if key not in now_slots:
            out.append(f"{key} was removed (was {_dumps(then_slots[key])}).")
    return out
