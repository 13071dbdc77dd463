"""voicestate-pipecat: record a live Pipecat pipeline into a voicestate call, and resume one.

- :class:`VoiceStateProcessor` (a ``FrameProcessor``, right after
  ``transport.output()``) and :class:`VoiceStateObserver` (a ``BaseObserver``)
  record turns, barge-ins with the text the caller heard, and function calls.
- ``session.context("pipecat")`` is an ``LLMContext``; :func:`context_messages`
  and :func:`update_frame` give its messages for ``LLMMessagesUpdateFrame``.
- :func:`hand_off` and :func:`receive_handoff` move a call between
  ``LLMWorker``\\ s through voicestate, in one process or across hosts;
  :class:`VoiceStateBridge` attributes turns in Pipecat's bridged layout.
- :func:`save_flow` and :func:`restore_flow` persist a Flow's state and node.
- :func:`resume_call` takes a call over after its worker died.

See docs/integrations/pipecat.md.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from voicestate.plugins import lazy_exports

if TYPE_CHECKING:
    from ._bridge import AgentSwitchFrame, VoiceStateBridge
    from ._flows import restore_flow, save_flow
    from ._format import context_messages, update_frame
    from ._observer import VoiceStateObserver
    from ._processor import VoiceStateProcessor
    from ._resume import resume_call
    from ._workers import METADATA_KEY, hand_off, handoff_args, receive_handoff

# Pipecat is imported on first use of a name, not with the package: the entry point
# (voicestate_pipecat.plugin) loads this package in every process that opens a store.
_WHERE = {
    "AgentSwitchFrame": "_bridge",
    "VoiceStateBridge": "_bridge",
    "METADATA_KEY": "_workers",
    "VoiceStateObserver": "_observer",
    "VoiceStateProcessor": "_processor",
    "context_messages": "_format",
    "hand_off": "_workers",
    "handoff_args": "_workers",
    "receive_handoff": "_workers",
    "restore_flow": "_flows",
    "resume_call": "_resume",
    "save_flow": "_flows",
    "update_frame": "_format",
}

__getattr__ = lazy_exports(__name__, _WHERE)


try:
    __version__ = version("voicestate-pipecat")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AgentSwitchFrame",
    "METADATA_KEY",
    "VoiceStateBridge",
    "VoiceStateObserver",
    "VoiceStateProcessor",
    "context_messages",
    "hand_off",
    "handoff_args",
    "receive_handoff",
    "restore_flow",
    "resume_call",
    "save_flow",
    "update_frame",
]
