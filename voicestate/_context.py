"""Context formats: a call rendered as a framework's messages, and parsed back.

Formats are plugins (``register_formats``); the core ships ``"openai"``. With
``heard_only`` (the default) an interrupted agent turn contributes only what
the caller heard; the unheard remainder appears nowhere. Interruptions are
marked outside the assistant's own text, so a model will not read them aloud.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import ConfigError
from ._plugins import ContextFormat, registry

if TYPE_CHECKING:
    from ._events import Event
    from ._state import CallState


@attrs.frozen
class ContextPolicy:
    """What goes into a rendered context.

    ``last_turns``: keep only the last N turns (pending tool calls always stay).
    ``tools``: include tool calls and results. ``heard_only``: interrupted turns
    contribute what was heard. ``summary``: lead with the handoff summary and
    the call's facts. ``mark_interruptions``: a note after each interrupted turn.
    """

    last_turns: int | None = None
    tools: bool = True
    heard_only: bool = True
    summary: bool = True
    mark_interruptions: bool = True

    def __attrs_post_init__(self) -> None:
        if self.last_turns is not None and (not isinstance(self.last_turns, int) or self.last_turns < 0):
            raise ConfigError(f"ContextPolicy.last_turns must be None or an integer >= 0, not {self.last_turns!r}")


def _format(fmt: str) -> ContextFormat:
    found = registry().formats.get(fmt)
    if found is None:
        known = sorted(registry().formats)
        raise ConfigError(f"unknown context format {fmt!r}; known: {known} (integrations add more: pip install ...)")
    return found


def render(state: CallState, fmt: str, policy: ContextPolicy | None = None) -> Any:
    """``state`` as ``fmt`` messages."""
    return _format(fmt).render(state, policy or ContextPolicy())


def parse_context(fmt: str, messages: Any) -> list[Event]:
    """A framework's messages turned back into events, where the format allows."""
    found = _format(fmt)
    if found.parse is None:
        raise ConfigError(f"context format {fmt!r} renders only; it cannot be parsed back into events")
    events: Sequence[Event] = found.parse(messages)
    return list(events)
