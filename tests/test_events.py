"""The event codec: canonical msgpack, unknown types and fields kept intact, validation, ids."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import voicestate as vs
import voicestate.plugins as vsp
from voicestate import Event, UnknownEvent
from voicestate.backend import StoredEvent, chain_next
from voicestate.plugins import (
    decode_event,
    encode_event,
    event_from_dict,
    event_to_dict,
    event_types,
    field_kinds,
    make_converter,
)


def packb(obj: object) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


KEYS = "t1:test-events-secret-0123456789"

# --- strategies ------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
NAME = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
JSON_LEAF = st.none() | st.booleans() | INT64 | FLOATS | TEXT
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
JSON_MAP = st.dictionaries(TEXT, JSON, max_size=5)

KIND_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "str": TEXT,
    "opt_str": st.none() | TEXT,
    "bool": st.booleans(),
    "float": FLOATS | st.integers(-(2**31), 2**31),
    "opt_float": st.none() | FLOATS,
    "int": INT64,
    "opt_int": st.none() | INT64,
    "json": JSON,
    "json_map": JSON_MAP,
    "turn_ref": st.none() | st.integers(min_value=1, max_value=2**63 - 1) | NAME,
}

BASE = frozenset({"id", "at", "agent", "seq", "chain", "extra"})
_OMIT = object()
CONVERTER = make_converter()


def _payload_fields(cls: type[Event]) -> list[attrs.Attribute[Any]]:
    return [f for f in attrs.fields(cls) if f.name not in BASE]


@st.composite
def events_of(draw: st.DrawFn, type_name: str, with_extra: bool = True) -> Event:
    """A random valid instance of the registered event type ``type_name``."""
    cls = event_types()[type_name]
    kwargs: dict[str, Any] = {
        "id": draw(NAME),
        "at": draw(FLOATS),
        "agent": draw(st.none() | NAME),
    }
    for f in _payload_fields(cls):
        values = KIND_STRATEGIES[field_kinds(cls)[f.name]]
        if f.default is not attrs.NOTHING:  # optional: sometimes left at its default
            values = st.just(_OMIT) | values
        value = draw(values)
        if value is not _OMIT:
            kwargs[f.name] = value
    if with_extra and draw(st.booleans()):
        kwargs["extra"] = draw(st.dictionaries(TEXT.map(lambda s: "x_" + s), JSON, min_size=1, max_size=3))
    return cls(**kwargs)


any_event = st.sampled_from(sorted(event_types())).flatmap(events_of)


def reorder(value: Any) -> Any:
    """The same value with every dict's insertion order reversed."""
    if isinstance(value, Mapping):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(v) for v in value]
    return value


def raw_event(**fields: Any) -> bytes:
    """msgpack of a sorted event map, as a writer of any version would store it."""
    return packb({k: fields[k] for k in sorted(fields)})


# --- 1. round trip and canonical form --------------------------------------------------


def test_every_core_type_is_registered() -> None:
    core = {
        "CallStarted",
        "UserSpoke",
        "AgentSpoke",
        "Interrupted",
        "ToolCalled",
        "ToolReturned",
        "ToolCancelled",
        "SlotsSet",
        "Note",
        "HandedOff",
        "HandoffCancelled",
        "OwnerChanged",
        "CallEnded",
    }
    assert core <= set(event_types())


@pytest.mark.parametrize("type_name", sorted(event_types()))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_and_canonical(type_name: str, data: st.DataObject) -> None:
    ev = data.draw(events_of(type_name))
    b = encode_event(ev)
    back = decode_event(b)
    assert type(back) is type(ev)
    assert back == ev
    assert dict(back.extra) == dict(ev.extra)
    # canonical: decoding and encoding again gives the very same bytes
    assert encode_event(back) == b
    # the same dict items in another insertion order encode identically
    json_fields = {
        f.name: reorder(getattr(ev, f.name))
        for f in _payload_fields(type(ev))
        if field_kinds(type(ev))[f.name] in ("json", "json_map")
    }
    shuffled = attrs.evolve(ev, extra=reorder(dict(ev.extra)), **json_fields)
    assert encode_event(shuffled) == b
    # the agent argument stands in only when the event has none
    stamped = decode_event(encode_event(ev, "stand-in"))
    assert stamped.agent == (ev.agent if ev.agent is not None else "stand-in")


@settings(max_examples=30, deadline=None)
@given(a=JSON_MAP, b=JSON_MAP)
def test_dicts_in_any_order_encode_alike(a: dict[str, Any], b: dict[str, Any]) -> None:
    merged = {**a, **b}
    one = vs.SlotsSet(merged, id="e", at=1.0)
    two = vs.SlotsSet(reorder(merged), id="e", at=1.0)
    assert encode_event(one) == encode_event(two)
    # a tuple is the same JSON array as a list
    three = vs.ToolCalled("c", "f", {"xs": (1, 2, (3,))}, id="e", at=1.0)
    four = vs.ToolCalled("c", "f", {"xs": [1, 2, [3]]}, id="e", at=1.0)
    assert encode_event(three) == encode_event(four)


# --- 2. unknown types and unknown fields survive -------------------------------------------

UNKNOWN = {
    "a": "acme-plugin",
    "i": "acme-1",
    "t": "acme.Escalated",
    "w": 1700000000.25,
    "level": 3,
    "queue": {"name": "tier2", "tags": ["vip", "fr"], "weights": {"a": 1.5, "b": None}},
}
KNOWN_WITH_EXTRA = {
    "a": "newer-writer",
    "i": "newer-1",
    "t": "UserSpoke",
    "text": "from a newer version",
    "w": 1700000001.5,
    "x_future": {"emotion": "annoyed", "scores": [0.25, 0.75]},
}


def test_unknown_type_is_kept_intact() -> None:
    data = raw_event(**UNKNOWN)
    ev = decode_event(data, seq=7, chain=b"\x01" * 16)
    assert isinstance(ev, UnknownEvent)
    assert ev.type_name == "acme.Escalated"
    assert (ev.id, ev.at, ev.agent, ev.seq) == ("acme-1", 1700000000.25, "acme-plugin", 7)
    assert dict(ev.fields) == {"level": 3, "queue": UNKNOWN["queue"]}
    assert encode_event(ev) == data
    assert encode_event(ev, "someone-else") == data  # its own writer stays


def test_unknown_field_on_a_known_type_is_kept_intact() -> None:
    data = raw_event(**KNOWN_WITH_EXTRA)
    ev = decode_event(data)
    assert isinstance(ev, vs.UserSpoke)
    assert (ev.text, ev.final, ev.agent) == ("from a newer version", True, "newer-writer")
    assert dict(ev.extra) == {"x_future": KNOWN_WITH_EXTRA["x_future"]}
    assert encode_event(ev) == data
    # an evolved copy keeps the field too
    assert dict(attrs.evolve(ev, text="changed").extra) == dict(ev.extra)


@settings(max_examples=50, deadline=None)
@given(
    type_name=st.one_of(NAME.map(lambda s: "acme." + s), st.sampled_from(["UserSpoke", "Note", "AgentSpoke"])),
    fields=st.dictionaries(TEXT.map(lambda s: "x_" + s), JSON, max_size=4),
    at=FLOATS,
)
def test_unknown_fields_survive_hypothesis(type_name: str, fields: dict[str, Any], at: float) -> None:
    raw: dict[str, Any] = {"i": "ev", "t": type_name, "w": at, **fields}
    if type_name in ("UserSpoke", "Note", "AgentSpoke"):
        raw["text"] = "t"
    data = packb(_canon(raw))
    ev = decode_event(data)
    assert isinstance(ev, UnknownEvent) == type_name.startswith("acme.")
    assert encode_event(ev) == data
    assert decode_event(encode_event(ev)) == ev


def _canon(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _canon(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_canon(v) for v in value]
    return value


def test_extra_may_not_shadow_a_known_field_even_at_its_default() -> None:
    # UserSpoke.final defaults to True and is left out of the encoding; an extra
    # "final" must not slip into its place and change the event on decoding.
    ev = vs.UserSpoke("hi", extra={"final": False})
    with pytest.raises(vs.InvalidEvent, match="final"):
        encode_event(ev)
    with pytest.raises(vs.InvalidEvent, match="scope"):
        encode_event(vs.SlotsSet({"k": 1}, extra={"scope": "agent:x"}))


def _tiered_store(tmp_path: Path) -> vs.Store:
    return vs.open_store(
        f"memory://events-{uuid.uuid4().hex}",
        f"sqlite:///{tmp_path / 'decide.db'}",
        signing_keys=KEYS,
    )


def _append_raw(store: vs.Store, call_id: str, items: list[tuple[str, bytes]]) -> list[int]:
    """Append pre-encoded bytes to the deciding tier, chained as a writer would."""
    backend = store.tiers.deciding.backend
    meta = backend.get_meta(call_id)
    assert meta is not None
    seq, head, out = meta.seq, meta.head, []
    stored = []
    for event_id, data in items:
        seq += 1
        head = chain_next(head, data)
        stored.append(StoredEvent(seq, event_id, data, head, meta.epoch, False))
        out.append(seq)
    assert backend.append(call_id, stored, meta.seq, None).status == "ok"
    return out


def _all_bytes(store: vs.Store, call_id: str) -> dict[str, list[bytes]]:
    return {tier.url: [e.data for e in tier.backend.load(call_id)] for tier in store.tiers.all}


@pytest.fixture
def tiered(tmp_path: Path) -> Iterator[vs.Store]:
    store = _tiered_store(tmp_path)
    try:
        yield store
    finally:
        store.close()


def test_unknown_events_survive_a_resume_and_more_writes(tiered: vs.Store) -> None:
    store, cid = tiered, "call-unknown"
    s = store.open(cid, agent="triage")
    s.record(vs.UserSpoke("hello"))
    turn = s.record(vs.AgentSpoke("hi, how can I help you today"))
    s.record(vs.SlotsSet({"intent": "billing"}))
    unknown, extra = raw_event(**UNKNOWN), raw_event(**KNOWN_WITH_EXTRA)
    u_seq, k_seq = _append_raw(store, cid, [("acme-1", unknown), ("newer-1", extra)])

    w = store.resume(cid, agent="billing", takeover=True, force=True)
    w.record(vs.Interrupted(turn=turn, heard="hi, how", heard_ms=400))
    w.record(vs.AgentSpoke("billing here"), vs.Note("after the plugin event"))
    w.record(vs.SlotsSet({"verified": True}))

    # every tier holds the two events byte for byte, at their seqs
    for url, datas in _all_bytes(store, cid).items():
        assert datas[u_seq - 1] == unknown, url
        assert datas[k_seq - 1] == extra, url
    events = store.events(cid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    ev_u, ev_k = events[u_seq - 1], events[k_seq - 1]
    assert isinstance(ev_u, UnknownEvent) and ev_u.type_name == "acme.Escalated"
    assert dict(ev_u.fields) == {"level": 3, "queue": UNKNOWN["queue"]}
    assert encode_event(ev_u) == unknown
    assert isinstance(ev_k, vs.UserSpoke) and dict(ev_k.extra) == {"x_future": KNOWN_WITH_EXTRA["x_future"]}
    assert encode_event(ev_k) == extra

    # the fold ignores the unknown event; the known one with an extra field is a turn
    for st_ in (w.state, store.load(cid)):
        assert [t.text for t in st_.turns] == [
            "hello",
            "hi, how can I help you today",
            "from a newer version",
            "billing here",
        ]
        assert st_.turns[1].interrupted and st_.turns[1].heard == "hi, how"
        assert dict(st_.slots) == {"intent": "billing", "verified": True}
        assert [n.text for n in st_.notes] == ["after the plugin event"]
        assert (st_.owner, st_.epoch, st_.seq) == ("billing", 2, len(events))
        assert dict(st_.tools) == {} and dict(st_.private_slots) == {}

    # a handoff with the log inline reuses the stored bytes, unknown event included
    packet = w.handoff(to="sales", inline=True)
    assert packet.events is not None
    assert packet.events[u_seq - 1] == unknown and packet.events[k_seq - 1] == extra
    again = vs.HandoffPacket.from_bytes(packet.to_bytes(), KEYS)
    assert again.events is not None and again.events[u_seq - 1] == unknown
    sales = store.resume(packet, agent="sales")
    assert [t.text for t in sales.state.turns][-1] == "billing here"
    for url, datas in _all_bytes(store, cid).items():
        assert datas[u_seq - 1] == unknown, url


# --- 3. validation ----------------------------------------------------------------------


def test_future_schema_version_is_refused() -> None:
    data = raw_event(i="e", t="UserSpoke", text="hi", v=2, w=1.0)
    with pytest.raises(vs.InvalidEvent, match="upgrade"):
        decode_event(data)
    with pytest.raises(vs.InvalidEvent, match="upgrade"):
        decode_event(raw_event(i="e", t="acme.Escalated", v=99, w=1.0))


@pytest.mark.parametrize("version", [0, -1, "2", True, 1.5, None])
def test_bad_schema_version_is_refused(version: Any) -> None:
    with pytest.raises(vs.InvalidEvent):
        decode_event(raw_event(i="e", t="UserSpoke", text="hi", v=version, w=1.0))


def test_current_schema_version_is_accepted() -> None:
    ev = decode_event(raw_event(i="e", t="UserSpoke", text="hi", v=vsp.SCHEMA_VERSION, w=1.0))
    assert ev == vs.UserSpoke("hi", id="e", at=1.0)


@pytest.mark.parametrize(
    ("type_name", "fields", "field"),
    [
        ("UserSpoke", {"text": 5}, "text"),
        ("UserSpoke", {"text": "hi", "final": "yes"}, "final"),
        ("UserSpoke", {"text": "hi", "confidence": "high"}, "confidence"),
        ("Interrupted", {"heard_ms": 1.5}, "heard_ms"),
        ("Interrupted", {"turn": 1.5}, "turn"),
        ("CallStarted", {"meta": [1]}, "meta"),
        ("ToolCalled", {"call_id": "c", "name": "f", "arguments": "x"}, "arguments"),
        ("SlotsSet", {"values": None}, "values"),
        ("OwnerChanged", {"owner": "a", "epoch": True}, "epoch"),
        ("HandedOff", {"to_agent": "b", "expires_at": "soon"}, "expires_at"),
        ("UserSpoke", {}, "text"),  # a mandatory field is missing
    ],
)
def test_wrong_field_types_are_named(type_name: str, fields: dict[str, Any], field: str) -> None:
    with pytest.raises(vs.InvalidEvent, match=field):
        decode_event(raw_event(i="e", t=type_name, w=1.0, **fields))


@pytest.mark.parametrize(
    "raw",
    [
        {"t": "UserSpoke", "text": "hi", "w": 1.0},  # no id
        {"i": 5, "t": "UserSpoke", "text": "hi", "w": 1.0},
        {"i": "e", "t": "UserSpoke", "text": "hi"},  # no at
        {"i": "e", "t": "UserSpoke", "text": "hi", "w": "now"},
        {"i": "e", "t": "UserSpoke", "text": "hi", "w": True},
        {"a": 7, "i": "e", "t": "UserSpoke", "text": "hi", "w": 1.0},
        {"i": "e", "text": "hi", "w": 1.0},  # no type
        {"i": "e", "t": "", "w": 1.0},
        {"i": "e", "t": 3, "w": 1.0},
    ],
)
def test_bad_base_fields(raw: dict[str, Any]) -> None:
    with pytest.raises(vs.InvalidEvent):
        decode_event(raw_event(**raw))


@pytest.mark.parametrize(
    ("event", "field"),
    [
        pytest.param(lambda: vs.UserSpoke(5), "text", id="text-int"),  # type: ignore[arg-type]
        pytest.param(lambda: vs.UserSpoke("x", final="yes"), "final", id="final-str"),  # type: ignore[arg-type]
        pytest.param(lambda: vs.Interrupted(turn=1, heard_ms=1.5), "heard_ms", id="heard_ms-float"),  # type: ignore[arg-type]
        pytest.param(lambda: vs.CallStarted(meta=[1]), "meta", id="meta-list"),  # type: ignore[arg-type]
        pytest.param(lambda: vs.Interrupted(turn=1, heard_ms=2**70), "heard_ms", id="heard_ms-too-big"),
        pytest.param(lambda: vs.Interrupted(turn=2**70), "turn", id="turn-too-big"),
        pytest.param(lambda: vs.OwnerChanged(owner="a", epoch=-(2**64)), "epoch", id="epoch-too-small"),
    ],
)
def test_encode_refuses_wrong_field_types(event: Any, field: str) -> None:
    with pytest.raises(vs.InvalidEvent, match=field):
        encode_event(event())


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: vs.UserSpoke("x", confidence=math.nan), id="confidence-nan"),
        pytest.param(lambda: vs.UserSpoke("x", confidence=math.inf), id="confidence-inf"),
        pytest.param(lambda: vs.UserSpoke("x", at=math.nan), id="at-nan"),
        pytest.param(lambda: vs.UserSpoke("x", at=-math.inf), id="at-neg-inf"),
        pytest.param(lambda: vs.HandedOff(to_agent="b", expires_at=math.inf), id="expires_at-inf"),
        pytest.param(lambda: vs.SlotsSet({"k": math.nan}), id="slot-nan"),
        pytest.param(lambda: vs.SlotsSet({"k": [1.0, {"deep": -math.inf}]}), id="slot-nested-inf"),
        pytest.param(lambda: vs.ToolReturned("c", math.inf), id="result-inf"),
        pytest.param(lambda: vs.ToolCalled("c", "f", {"x": math.nan}), id="arguments-nan"),
        pytest.param(lambda: vs.CallStarted(meta={"x": math.inf}), id="meta-inf"),
        pytest.param(lambda: vs.UserSpoke("x", extra={"x_f": math.nan}), id="extra-nan"),
        pytest.param(lambda: UnknownEvent(type_name="acme.X", fields={"f": math.inf}), id="unknown-fields-inf"),
    ],
)
def test_non_finite_floats_are_refused_at_encode(make: Any) -> None:
    with pytest.raises(vs.InvalidEvent):
        encode_event(make())


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: vs.SlotsSet({1: "x"}), id="int-key"),
        pytest.param(lambda: vs.SlotsSet({"k": {2: "x"}}), id="nested-int-key"),
        pytest.param(lambda: vs.SlotsSet({"k": [{(1, 2): "x"}]}), id="tuple-key-in-list"),
        pytest.param(lambda: vs.ToolCalled("c", "f", {None: 1}), id="none-key"),
        pytest.param(lambda: vs.ToolReturned("c", {b"k": 1}), id="bytes-key"),
        pytest.param(lambda: vs.CallStarted(meta={1.5: "x"}), id="float-key"),
        pytest.param(lambda: vs.UserSpoke("x", extra={"x_k": {1: 2}}), id="extra-int-key"),
    ],
)
def test_non_string_keys_are_refused_at_encode(make: Any) -> None:
    with pytest.raises(vs.InvalidEvent):
        encode_event(make())


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: vs.SlotsSet({"k": object()}), id="object"),
        pytest.param(lambda: vs.SlotsSet({"k": {1, 2}}), id="set"),
        pytest.param(lambda: vs.ToolReturned("c", b"raw bytes"), id="bytes"),
        pytest.param(lambda: vs.SlotsSet({"k": msgpack.ExtType(1, b"x")}), id="ext-type"),
        pytest.param(lambda: vs.SlotsSet({"k": 2**64}), id="int-too-big"),
        pytest.param(lambda: vs.SlotsSet({"k": -(2**63) - 1}), id="int-too-small"),
    ],
)
def test_non_json_values_are_refused_at_encode(make: Any) -> None:
    with pytest.raises(vs.InvalidEvent):
        encode_event(make())


def test_deep_nesting_is_refused() -> None:
    value: Any = "leaf"
    for _ in range(100):
        value = [value]
    with pytest.raises(vs.InvalidEvent, match="deeper"):
        encode_event(vs.SlotsSet({"k": value}))


@pytest.mark.parametrize("ext", [msgpack.ExtType(5, b"xx"), msgpack.Timestamp(1, 0)], ids=["ext5", "timestamp"])
@pytest.mark.parametrize("where", ["known field", "extra field", "unknown type"])
def test_msgpack_extension_types_are_refused(ext: Any, where: str) -> None:
    # a Timestamp travels as msgpack's extension type -1
    if where == "known field":
        raw = {"i": "e", "t": "SlotsSet", "values": {"k": ext}, "w": 1.0}
    elif where == "extra field":
        raw = {"i": "e", "t": "UserSpoke", "text": "hi", "w": 1.0, "x_future": [ext]}
    else:
        raw = {"i": "e", "t": "acme.Escalated", "w": 1.0, "payload": {"k": ext}}
    data = packb(raw)
    with pytest.raises(vs.InvalidEvent):
        decode_event(data)


_VALID = raw_event(i="e", t="UserSpoke", text="hello", w=1.0)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        b"\x92\x01\x02",  # an array, not a map
        b"\xa5hello",  # a string
        _VALID[:-3],  # truncated
        _VALID + b"\x00",  # trailing bytes
        b"\x81\x01\x02",  # an int map key
        b"\x81\xa1t" + b"\x91" * 5000 + b"\xc0",  # nested far too deep
        b"\xdf\xff\xff\xff\xff",  # a map claiming 4 billion entries
        b"\x00" * 64,
    ],
)
def test_garbage_bytes_raise_invalid_event(data: bytes) -> None:
    with pytest.raises(vs.InvalidEvent):
        decode_event(data)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=64)
    | st.builds(lambda b, i: _VALID[:i] + b + _VALID[i:], st.binary(max_size=4), st.integers(0, len(_VALID)))
)
def test_random_bytes_never_raise_anything_but_invalid_event(data: bytes) -> None:
    try:
        ev = decode_event(data)
    except vs.InvalidEvent:
        return
    assert isinstance(ev, Event)


def _future_call(store: vs.Store, cid: str) -> tuple[vs.Session, list[bytes]]:
    s = store.open(cid, agent="triage")
    s.record(vs.UserSpoke("hello"), vs.AgentSpoke("hi"))
    future = raw_event(a="next-gen", i="future-1", t="UserSpoke", text="from the future", v=2, w=2.0)
    _append_raw(store, cid, [("future-1", future)])
    before = [e.data for e in store.tiers.deciding.backend.load(cid)]
    assert before[-1] == future
    return s, before


def test_future_version_in_a_stored_call_fails_typed_and_touches_nothing(tiered: vs.Store) -> None:
    store, cid = tiered, "call-future"
    s, before = _future_call(store, cid)
    meta = store.tiers.deciding.backend.get_meta(cid)

    with pytest.raises(vs.VoiceStateError, match="upgrade"):
        store.load(cid)
    with pytest.raises(vs.VoiceStateError, match="upgrade"):
        store.events(cid)
    with pytest.raises(vs.VoiceStateError, match="upgrade"):
        store.resume(cid, agent="recovery", takeover=True, force=True)
    with pytest.raises(vs.VoiceStateError):
        s.record(vs.Note("the owner, unaware"))  # it must read the new event to append
    with pytest.raises(vs.VoiceStateError):
        s.refresh()

    assert store.tiers.deciding.backend.get_meta(cid) == meta
    assert [e.data for e in store.tiers.deciding.backend.load(cid)] == before
    for url, datas in _all_bytes(store, cid).items():
        assert datas == before[: len(datas)], url


def test_future_version_async_load_fails_typed(tiered: vs.Store) -> None:
    import asyncio

    store, cid = tiered, "call-future-async"
    _s, before = _future_call(store, cid)
    with pytest.raises(vs.VoiceStateError, match="upgrade"):
        asyncio.run(store.aload(cid))
    assert [e.data for e in store.tiers.deciding.backend.load(cid)] == before


# --- 4. dicts and the converter -------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(ev=any_event, seq=st.none() | st.integers(1, 10**6), chain=st.none() | st.binary(min_size=16, max_size=16))
def test_event_dict_round_trip(ev: Event, seq: int | None, chain: bytes | None) -> None:
    stored = decode_event(encode_event(ev), seq=seq, chain=chain)
    for e in (ev, stored):
        d = event_to_dict(e)
        assert d["type"] == e.TYPE
        back = event_from_dict(d)
        assert type(back) is type(e)
        assert back == e
        assert (back.seq, back.chain) == (e.seq, e.chain)
        assert dict(back.extra) == dict(e.extra)
        assert encode_event(back) == encode_event(e)
        # the dict is plain JSON
        via_json = event_from_dict(json.loads(json.dumps(d)))
        assert via_json == e and encode_event(via_json) == encode_event(e)


def test_event_dict_round_trip_unknown_type() -> None:
    ev = decode_event(raw_event(**UNKNOWN), seq=3, chain=b"\x02" * 16)
    d = event_to_dict(ev)
    assert d["type"] == "acme.Escalated"
    back = event_from_dict(d)
    assert isinstance(back, UnknownEvent)
    assert back == ev and (back.seq, back.chain) == (3, b"\x02" * 16)
    assert encode_event(back) == raw_event(**UNKNOWN)


def test_event_dict_readable_and_validated() -> None:
    d = event_to_dict(vs.UserSpoke("hi", id="e1", at=2.0, agent="a"))
    assert d["type"] == "UserSpoke"
    assert (d["text"], d["final"], d["id"], d["at"], d["agent"]) == ("hi", True, "e1", 2.0, "a")
    with pytest.raises(vs.InvalidEvent, match="text"):
        event_from_dict({**d, "text": 5})
    with pytest.raises(vs.InvalidEvent):
        event_from_dict({"text": "no type"})


@settings(max_examples=40, deadline=None)
@given(evs=st.lists(any_event, max_size=3))
def test_converter_round_trip(evs: list[Event]) -> None:
    conv = CONVERTER
    for ev in evs:
        plain = conv.unstructure(ev)
        assert plain == event_to_dict(ev)
        assert conv.structure(plain, Event) == ev
        assert conv.structure(plain, type(ev)) == ev
        assert conv.structure(json.loads(json.dumps(plain)), Event) == ev
    plain_list = conv.unstructure(evs)
    assert conv.structure(json.loads(json.dumps(plain_list)), list[Event]) == evs


def test_converter_keeps_seq_chain_and_unknown_events() -> None:
    conv = make_converter()
    ev = decode_event(raw_event(**KNOWN_WITH_EXTRA), seq=9, chain=b"\x03" * 16)
    back = conv.structure(json.loads(json.dumps(conv.unstructure(ev))), Event)
    assert back == ev and (back.seq, back.chain) == (9, b"\x03" * 16)
    assert dict(back.extra) == dict(ev.extra)
    unknown = decode_event(raw_event(**UNKNOWN))
    again = conv.structure(conv.unstructure(unknown), Event)
    assert isinstance(again, UnknownEvent) and encode_event(again) == raw_event(**UNKNOWN)


# --- 5. ids ---------------------------------------------------------------------


def test_ids_are_unique() -> None:
    ids = {vs.UserSpoke("x").id for _ in range(10_000)}
    assert len(ids) == 10_000
    mixed = [cls(**kw).id for _ in range(500) for cls, kw in _few_kinds()]
    assert len(set(mixed)) == len(mixed)
    assert not ids & set(mixed)


def _few_kinds() -> list[tuple[type[Event], dict[str, Any]]]:
    return [
        (vs.AgentSpoke, {"text": "a"}),
        (vs.Note, {"text": "n"}),
        (vs.ToolCalled, {"call_id": "c", "name": "f"}),
        (vs.SlotsSet, {"values": {}}),
    ]


def test_forked_child_makes_different_ids() -> None:
    _ = vs.Note("warm").id  # the counter has moved on in the parent
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only os-level calls and a hard exit
        try:
            os.close(read_fd)
            payload = "\n".join(vs.Note("child").id for _ in range(1_000)).encode()
            with os.fdopen(write_fd, "wb") as out:
                out.write(payload)
        finally:
            os._exit(0)
    os.close(write_fd)
    parent_ids = {vs.Note("parent").id for _ in range(1_000)}
    with os.fdopen(read_fd, "rb") as inp:
        child_ids = set(inp.read().decode().split("\n"))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(child_ids) == 1_000
    assert child_ids.isdisjoint(parent_ids)
