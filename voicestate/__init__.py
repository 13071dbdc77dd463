"""voicestate: one canonical, durable state for a live voice call, resumable by any agent.

```python
import voicestate as vs

store = vs.open_store("sqlite:///calls.db")
with store.open("call-1", agent="triage") as s:
    s.record(vs.UserSpoke("I was charged twice"))
    packet = s.handoff(to="billing", reason="double charge")
with store.resume(packet, agent="billing") as s:
    s.context("openai")
```

This module holds what an application uses. Backend authors also use
:mod:`voicestate.backend`, plugin authors :mod:`voicestate.plugins`, and both
:mod:`voicestate.testing` (the conformance suites).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._calls import CallInfo
from ._context import ContextPolicy, parse_context
from ._errors import (
    BackendUnavailable,
    CallNotFound,
    ConfigError,
    FencedError,
    HandoffVetoed,
    IntegrityError,
    InvalidArgument,
    InvalidEvent,
    OwnershipError,
    PacketError,
    SeqConflict,
    UnknownBackend,
    VoiceStateError,
)
from ._events import (
    AgentSpoke,
    CallEnded,
    CallStarted,
    Event,
    HandedOff,
    HandoffCancelled,
    Interrupted,
    Note,
    OwnerChanged,
    SlotsSet,
    ToolCalled,
    ToolCancelled,
    ToolReturned,
    UnknownEvent,
    UserSpoke,
)
from ._keys import EphemeralKeyWarning
from ._open import open_store
from ._packet import HandoffPacket
from ._public import publish
from ._session import Session
from ._state import CallState, ToolCall, Turn
from ._store import Opening, Store
from ._verify import PacketCheck

try:
    __version__ = version("voicestate")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AgentSpoke",
    "BackendUnavailable",
    "CallEnded",
    "CallNotFound",
    "CallStarted",
    "CallInfo",
    "CallState",
    "ConfigError",
    "ContextPolicy",
    "EphemeralKeyWarning",
    "Event",
    "FencedError",
    "HandedOff",
    "HandoffCancelled",
    "HandoffPacket",
    "HandoffVetoed",
    "IntegrityError",
    "Interrupted",
    "InvalidArgument",
    "InvalidEvent",
    "Note",
    "Opening",
    "OwnerChanged",
    "OwnershipError",
    "PacketCheck",
    "PacketError",
    "SeqConflict",
    "Session",
    "SlotsSet",
    "Store",
    "ToolCall",
    "ToolCalled",
    "ToolCancelled",
    "ToolReturned",
    "Turn",
    "UnknownBackend",
    "UnknownEvent",
    "UserSpoke",
    "VoiceStateError",
    "open_store",
    "parse_context",
]

publish(__name__, globals(), __all__)
