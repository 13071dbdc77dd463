"""voicestate-langchain: a voice call as LangChain messages, and LangChain memory on a call.

- The context format ``"langchain"``: ``session.context("langchain")`` is a
  ``list[BaseMessage]`` rendered with the call's context policy, and
  ``vs.parse_context("langchain", messages)`` turns messages back into events.
- :class:`VoiceStateSaver`: a LangGraph checkpointer whose threads live in a
  voicestate store; a thread that is a voice call has the call's conversation
  as its messages and records what the graph adds as the call's events.
- :class:`VoiceStateChatMessageHistory`: a ``BaseChatMessageHistory`` that
  reads a call's context and writes through the owning session.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from voicestate.plugins import lazy_exports

if TYPE_CHECKING:
    from ._history import VoiceStateChatMessageHistory
    from ._saver import VoiceStateSaver

# LangChain is imported on first use of a name, not with the package: the entry point
# (voicestate_langchain.plugin) loads this package in every process that opens a store.
_WHERE = {"VoiceStateChatMessageHistory": "_history", "VoiceStateSaver": "_saver"}

__getattr__ = lazy_exports(__name__, _WHERE)


try:
    __version__ = version("voicestate-langchain")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["VoiceStateChatMessageHistory", "VoiceStateSaver"]
