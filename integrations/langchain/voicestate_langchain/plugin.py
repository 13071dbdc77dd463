"""The hookimpls of voicestate-langchain; LangChain itself is imported lazily, inside them."""

from __future__ import annotations

from collections.abc import Callable

import voicestate.plugins as vsp

_render = vsp.lazy("voicestate_langchain._format", "render")
_parse = vsp.lazy("voicestate_langchain._format", "parse")


@vsp.hookimpl
def register_formats(register: Callable[..., None]) -> None:
    register("langchain", _render, _parse)


@vsp.hookimpl
def register_event_types(register: Callable[..., None]) -> None:
    # The event classes import only attrs and voicestate: cheap to load in every process.
    from ._events import EVENT_TYPES

    for cls in EVENT_TYPES:
        register(cls)
