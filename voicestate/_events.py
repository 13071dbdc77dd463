"""Event types: every change to a call is one of these, appended to the call's log."""

from __future__ import annotations

import math
import time
import types
import typing
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar

import attrs

from ._errors import InvalidEvent
from ._ids import new_event_id

SCHEMA_VERSION = 1
"""The event schema this version writes; events of a newer one are refused."""

HandoffKind = Literal["transfer", "escalate", "persona", "return"]
HANDOFF_KINDS: frozenset[str] = frozenset({"transfer", "escalate", "persona", "return"})

EMPTY: Mapping[str, Any] = MappingProxyType({})

# Field kinds drive validation and canonical encoding (see _codec). They are
# derived from each field's annotation; only an ambiguous annotation needs an
# explicit ``metadata={"kind": ...}`` (the turn reference of Interrupted).
STR, OPT_STR, BOOL, FLOAT, OPT_FLOAT, INT, OPT_INT, JSON, JSON_MAP, TURN_REF = (
    "str",
    "opt_str",
    "bool",
    "float",
    "opt_float",
    "int",
    "opt_int",
    "json",
    "json_map",
    "turn_ref",
)
KINDS = frozenset({STR, OPT_STR, BOOL, FLOAT, OPT_FLOAT, INT, OPT_INT, JSON, JSON_MAP, TURN_REF})

_PLAIN = {str: STR, bool: BOOL, float: FLOAT, int: INT}
_OPTIONAL = {str: OPT_STR, float: OPT_FLOAT, int: OPT_INT}
_MAPS = (Mapping, dict, MutableMapping)
_LISTS = (list, tuple, Sequence)


def _kind_of(hint: Any) -> str | None:
    """The field kind an annotation stands for, or None when it is ambiguous."""
    if hint is Any or hint is object:
        return JSON
    if hint in _PLAIN:
        return _PLAIN[hint]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2 and rest[0] in _OPTIONAL:
            return _OPTIONAL[rest[0]]
        return None
    if hint in _MAPS or origin in _MAPS:
        return JSON_MAP if not args or args[0] is str else None
    if hint in _LISTS or origin in _LISTS:
        return JSON
    return None


_FIELD_KINDS: dict[type, Mapping[str, str]] = {}


def field_kinds(cls: type[Event]) -> Mapping[str, str]:
    """Field name -> kind for the payload fields of ``cls`` (base fields excluded).

    Derived from the annotations (``str``, ``int``, ``float``, ``bool``, those
    three with ``| None``, ``Mapping[str, Any]``, ``list[...]``, ``Any``); a field
    whose annotation says no single kind carries ``metadata={"kind": ...}``.
    """
    found = _FIELD_KINDS.get(cls)
    if found is not None:
        return found
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:  # an annotation naming something the class's module cannot see
        raise TypeError(f"cannot resolve the annotations of {cls.__name__}: {exc}") from None
    kinds: dict[str, str] = {}
    for field in attrs.fields(cls):
        if field.name in BASE_FIELDS:
            continue
        kind = field.metadata.get("kind") or _kind_of(hints.get(field.name, Any))
        if kind not in KINDS:
            raise TypeError(
                f"field {cls.__name__}.{field.name}: {hints.get(field.name)!r} names no stored type; annotate it "
                "as str, int, float, bool, one of those three | None, Mapping[str, Any], list[...] or Any "
                f"(or mark it: attrs.field(metadata={{'kind': ...}}), kinds {sorted(KINDS)})"
            )
        kinds[field.name] = kind
    found = _FIELD_KINDS[cls] = MappingProxyType(kinds)  # read-only: the codec's specs are built from it
    return found


@attrs.frozen(kw_only=True)
class Event:
    """Base of all events.

    ``id`` is the idempotency key (unique within a call), ``at`` the writer's UTC
    clock in seconds (informational only), ``agent`` the writer (stamped at
    record time when ``None``). ``seq`` and ``chain`` are set once stored.
    ``extra`` holds fields written by a newer version or a plugin, kept intact.
    """

    TYPE: ClassVar[str] = "Event"
    # True: anyone may append it with store.append (no ownership needed); a plugin's
    # event type may say so too (a checkpoint written by whichever worker runs a graph).
    OUTSIDE: ClassVar[bool] = False
    # A plugin's event type folds into ``CallState.plugin_state[STATE]`` when it names a
    # namespace here and returns its changes from ``changes()`` (key -> value, None deletes).
    STATE: ClassVar[str | None] = None

    id: str = attrs.field(factory=new_event_id)
    at: float = attrs.field(factory=time.time)
    agent: str | None = None
    seq: int | None = attrs.field(default=None, eq=False)
    chain: bytes | None = attrs.field(default=None, eq=False, repr=False)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, repr=False)

    def changes(self) -> Mapping[str, Any]:
        """What this event sets in ``plugin_state[STATE]`` (key -> JSON value; None deletes)."""
        return EMPTY


E = TypeVar("E", bound=type[Event])

_REGISTRY: dict[str, type[Event]] = {}
BASE_FIELDS = frozenset({"id", "at", "agent", "seq", "chain", "extra"})


def register_event_type(cls: E) -> E:
    """Make an event class known to the codec under ``cls.TYPE``.

    Plugins register further types (namespaced, e.g. ``"acme.Escalated"``): a
    plain ``@attrs.frozen`` subclass of :class:`Event` whose field types are
    read from its annotations (see :func:`field_kinds`).
    """
    if not (isinstance(cls, type) and issubclass(cls, Event)):
        raise TypeError(f"{cls!r} is not an Event subclass")
    type_name = cls.__dict__.get("TYPE") or cls.__name__
    existing = _REGISTRY.get(type_name)
    if existing is not None and existing is not cls:
        raise ValueError(f"event type {type_name!r} is already registered by {existing!r}")
    field_kinds(cls)  # an annotation with no stored type fails here, at registration
    cls.TYPE = type_name
    _REGISTRY[type_name] = cls
    return cls


def event_class(type_name: str) -> type[Event] | None:
    return _REGISTRY.get(type_name)


def event_types() -> Mapping[str, type[Event]]:
    return MappingProxyType(_REGISTRY)


@register_event_type
@attrs.frozen
class CallStarted(Event):
    """The call exists: channel, caller, SIP/WebRTC ids, language (``meta``), and its tenant."""

    TYPE: ClassVar[str] = "CallStarted"
    meta: Mapping[str, Any] = attrs.field(factory=dict)
    tenant: str | None = None


@register_event_type
@attrs.frozen
class UserSpoke(Event):
    """A caller utterance (final transcripts; interim ones are not stored by default)."""

    TYPE: ClassVar[str] = "UserSpoke"
    text: str
    final: bool = True
    confidence: float | None = None
    language: str | None = None


@register_event_type
@attrs.frozen
class AgentSpoke(Event):
    """What the agent generated for one turn."""

    TYPE: ClassVar[str] = "AgentSpoke"
    text: str


def _turn_ref(value: object) -> object:
    # Accept the AgentSpoke itself: store its id, which is stable across tiers.
    if isinstance(value, Event):
        return value.id
    return value


@register_event_type
@attrs.frozen
class Interrupted(Event):
    """Barge-in: agent turn ``turn`` (seq, event id, the AgentSpoke, or None for the latest) was cut.

    ``heard`` is the prefix the caller actually heard; ``heard_ms`` the playout
    offset from the start of that turn's audio.
    """

    TYPE: ClassVar[str] = "Interrupted"
    # int | str | None could be read several ways: the kind says which (a seq, an event id or None).
    turn: int | str | None = attrs.field(default=None, converter=_turn_ref, metadata={"kind": TURN_REF})
    heard: str = ""
    heard_ms: int | None = None


@register_event_type
@attrs.frozen
class ToolCalled(Event):
    """A tool call started; it is pending until a result or cancellation arrives."""

    TYPE: ClassVar[str] = "ToolCalled"
    call_id: str
    name: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict)


@register_event_type
@attrs.frozen
class ToolReturned(Event):
    """A tool call finished with ``result`` or failed with ``error``; the first result wins."""

    TYPE: ClassVar[str] = "ToolReturned"
    OUTSIDE: ClassVar[bool] = True
    call_id: str
    result: Any = None
    error: str | None = None


@register_event_type
@attrs.frozen
class ToolCancelled(Event):
    """A pending tool call was abandoned."""

    TYPE: ClassVar[str] = "ToolCancelled"
    OUTSIDE: ClassVar[bool] = True
    call_id: str
    reason: str | None = None


@register_event_type
@attrs.frozen
class SlotsSet(Event):
    """Structured facts, merged key by key; a ``None`` value deletes the key.

    ``scope`` is ``"call"`` (every agent sees it) or ``"agent:<name>"`` (private).
    """

    TYPE: ClassVar[str] = "SlotsSet"
    values: Mapping[str, Any]
    scope: str = "call"


@register_event_type
@attrs.frozen
class Note(Event):
    """Free text for humans (e.g. a supervisor's remark)."""

    TYPE: ClassVar[str] = "Note"
    OUTSIDE: ClassVar[bool] = True
    text: str


@register_event_type
@attrs.frozen
class HandedOff(Event):
    """A handoff is offered and pending until redeemed, cancelled, replaced or expired."""

    TYPE: ClassVar[str] = "HandedOff"
    to_agent: str
    kind: str = "transfer"
    reason: str | None = None
    summary: str | None = None
    packet_id: str = ""
    expires_at: float = 0.0
    data: Mapping[str, Any] = attrs.field(factory=dict)  # what prepare_handoff hooks added


@register_event_type
@attrs.frozen
class HandoffCancelled(Event):
    """The pending handoff is withdrawn."""

    TYPE: ClassVar[str] = "HandoffCancelled"
    packet_id: str


@register_event_type
@attrs.frozen
class OwnerChanged(Event):
    """Ownership moved: a packet was redeemed (``packet_id``) or a worker took over (``None``)."""

    TYPE: ClassVar[str] = "OwnerChanged"
    owner: str
    epoch: int
    packet_id: str | None = None


@register_event_type
@attrs.frozen
class CallEnded(Event):
    """The call is over; nobody owns it any more."""

    TYPE: ClassVar[str] = "CallEnded"
    OUTSIDE: ClassVar[bool] = True
    reason: str | None = None


@attrs.frozen
class UnknownEvent(Event):
    """An event of a type this reader does not know: kept intact, bytes and all."""

    TYPE: ClassVar[str] = "?"
    type_name: str = attrs.field(default="")
    fields: Mapping[str, Any] = attrs.field(factory=dict)


CORE_TYPES: tuple[type[Event], ...] = (
    CallStarted,
    UserSpoke,
    AgentSpoke,
    Interrupted,
    ToolCalled,
    ToolReturned,
    ToolCancelled,
    SlotsSet,
    Note,
    HandedOff,
    HandoffCancelled,
    OwnerChanged,
    CallEnded,
)

RESERVED_TYPES: tuple[type[Event], ...] = (CallStarted, OwnerChanged, HandedOff, HandoffCancelled)
"""Events only the store and session write themselves (via open, handoff, resume)."""


# --- validation -------------------------------------------------------------


MAX_DEPTH = 64
"""How deep data values (slots, tool arguments and results, meta) may nest: deeper is InvalidEvent,
refused before anything recurses through it (the redactor, the codec, a packet's canonical form)."""


def text_ok(text: str) -> bool:
    """Whether ``text`` can be stored: UTF-8 cannot encode a lone surrogate (``"\\ud800"``)."""
    if text.isascii():  # O(1) for most strings
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def bad_text(text: str, where: str) -> InvalidEvent:
    """The error for a string that UTF-8 cannot encode, saying what to do instead."""
    try:
        text.encode()
        pos = -1
    except UnicodeEncodeError as exc:
        pos = exc.start
    found = ascii(text[pos]) if pos >= 0 else "a surrogate"
    return InvalidEvent(
        f"{where}: the text holds a lone surrogate {found} at position {pos}, which UTF-8 cannot store; "
        "pass valid text (decode bytes with errors='replace', or drop the surrogate)"
    )


def check_changes(ev: Event) -> None:
    """A folding plugin event's ``changes()``: string keys to JSON values (None deletes), else InvalidEvent."""
    cls = type(ev)
    ns = cls.STATE
    if not isinstance(ns, str) or not ns:
        raise InvalidEvent(
            f"{cls.TYPE}.STATE names the plugin_state namespace it folds into: a non-empty str, not {ns!r}"
        )
    try:
        changes = ev.changes()
    except Exception as exc:
        raise InvalidEvent(f"{cls.TYPE}.changes() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(changes, Mapping):
        raise InvalidEvent(f"{cls.TYPE}.changes() returns a mapping (key -> value), not {type(changes).__name__}")
    _check_json(dict(changes), f"{cls.TYPE}.changes() of plugin_state[{ns!r}]")


def _check_json(value: Any, path: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise InvalidEvent(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if not text_ok(value):
            raise bad_text(value, path)
        return
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise InvalidEvent(f"{path}: integer {value!r:.40} does not fit 64 bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(f"{path}: {value} is not a finite number")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidEvent(f"{path}: key {k!r:.60} is not a string")
            if not text_ok(k):
                raise bad_text(k, f"{path}: key {k!a:.60}")
            _check_json(v, f"{path}.{k}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{path}[{i}]", depth + 1)
        return
    raise InvalidEvent(
        f"{path}: {type(value).__name__} is not JSON-compatible (use str, number, bool, None, list, dict)"
    )


def _is_int(v: Any) -> bool:
    # msgpack holds 64 bits: refuse what it could not encode, with a typed error
    return isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**64


_CHECKS: dict[str, Callable[[Any], bool]] = {
    STR: lambda v: isinstance(v, str),
    OPT_STR: lambda v: v is None or isinstance(v, str),
    BOOL: lambda v: isinstance(v, bool),
    FLOAT: lambda v: (isinstance(v, float) and math.isfinite(v)) or _is_int(v),
    OPT_FLOAT: lambda v: v is None or (isinstance(v, float) and math.isfinite(v)) or _is_int(v),
    INT: _is_int,
    OPT_INT: lambda v: v is None or _is_int(v),
    TURN_REF: lambda v: v is None or _is_int(v) or isinstance(v, str),
}

_EXPECTED = {
    STR: "a string",
    OPT_STR: "a string or None",
    BOOL: "a bool",
    FLOAT: "a finite number",
    OPT_FLOAT: "a finite number or None",
    INT: "an integer (64 bits)",
    OPT_INT: "an integer (64 bits) or None",
    TURN_REF: "a seq, an event id, an AgentSpoke or None",
    JSON_MAP: "a dict with string keys",
}


def check_field(type_name: str, name: str, kind: str, value: Any) -> None:
    """Raise InvalidEvent unless ``value`` fits the field's kind."""
    if kind == JSON:
        _check_json(value, f"{type_name}.{name}")
        return
    if kind == JSON_MAP:
        if not isinstance(value, Mapping):
            raise InvalidEvent(f"{type_name}.{name} must be {_EXPECTED[kind]}, got {type(value).__name__}")
        _check_json(value, f"{type_name}.{name}")
        return
    check = _CHECKS.get(kind)
    if check is None:
        raise InvalidEvent(f"{type_name}.{name}: unknown field kind {kind!r}")
    if not check(value):
        raise InvalidEvent(f"{type_name}.{name} must be {_EXPECTED[kind]}, got {type(value).__name__} {value!r:.60}")
    if isinstance(value, str) and not text_ok(value):
        raise bad_text(value, f"{type_name}.{name}")
