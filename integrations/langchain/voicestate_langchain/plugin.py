"""The hookimpls of voicestate-langchain; LangChain itself is imported lazily, inside them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import voicestate.plugins as vsp


def _render(state: Any, policy: Any) -> Any:
    from ._format import render

    return render(state, policy)


def _parse(messages: Any) -> Any:
    from ._format import parse

    return parse(messages)


@vsp.hookimpl
def register_formats(register: Callable[..., None]) -> None:
    register("langchain", _render, _parse)
