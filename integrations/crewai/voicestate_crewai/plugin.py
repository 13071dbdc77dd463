"""The hookimpls of voicestate-crewai; CrewAI itself is imported lazily, inside them."""

from __future__ import annotations

from collections.abc import Callable

import voicestate.plugins as vsp

_render = vsp.lazy("voicestate_crewai._format", "render")


@vsp.hookimpl
def register_formats(register: Callable[..., None]) -> None:
    register("crewai", _render)


@vsp.hookimpl
def register_event_types(register: Callable[..., None]) -> None:
    # The event classes import only attrs and voicestate: cheap to load in every process.
    from ._events import EVENT_TYPES

    for cls in EVENT_TYPES:
        register(cls)
