"""One canonical msgpack encoding per event, and the hash chain.

The canonical form is a msgpack map whose keys are sorted, whose nested maps are
sorted too, with fields equal to their default left out. It is produced once,
when an event is recorded, and stored byte for byte in every tier.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import attrs
import msgpack

from ._backend import StoredEvent
from ._errors import InvalidEvent
from ._events import (
    EMPTY,
    JSON,
    JSON_MAP,
    MAX_DEPTH,
    SCHEMA_VERSION,
    Event,
    UnknownEvent,
    bad_text,
    check_field,
    event_class,
    field_kinds,
    text_ok,
)

PENDING = b""
"""The chain value of an event an in-process tier has not chained yet (see _memory)."""

CHAIN_BYTES = 16
"""Chain values are SHA-256 truncated to 128 bits: ample against corruption and
second preimages, and half the bytes per stored event."""

# Base fields travel under one-letter keys; they sort before every field name
# we ship, and plugin fields may not use them.
BASE_KEYS = {"a": "agent", "i": "id", "w": "at"}
TYPE_KEY = "t"
VERSION_KEY = "v"
RESERVED_KEYS = frozenset({*BASE_KEYS, TYPE_KEY, VERSION_KEY})

_MISSING = object()


class _FieldSpec(NamedTuple):
    key: str
    attr: str
    kind: str
    default: Any  # _MISSING when the field is mandatory


class _ClassSpec(NamedTuple):
    type_name: str
    fields: tuple[_FieldSpec, ...]  # sorted by key, base fields included
    payload: tuple[_FieldSpec, ...]  # only the class's own fields


_SPECS: dict[type[Event], _ClassSpec] = {}


def _spec(cls: type[Event]) -> _ClassSpec:
    spec = _SPECS.get(cls)
    if spec is None:
        fields: list[_FieldSpec] = []
        payload: list[_FieldSpec] = []
        by_attr = {v: k for k, v in BASE_KEYS.items()}
        kinds = field_kinds(cls)
        for f in attrs.fields(cls):
            if f.name in ("seq", "chain", "extra"):
                continue
            if f.name in by_attr:
                kind = "str" if f.name == "id" else ("float" if f.name == "at" else "opt_str")
                fields.append(_FieldSpec(by_attr[f.name], f.name, kind, _MISSING))
                continue
            if f.name in RESERVED_KEYS:
                raise TypeError(f"{cls.__name__}.{f.name}: field name is reserved by the codec")
            factory = getattr(f.default, "factory", None)
            if factory is not None and hasattr(f.default, "takes_self"):  # an attrs.Factory
                default = factory()
            elif f.default is attrs.NOTHING:
                default = _MISSING
            else:
                default = f.default
            spec_f = _FieldSpec(f.name, f.name, kinds[f.name], default)
            fields.append(spec_f)
            payload.append(spec_f)
        fields.sort(key=lambda s: s.key)
        spec = _ClassSpec(cls.TYPE, tuple(fields), tuple(payload))
        _SPECS[cls] = spec
    return spec


def canonical(value: Any, depth: int = 0) -> Any:
    """Nested maps with sorted keys, tuples as lists: one encoding per value.

    Raises InvalidEvent (never RecursionError or TypeError) for values nested
    deeper than ``MAX_DEPTH`` or maps whose keys cannot be sorted (str and bytes mixed).
    """
    if isinstance(value, Mapping):
        if depth > MAX_DEPTH:
            raise InvalidEvent(f"a data value is nested deeper than {MAX_DEPTH} levels")
        try:
            keys = sorted(value)
        except TypeError:
            raise InvalidEvent(f"map keys {sorted(map(repr, value))[:5]} are not all strings") from None
        return {k: canonical(value[k], depth + 1) for k in keys}
    if isinstance(value, (list, tuple)):
        if depth > MAX_DEPTH:
            raise InvalidEvent(f"a data value is nested deeper than {MAX_DEPTH} levels")
        return [canonical(v, depth + 1) for v in value]
    return value


def _ext_refused(code: int, data: bytes) -> Any:
    raise InvalidEvent(f"msgpack extension type {code} is not allowed")


_packb = msgpack.Packer(use_bin_type=True, strict_types=False, autoreset=True).pack


def packb(obj: Any) -> bytes:
    out: bytes = _packb(obj)
    return out


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_ext_refused, use_list=True, timestamp=0)


def event_fields(event: Event) -> dict[str, Any]:
    """The event's fields under their encoded keys, validated, defaults left out."""
    if isinstance(event, UnknownEvent):
        tn = event.type_name
        check_field("UnknownEvent", "type_name", "str", tn)
        check_field(tn, "id", "str", event.id)
        check_field(tn, "at", "float", event.at)
        check_field(tn, "agent", "opt_str", event.agent)
        if not isinstance(event.fields, Mapping):
            raise InvalidEvent(f"{tn}: UnknownEvent.fields must be a dict, got {type(event.fields).__name__}")
        for k, v in event.fields.items():
            _check_extra(tn, k, v)
        out = dict(event.fields)
        out[TYPE_KEY] = event.type_name
        out["i"], out["w"] = event.id, event.at
        if event.agent is not None:
            out["a"] = event.agent
        return {k: out[k] for k in sorted(out)}
    spec = _spec(type(event))
    out = {}
    tn = spec.type_name
    for key, attr, kind, default in spec.fields:
        value = getattr(event, attr)
        if default is not _MISSING and (value is default or value == default) and type(value) is type(default):
            continue
        if value is None and kind == "opt_str":
            continue
        check_field(tn, attr, kind, value)
        if kind is JSON or kind is JSON_MAP:
            value = canonical(value)
        elif kind == "float" or kind == "opt_float":
            value = float(value)
        out[key] = value
    out[TYPE_KEY] = tn
    if event.extra:
        known = {f.key for f in spec.fields}
        for k, v in event.extra.items():
            if k in known or k in RESERVED_KEYS:
                raise InvalidEvent(f"{tn}: extra field {k!r} collides with a known field")
            _check_extra(tn, k, v)
            out[k] = canonical(v)
    return {k: out[k] for k in sorted(out)}


def _encode_generic(event: Event, agent: str | None) -> bytes:
    fields = event_fields(event)
    if "a" not in fields and agent is not None:
        fields["a"] = agent
        fields = {k: fields[k] for k in sorted(fields)}
    return packb(fields)


_ENCODERS: dict[type[Event], Callable[[Event, str | None], bytes]] = {}


def _check_extra(type_name: str, key: object, value: Any) -> None:
    """Fields this version does not know must still be plain data (JSON-compatible)."""
    if not isinstance(key, str):
        raise InvalidEvent(f"{type_name}: field name {key!r:.60} is not a string")
    if not text_ok(key):
        raise bad_text(key, f"{type_name}: field name {key!a:.60}")
    check_field(type_name, key, JSON, value)


def encode_event(event: Event, agent: str | None = None) -> bytes:
    """The canonical bytes of ``event``; ``agent`` stands in when the event has none.

    Raises InvalidEvent for anything that cannot be stored: a value of the wrong
    type, text UTF-8 cannot encode, an event class that is not registered.
    """
    cls = type(event)
    enc = _ENCODERS.get(cls)
    if enc is None:
        try:
            enc = _compile_encoder(_encodable(cls))
        except TypeError as exc:  # a field annotated with no stored type (see field_kinds)
            raise InvalidEvent(str(exc)) from None
        _ENCODERS[cls] = enc
    try:
        return enc(event, agent)
    except UnicodeEncodeError:  # a lone surrogate: find and name the field
        event_fields(event)  # raises InvalidEvent naming it
        if agent is not None:
            check_field(cls.TYPE, "agent", "opt_str", agent)
        raise InvalidEvent(f"{cls.TYPE} {event.id!r}: its text cannot be encoded as UTF-8") from None


def _encodable(cls: type[Event]) -> type[Event]:
    """``cls`` if it names a type of its own on the wire, else InvalidEvent saying what to do.

    A registered class is; so is an unregistered one with a ``TYPE`` of its own
    (a plugin this process has not loaded: stored under that name, read back
    intact, as UnknownEvent until the plugin registers it). Refused: the bare
    ``Event`` base class, and a subclass without a ``TYPE`` of its own or with
    another class's, which would be stored as an event of another type.
    """
    if not (isinstance(cls, type) and issubclass(cls, Event)):
        raise InvalidEvent(f"not an event: {cls.__name__} (record vs.UserSpoke(...), vs.Note(...), ...)")
    if cls is UnknownEvent or event_class(cls.TYPE) is cls:
        return cls
    if cls is Event:
        raise InvalidEvent(
            "vs.Event is the base class of events, not an event: record UserSpoke, AgentSpoke, Note, ... "
            "or an event type of your own (voicestate.plugins.register_event_type)"
        )
    own = cls.__dict__.get("TYPE")
    known = event_class(cls.TYPE)
    if isinstance(own, str) and own and known is None:
        return cls
    why = f"has no TYPE of its own (it inherits {cls.TYPE!r})" if not own else f"has the TYPE of {known!r}"
    raise InvalidEvent(
        f"{cls.__qualname__} {why}, so it would be stored as another type of event: give it its own, "
        "TYPE: ClassVar[str] = 'yourorg.Name', and register it with voicestate.plugins.register_event_type "
        "(or a register_event_types hook)"
    )


def _compile_encoder(cls: type[Event]) -> Callable[[Event, str | None], bytes]:
    """Generate a straight-line encoder for ``cls`` (the record path's hottest code).

    It builds the map in sorted key order with inline type checks; anything
    unusual (extra fields, a value of the wrong type) falls back to the generic
    path, which validates and reports precisely.
    """
    if cls is UnknownEvent or not issubclass(cls, Event):
        return _encode_generic
    spec = _spec(cls)
    lines = ["def enc(ev, agent):", "    if ev.extra: return generic(ev, agent)", "    d = {}"]
    env: dict[str, Any] = {
        "generic": _encode_generic,
        "packb": _packb,
        "canonical": canonical,
        "isfinite": math.isfinite,
    }
    env["T"] = spec.type_name
    keyed = sorted([*spec.fields, _FieldSpec(TYPE_KEY, "", "type", _MISSING)], key=lambda f: f.key)
    for n, (key, attr, kind, default) in enumerate(keyed):
        if key == TYPE_KEY:
            lines.append("    d['t'] = T")
            continue
        v = f"v{n}"
        lines.append(f"    {v} = ev.{attr}")
        fail = "return generic(ev, agent)"
        if key == "a":
            lines.append(f"    if {v} is None: {v} = agent")
            lines.append(f"    if {v} is not None:")
            lines.append(f"        if {v}.__class__ is not str: {fail}")
            lines.append(f"        d['a'] = {v}")
            continue
        skip = ""
        if default is not _MISSING:
            env[f"D{n}"] = default
            skip = f"{v} is D{n} or ({v} == D{n} and {v}.__class__ is D{n}.__class__)"
        if kind in ("str",):
            check = f"{v}.__class__ is not str"
        elif kind in ("opt_str",):
            check = f"{v}.__class__ is not str"
            skip = f"{v} is None"
        elif kind == "bool":
            check = f"{v}.__class__ is not bool"
        elif kind in ("float", "opt_float"):
            # an int (rare) goes the generic way: it checks the range before float() could overflow
            lines.append(f"    if {v}.__class__ is int: {fail}")
            check = f"{v}.__class__ is not float or not isfinite({v})"
            if kind == "opt_float":
                skip = f"{v} is None"
        elif kind in ("int", "opt_int"):
            check = f"{v}.__class__ is not int or not -9223372036854775808 <= {v} < 18446744073709551616"
            if kind == "opt_int":
                skip = f"{v} is None"
        elif kind == "turn_ref":
            check = f"{v}.__class__ is not str and ({v}.__class__ is not int or not -(2**63) <= {v} < 2**64)"
            skip = f"{v} is None"
        else:  # json, json_map: validated by the generic path, which also sorts nested maps
            lines.append(f"    if not ({skip or 'False'}):")
            lines.append("        return generic(ev, agent)")
            continue
        body = f"if {check}: {fail}"
        if skip:
            lines.append(f"    if not ({skip}):")
            lines.append(f"        {body}")
            lines.append(f"        d[{key!r}] = {v}")
        else:
            lines.append(f"    {body}")
            lines.append(f"    d[{key!r}] = {v}")
    lines.append("    return packb(d)")
    code = "\n".join(lines)
    exec(compile(code, f"<voicestate encoder {cls.TYPE}>", "exec"), env)
    fn: Callable[[Event, str | None], bytes] = env["enc"]
    return fn


Migration = Callable[[dict[str, Any]], dict[str, Any]]
_MIGRATIONS: dict[int, Migration] = {}
"""from-version -> function returning the map at from-version + 1. Run after the
chain is verified, so they never touch what is hashed."""


def decode_event(data: bytes, seq: int | None = None, chain: bytes | None = None) -> Event:
    """Decode stored bytes. Unknown types become UnknownEvent; unknown fields go to ``extra``."""
    return _decode(data, seq, chain, _DECODERS, False)


def decode_stored(data: bytes, seq: int, chain: bytes) -> Event:
    """Decode the bytes of a stored event whose chain value was verified: like
    :func:`decode_event`, but the JSON fields (tool arguments and results, slot
    values, call meta) are not walked again. They were validated when the event
    was recorded, and the hash chain shows these are the bytes recorded.
    """
    return _decode(data, seq, chain, _TRUSTED, True)


Decoder = Callable[[dict[str, Any], int | None, bytes | None], Event | None]


def _decode(data: bytes, seq: int | None, chain: bytes | None, table: dict[str, Decoder], trusted: bool) -> Event:
    try:
        raw = unpackb(data)
    except InvalidEvent:
        raise
    except Exception as exc:
        raise InvalidEvent(f"event bytes are not valid msgpack: {exc}") from None
    if raw.__class__ is dict:
        type_name = raw.get(TYPE_KEY)
        dec = table.get(type_name) if type_name.__class__ is str else None
        if dec is None and isinstance(type_name, str):
            cls = event_class(type_name)
            if cls is not None:
                dec = table[type_name] = _compile_decoder(cls, trusted)
        if dec is not None:
            ev = dec(raw, seq, chain)
            if ev is not None:
                return ev
    return event_from_map(raw, seq=seq, chain=chain)


_DECODERS: dict[str, Decoder] = {}
_TRUSTED: dict[str, Decoder] = {}


def warm_up(classes: Sequence[type[Event]]) -> None:
    """Generate the encoders and decoders of ``classes`` now, not on a call's first event
    (a receiver's first resume would otherwise pay for it)."""
    for cls in classes:
        if cls not in _ENCODERS:
            _ENCODERS[cls] = _compile_encoder(cls)
        if cls.TYPE not in _DECODERS:
            _DECODERS[cls.TYPE] = _compile_decoder(cls)
        if cls.TYPE not in _TRUSTED:
            _TRUSTED[cls.TYPE] = _compile_decoder(cls, trusted=True)


def _compile_decoder(cls: type[Event], trusted: bool = False) -> Decoder:
    """Generate a straight-line decoder for ``cls``: the resume path decodes every event.

    It handles the common case (current schema, no extra fields, every value of
    its kind) and returns None for anything else, which the generic, precise
    path then decodes or reports. ``trusted``: JSON fields of chain-verified stored
    bytes are taken as they are (their container kind is still checked).
    """
    spec = _spec(cls)
    env: dict[str, Any] = {"new": object.__new__, "cls": cls, "setattr": object.__setattr__, "EMPTY": EMPTY}
    env["check_json"] = check_field
    lines = ["def dec(d, seq, chain):", "    if 'v' in d: return None", "    n = 1", "    o = new(cls)"]
    for i, (key, attr, kind, default) in enumerate(spec.fields):
        v = f"v{i}"
        lines.append(f"    {v} = d.get({key!r}, MISSING)")
        if default is _MISSING and key != "a":
            lines.append(f"    if {v} is MISSING: return None")
            present = "    n += 1"
        else:
            env[f"D{i}"] = default
            fresh = f"type(D{i})()" if isinstance(default, (dict, list)) else f"D{i}"
            lines.append(f"    if {v} is MISSING: {v} = {fresh if key != 'a' else 'None'}")
            lines.append("    else: n += 1")
            present = ""
        if present:
            lines.append(present)
        if kind in ("str",):
            lines.append(f"    if {v}.__class__ is not str: return None")
        elif kind == "opt_str":
            lines.append(f"    if {v} is not None and {v}.__class__ is not str: return None")
        elif kind == "bool":
            lines.append(f"    if {v}.__class__ is not bool: return None")
        elif kind in ("float", "opt_float"):
            opt = f"{v} is not None and " if kind == "opt_float" else ""
            lines.append(f"    if {opt}{v}.__class__ is not float: return None")
        elif kind in ("int", "opt_int"):
            opt = f"{v} is not None and " if kind == "opt_int" else ""
            lines.append(f"    if {opt}{v}.__class__ is not int: return None")
        elif kind == "turn_ref":
            lines.append(
                f"    if {v} is not None and {v}.__class__ is not int and {v}.__class__ is not str: return None"
            )
        elif trusted:  # validated when recorded; only the container kind the fold relies on
            if kind == "json_map":
                lines.append(f"    if {v}.__class__ is not dict: return None")
        else:  # json / json_map: validated in full (bin, ext or non-finite values are refused precisely)
            lines.append(f"    check_json({cls.TYPE!r}, {attr!r}, {kind!r}, {v})")
        lines.append(f"    setattr(o, {attr!r}, {v})")
    lines += [
        "    if n != len(d): return None",
        "    setattr(o, 'seq', seq)",
        "    setattr(o, 'chain', chain)",
        "    setattr(o, 'extra', EMPTY)",
        "    return o",
    ]
    env["MISSING"] = _MISSING
    exec(compile("\n".join(lines), f"<voicestate decoder {cls.TYPE}>", "exec"), env)
    fn: Decoder = env["dec"]
    return fn


def event_from_map(raw: Any, *, seq: int | None = None, chain: bytes | None = None) -> Event:
    if not isinstance(raw, dict):
        raise InvalidEvent(f"an event must be a map, got {type(raw).__name__}")
    fields = dict(raw)
    version = fields.get(VERSION_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidEvent(f"event schema version {version!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise InvalidEvent(
            f"event schema version {version} is newer than this voicestate supports "
            f"({SCHEMA_VERSION}); upgrade voicestate"
        )
    while version < SCHEMA_VERSION:
        fields = _MIGRATIONS[version](fields)
        version += 1
    type_name = fields.pop(TYPE_KEY, None)
    if not isinstance(type_name, str) or not type_name:
        raise InvalidEvent("event has no type name")
    base: dict[str, Any] = {}
    for key, attr in BASE_KEYS.items():
        if key in fields:
            base[attr] = fields.pop(key)
    if not isinstance(base.get("id"), str):
        raise InvalidEvent(f"{type_name} event has no string id")
    if not isinstance(base.get("at"), (int, float)) or isinstance(base.get("at"), bool):
        raise InvalidEvent(f"{type_name} event has no numeric 'at'")
    if base.get("agent") is not None and not isinstance(base["agent"], str):
        raise InvalidEvent(f"{type_name}.agent must be a string")
    cls = event_class(type_name)  # plugins' types are known once the plugins are loaded
    if cls is None:
        if VERSION_KEY in raw:
            fields[VERSION_KEY] = raw[VERSION_KEY]
        for k, v in fields.items():
            _check_extra(type_name, k, v)
        return UnknownEvent(type_name=type_name, fields=fields, seq=seq, chain=chain, **base)
    kwargs: dict[str, Any] = {}
    for key, attr, kind, default in _spec(cls).payload:
        if key in fields:
            value = fields.pop(key)
            check_field(type_name, attr, kind, value)
            kwargs[attr] = value
        elif default is _MISSING:
            raise InvalidEvent(f"{type_name} event lacks its field {attr!r}")
    fields.pop(VERSION_KEY, None)
    for k, v in fields.items():
        _check_extra(type_name, k, v)
    extra = fields if fields else EMPTY
    try:
        return cls(seq=seq, chain=chain, extra=extra, **base, **kwargs)
    except (TypeError, ValueError) as exc:  # a converter or attrs refused a value
        raise InvalidEvent(f"{type_name}: {exc}") from None


# --- the hash chain -----------------------------------------------------------


def genesis(call_id: str) -> bytes:
    """The chain value before the first event: binds the chain to its call id."""
    return hashlib.sha256(b"voicestate/1\x00" + call_id.encode()).digest()[:CHAIN_BYTES]


def chain_next(previous: bytes, data: bytes) -> bytes:
    return hashlib.sha256(previous + data).digest()[:CHAIN_BYTES]


def verify_chain(previous: bytes, events: list[StoredEvent]) -> int:
    """Index of the first event whose stored chain value is wrong, or -1 if all hold."""
    head = previous
    sha = hashlib.sha256
    for i, ev in enumerate(events):
        head = sha(head + ev.data).digest()[:CHAIN_BYTES]
        if head != ev.chain:
            return i
    return -1
