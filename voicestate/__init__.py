"""voicestate: one canonical, durable state for a live voice call, resumable by any agent.

import voicestate as vs
store = vs.open_store("sqlite:///calls.db")
with store.open("call-1", agent="triage") as s:
    s.record(vs.UserSpoke("I was charged twice"))
    packet = s.handoff(to="billing", reason="double charge")
with store.resume(packet, agent="billing") as s:
    s.context("openai")
"""

from __future__ import annotations

from ._backend import AppendResult, Backend, CallMeta, Capabilities
from ._codec import StoredEvent, decode_event, encode_event, make_converter
from ._context import ContextPolicy, parse_context
from ._errors import (
    BackendUnavailable,
    CallNotFound,
    ConfigError,
    FencedError,
    HandoffVetoed,
    IntegrityError,
    InvalidEvent,
    OwnershipError,
    PacketError,
    SeqConflict,
    UnknownBackend,
    VoiceStateError,
)
from ._events import (
    SCHEMA_VERSION,
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
    register_event_type,
)
from ._keys import EphemeralKeyWarning, KeyRing, parse_keys
from ._open import open_store, register_backend
from ._packet import HandoffPacket, TokenClaims, decode_token
from ._plugins import get_plugin_manager, register_plugin, unregister_plugin
from ._session import Session
from ._state import CallState, ToolCall, Turn
from ._store import Opening, Store
from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "AgentSpoke",
    "AppendResult",
    "Backend",
    "BackendUnavailable",
    "CallEnded",
    "CallMeta",
    "CallNotFound",
    "CallStarted",
    "CallState",
    "Capabilities",
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
    "InvalidEvent",
    "KeyRing",
    "Note",
    "Opening",
    "OwnerChanged",
    "OwnershipError",
    "PacketError",
    "SeqConflict",
    "Session",
    "SlotsSet",
    "StoredEvent",
    "Store",
    "TokenClaims",
    "ToolCall",
    "ToolCalled",
    "ToolCancelled",
    "ToolReturned",
    "Turn",
    "UnknownBackend",
    "UnknownEvent",
    "UserSpoke",
    "VoiceStateError",
    "decode_event",
    "decode_token",
    "encode_event",
    "get_plugin_manager",
    "hookimpl",
    "make_converter",
    "open_store",
    "parse_context",
    "parse_keys",
    "register_backend",
    "register_event_type",
    "register_plugin",
    "unregister_plugin",
]
