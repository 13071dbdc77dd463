"""voicestate-langchain: a voice call as LangChain messages, and LangChain memory on a call.

- The context format ``"langchain"``: ``session.context("langchain")`` is a
  ``list[BaseMessage]`` rendered with the call's context policy, and
  ``vs.parse_context("langchain", messages)`` turns messages back into events.
- :class:`VoiceStateChatMessageHistory`: a ``BaseChatMessageHistory`` that
  reads a call's context and writes through the owning session.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._history import VoiceStateChatMessageHistory

# LangChain is imported on first use of a name, not with the package: the entry point
# (voicestate_langchain.plugin) loads this package in every process that opens a store.
_WHERE = {"VoiceStateChatMessageHistory": "_history"}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


try:
    __version__ = version("voicestate-langchain")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["VoiceStateChatMessageHistory"]
