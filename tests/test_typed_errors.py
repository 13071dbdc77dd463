"""Every bad input is a typed voicestate error, says what to pass instead, and changes
nothing stored: lone surrogates, integers past 64 bits, data nested without end,
map keys of mixed types, arguments of the wrong type, unregistered event classes,
the bare Event base class, a token expiry past 2106, a receiver without keys."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import attrs
import msgpack
import pytest
from conftest import memory_url

import voicestate as vs
import voicestate.plugins as vsp
from voicestate import HandoffPacket, PacketError
from voicestate.plugins import decode_event, decode_token, encode_event

KEYS = "k1:typed-errors-secret-0123456789"
SURROGATE = "\ud800"


# --- helpers --------------------------------------------------------------------------------


@contextmanager
def nothing_changes(store: vs.Store, call_id: str, session: vs.Session | None = None) -> Iterator[None]:
    """The block must change nothing stored (and nothing of the session's state)."""
    before = store.events(call_id)
    state = None if session is None else session.state
    yield
    assert store.events(call_id) == before
    if session is not None:
        assert session.state == state
        assert not session.fenced


def _session(store: vs.Store, call_id: str = "c1") -> vs.Session:
    s = store.open(call_id, agent="triage", meta={"channel": "sip"})
    s.record(vs.UserSpoke("hi"), vs.AgentSpoke("Hello, how can I help?"), vs.ToolCalled("t1", "lookup", {}))
    return s


def _refused(store: vs.Store, s: vs.Session, make: Callable[[], Any], error: type[Exception], needle: str) -> None:
    """``record`` (sync, async, queued) refuses the events with ``error`` and stores nothing."""
    calls: dict[str, Callable[[], Any]] = {
        "record": lambda: s.record(*_as_tuple(make())),
        "arecord": lambda: asyncio.run(s.arecord(*_as_tuple(make()))),
        "record_nowait": lambda: s.record_nowait(*_as_tuple(make())),
    }
    for how, call in calls.items():
        with nothing_changes(store, s.call_id, s), pytest.raises(error) as err:
            call()
        assert needle in str(err.value), (how, str(err.value))
        str(err.value).encode()  # the message itself is safe to log
    assert s.record(vs.Note("still works")) == s.state.seq  # the session carries on


def _as_tuple(x: Any) -> tuple[Any, ...]:
    return x if isinstance(x, tuple) else (x,)


def _packet_json(packet: HandoffPacket, **changes: Any) -> str:
    raw = json.loads(packet.to_json())
    raw.update(changes)
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _packet_bytes(packet: HandoffPacket, **changes: Any) -> bytes:
    raw = msgpack.unpackb(packet.to_bytes(), raw=False)
    raw.update(changes)
    return msgpack.packb(dict(sorted(raw.items(), key=lambda kv: repr(kv[0]))), use_bin_type=True)


def _malformed(store: vs.Store, call_id: str, data: str | bytes, needle: str = "") -> PacketError:
    """Decoding and resuming both refuse ``data`` as malformed, before any MAC check; nothing changes."""
    decode = HandoffPacket.from_json if isinstance(data, str) else HandoffPacket.from_bytes
    with pytest.raises(PacketError) as err:
        decode(data, KEYS)  # type: ignore[arg-type]
    assert err.value.reason == "malformed", str(err.value)
    assert needle in str(err.value), str(err.value)
    str(err.value).encode()
    with nothing_changes(store, call_id):
        with pytest.raises(PacketError) as again:
            store.resume(data, agent="billing")
        assert again.value.reason == "malformed"
    assert store.load(call_id).owner == "triage"
    return err.value


def _nest(depth: int, leaf: Any = "x", *, dicts: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"k": value} if dicts else [value]
    return value


# --- lone surrogates ------------------------------------------------------------------------------

SURROGATE_EVENTS = {
    "UserSpoke.text": lambda: vs.UserSpoke(f"hi {SURROGATE}"),
    "UserSpoke.language": lambda: vs.UserSpoke("hi", language=SURROGATE),
    "AgentSpoke.text": lambda: vs.AgentSpoke(SURROGATE),
    "Note.text": lambda: vs.Note(f"a{SURROGATE}b"),
    "Interrupted.heard": lambda: vs.Interrupted(turn=None, heard=f"Hello{SURROGATE}"),
    "Interrupted.turn": lambda: vs.Interrupted(turn=SURROGATE, heard=""),
    "ToolCalled.call_id": lambda: vs.ToolCalled(SURROGATE, "f", {}),
    "ToolCalled.name": lambda: vs.ToolCalled("t9", SURROGATE, {}),
    "ToolCalled.arguments key": lambda: vs.ToolCalled("t9", "f", {SURROGATE: 1}),
    "ToolCalled.arguments value": lambda: vs.ToolCalled("t9", "f", {"q": [1, {"deep": SURROGATE}]}),
    "ToolReturned.result": lambda: vs.ToolReturned("t1", SURROGATE),
    "ToolReturned.error": lambda: vs.ToolReturned("t1", None, error=SURROGATE),
    "ToolCancelled.reason": lambda: vs.ToolCancelled("t1", SURROGATE),
    "SlotsSet key": lambda: vs.SlotsSet({SURROGATE: "x"}),
    "SlotsSet value": lambda: vs.SlotsSet({"k": "\udfff"}),
    "SlotsSet.scope": lambda: vs.SlotsSet({"k": 1}, scope="agent:" + SURROGATE),
    "id": lambda: vs.Note("x", id=SURROGATE),
    "agent": lambda: vs.Note("x", agent=SURROGATE),
    "extra key": lambda: vs.Note("x", extra={SURROGATE: 1}),
    "extra value": lambda: vs.Note("x", extra={"x_note": SURROGATE}),
    "second of a batch": lambda: (vs.Note("fine"), vs.Note(SURROGATE)),
}


@pytest.mark.parametrize("make", SURROGATE_EVENTS.values(), ids=SURROGATE_EVENTS.keys())
def test_lone_surrogate_in_any_text_of_an_event(store: vs.Store, make: Callable[[], Any]) -> None:
    s = _session(store)
    _refused(store, s, make, vs.InvalidEvent, "lone surrogate")


@pytest.mark.parametrize(
    "make",
    [
        lambda: vs.Note(SURROGATE, agent="supervisor"),
        lambda: vs.ToolReturned("t1", {"r": SURROGATE}),
        lambda: vs.ToolCancelled("t1", SURROGATE),
        lambda: vs.CallEnded(SURROGATE),
    ],
    ids=["Note", "ToolReturned", "ToolCancelled", "CallEnded"],
)
def test_lone_surrogate_in_a_non_owner_write(store: vs.Store, make: Callable[[], vs.Event]) -> None:
    s = _session(store)
    with nothing_changes(store, "c1"), pytest.raises(vs.InvalidEvent, match="lone surrogate"):
        store.append("c1", make())
    assert s.refresh().status == "active"


def test_lone_surrogate_when_opening_ending_and_handing_off(store: vs.Store) -> None:
    with pytest.raises(vs.InvalidEvent, match=r"CallStarted\.meta"):
        store.open("c0", agent="triage", meta={"caller": SURROGATE})
    with pytest.raises(vs.CallNotFound):
        store.load("c0")  # nothing of it was stored
    s = _session(store)
    with nothing_changes(store, "c1", s):
        with pytest.raises(vs.InvalidEvent, match=r"HandedOff\.reason"):
            s.handoff(to="billing", reason=SURROGATE)
        with pytest.raises(vs.InvalidEvent, match=r"HandedOff\.summary"):
            s.handoff(to="billing", summary=SURROGATE)
        with pytest.raises(vs.InvalidEvent, match=r"CallEnded\.reason"):
            s.end(SURROGATE)
    assert s.state.pending_handoff is None
    assert s.handoff(to="billing").to_agent == "billing"


def test_encode_event_refuses_surrogates_typed() -> None:
    for make in SURROGATE_EVENTS.values():
        last = _as_tuple(make())[-1]  # (the batch's first event is fine)
        with pytest.raises(vs.InvalidEvent, match="lone surrogate"):
            encode_event(last, "triage")
    with pytest.raises(vs.InvalidEvent, match="agent"):
        encode_event(vs.Note("x"), SURROGATE)  # the agent standing in for the event's own


@pytest.mark.parametrize(
    "field", ["reason", "summary", "call_id", "to_agent", "from_agent", "tenant", "kind", "packet_id", "key_id"]
)
def test_lone_surrogate_in_a_packet_field_is_malformed(store: vs.Store, field: str) -> None:
    packet = _session(store).handoff(to="billing")
    # JSON can spell a lone surrogate with an escape; it is refused before the MAC is checked
    err = _malformed(store, "c1", _packet_json(packet, **{field: f"x{SURROGATE}"}), field)
    assert "lone surrogate" in str(err)


@pytest.mark.parametrize(
    "data", [{SURROGATE: 1}, {"a": SURROGATE}, {"a": [{"b": "\udc00"}]}], ids=["key", "value", "nested"]
)
def test_lone_surrogate_in_packet_data_is_malformed(store: vs.Store, data: dict[str, Any]) -> None:
    packet = _session(store).handoff(to="billing")
    _malformed(store, "c1", _packet_json(packet, data=data), "lone surrogate")


def test_surrogate_bytes_in_a_msgpack_packet_are_malformed(store: vs.Store) -> None:
    packet = _session(store).handoff(to="billing")
    raw = msgpack.unpackb(packet.to_bytes(), raw=False)
    raw["reason"] = SURROGATE
    data = msgpack.packb(raw, use_bin_type=True, unicode_errors="surrogatepass")  # not valid UTF-8
    _malformed(store, "c1", data, "not a msgpack packet")


# --- integers past 64 bits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: vs.SlotsSet({"n": 2**64}), "64 bits"),
        (lambda: vs.SlotsSet({"n": -(2**63) - 1}), "64 bits"),
        (lambda: vs.ToolReturned("t1", [1, {"n": 2**200}]), "64 bits"),
        (lambda: vs.ToolCalled("t9", "f", {"n": -(2**70)}), "64 bits"),
        (lambda: vs.Interrupted(turn=None, heard="", heard_ms=2**64), "heard_ms"),
        (lambda: vs.Interrupted(turn=2**64, heard=""), "turn"),
        (lambda: vs.UserSpoke("x", at=2**1030), "UserSpoke.at"),  # float(2**1030) would overflow
        (lambda: vs.UserSpoke("x", confidence=10**400), "confidence"),
        (lambda: vs.Note("x", extra={"x_n": 2**64}), "64 bits"),
    ],
    ids=["slot", "slot-negative", "result", "arguments", "heard_ms", "turn", "at", "confidence", "extra"],
)
def test_integers_past_64_bits_in_events(store: vs.Store, make: Callable[[], Any], needle: str) -> None:
    s = _session(store)
    _refused(store, s, make, vs.InvalidEvent, needle)


def test_integers_at_the_64_bit_limits_are_stored(store: vs.Store) -> None:
    s = _session(store)
    s.record(vs.SlotsSet({"big": 2**64 - 1, "small": -(2**63)}))
    assert dict(store.load("c1").slots) == {"big": 2**64 - 1, "small": -(2**63)}


@pytest.mark.parametrize(
    "changes",
    [{"seq": 2**64}, {"epoch": 2**70}, {"seq": -(2**64)}, {"data": {"n": 2**65}}, {"data": {"n": -(2**63) - 1}}],
    ids=["seq", "epoch", "seq-negative", "data", "data-negative"],
)
def test_integers_past_64_bits_in_a_json_packet(store: vs.Store, changes: dict[str, Any]) -> None:
    packet = _session(store).handoff(to="billing")
    _malformed(store, "c1", _packet_json(packet, **changes))


@pytest.mark.parametrize("changes", [{"seq": 2**64 - 1}, {"epoch": 2**63}], ids=["seq-uint64", "epoch-past-int64"])
def test_integers_past_a_storable_seq_in_a_msgpack_packet(store: vs.Store, changes: dict[str, Any]) -> None:
    packet = _session(store).handoff(to="billing")
    _malformed(store, "c1", _packet_bytes(packet, **changes), "at most")


def test_packet_version_past_64_bits(store: vs.Store) -> None:
    packet = _session(store).handoff(to="billing")
    with pytest.raises(PacketError) as err:
        HandoffPacket.from_json(_packet_json(packet, v=2**64), KEYS)
    assert err.value.reason == "unsupported_version"


# --- nesting without end ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dicts", [False, True], ids=["lists", "dicts"])
@pytest.mark.parametrize(
    "make",
    [
        lambda v: vs.SlotsSet({"deep": v}),
        lambda v: vs.ToolCalled("t9", "f", {"deep": v}),
        lambda v: vs.ToolReturned("t1", v),
        lambda v: vs.Note("x", extra={"x_deep": v}),
    ],
    ids=["slots", "arguments", "result", "extra"],
)
def test_data_nested_520_levels_is_refused(store: vs.Store, make: Callable[[Any], Any], dicts: bool) -> None:
    s = _session(store)
    _refused(store, s, lambda: make(_nest(520, dicts=dicts)), vs.InvalidEvent, "nested deeper than 64 levels")
    # also with redaction off (the codec's own check), and through the encoder directly
    with pytest.raises(vs.InvalidEvent, match="nested deeper"):
        encode_event(make(_nest(520, dicts=dicts)), "triage")


def test_nesting_limit_is_the_same_for_the_redactor_and_the_codec(store: vs.Store) -> None:
    s = _session(store)
    card = "4111 1111 1111 1111"
    # 64 levels below the field value (a map or list at depth 64 holding a string) is the deepest stored
    s.record(vs.SlotsSet({"ok": _nest(63, card)}))
    deepest = store.load("c1").slots["ok"]
    for _ in range(63):
        deepest = deepest[0]
    assert deepest == "[card ending 1111]"  # masked at the bottom too
    with nothing_changes(store, "c1", s), pytest.raises(vs.InvalidEvent, match="nested deeper than 64 levels"):
        s.record(vs.SlotsSet({"too": _nest(64, card)}))
    off = vs.open_store(memory_url("typed-off"), signing_keys=KEYS, redact=False)
    try:
        o = off.open("c1", agent="triage")
        o.record(vs.SlotsSet({"ok": _nest(63, card)}))
        with pytest.raises(vs.InvalidEvent, match="nested deeper than 64 levels"):
            o.record(vs.SlotsSet({"too": _nest(64, card)}))
    finally:
        off.close()


def test_handoff_data_nested_without_end_is_refused(store: vs.Store, plugin: Callable[[object], object]) -> None:
    class DeepData:
        @vsp.hookimpl
        def prepare_handoff(self, state: vs.CallState, packet: HandoffPacket) -> dict[str, Any]:
            return {"data": {"deep": _nest(520)}}

    plugin(DeepData())
    s = _session(store)
    with nothing_changes(store, "c1", s), pytest.raises(vs.InvalidEvent, match="nested deeper"):
        s.handoff(to="billing")
    assert s.state.pending_handoff is None


@pytest.mark.parametrize("dicts", [False, True], ids=["lists", "dicts"])
def test_packet_data_nested_520_levels_is_malformed(store: vs.Store, dicts: bool) -> None:
    packet = _session(store).handoff(to="billing")
    _malformed(store, "c1", _packet_json(packet, data={"d": _nest(520, dicts=dicts)}), "nested deeper")
    _malformed(store, "c1", _packet_bytes(packet, data={"d": _nest(520, dicts=dicts)}), "nested deeper")


def test_a_hand_built_packet_nested_without_end_fails_typed(store: vs.Store) -> None:
    packet = _session(store).handoff(to="billing")
    deep = attrs.evolve(packet, data={"d": _nest(520)})
    for call in (deep.to_json, deep.to_bytes, lambda: deep.signed(store.keys)):
        with pytest.raises(vs.InvalidEvent, match="nested deeper"):
            call()


# --- map keys of mixed types ----------------------------------------------------------------------------


def test_msgpack_packet_data_with_str_and_bytes_keys_is_malformed(store: vs.Store) -> None:
    packet = _session(store).handoff(to="billing")
    for data in ({"a": 1, b"b": 2}, {b"b": 2}, {"a": {"x": 1, b"y": 2}}):
        _malformed(store, "c1", _packet_bytes(packet, data=data), "is not a string")


def test_msgpack_packet_with_a_bytes_field_name_is_malformed(store: vs.Store) -> None:
    packet = _session(store).handoff(to="billing")
    _malformed(store, "c1", _packet_bytes(packet, **{"x": 1}), "unexpected ['x']")
    raw = msgpack.unpackb(packet.to_bytes(), raw=False)
    raw[b"admin"] = True
    raw["zzz"] = 1
    _malformed(store, "c1", msgpack.packb(raw, use_bin_type=True), "unexpected ['zzz', b'admin']")


def test_event_data_with_str_and_bytes_keys_is_refused(store: vs.Store) -> None:
    s = _session(store)
    _refused(store, s, lambda: vs.SlotsSet({"a": 1, b"b": 2}), vs.InvalidEvent, "is not a string")
    stored = msgpack.packb({"i": "e", "t": "SlotsSet", "values": {"a": 1, b"b": 2}, "w": 1.0}, use_bin_type=True)
    with pytest.raises(vs.InvalidEvent, match="is not a string"):
        decode_event(stored)


# --- arguments of the wrong type -------------------------------------------------------------------------


@pytest.mark.parametrize("scope", [None, 5, ["call"]], ids=["None", "int", "list"])
def test_slots_scope_that_is_not_a_string(store: vs.Store, scope: Any) -> None:
    s = _session(store)
    _refused(store, s, lambda: vs.SlotsSet({"k": 1}, scope=scope), vs.InvalidEvent, "use 'call'")


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: vs.ToolCalled(["t9"], "f", {}), "ToolCalled.call_id must be a string"),  # type: ignore[arg-type]
        (lambda: vs.ToolReturned(["t1"], 1), "ToolReturned.call_id must be a string"),  # type: ignore[arg-type]
        (lambda: vs.ToolCancelled({"t1": 1}, "x"), "ToolCancelled.call_id must be a string"),  # type: ignore[arg-type]
        (lambda: vs.Interrupted(turn=[2], heard=""), "a seq, an event id, an AgentSpoke or None"),  # type: ignore[arg-type]
        (lambda: vs.Interrupted(turn={"seq": 2}, heard=""), "a seq, an event id, an AgentSpoke or None"),  # type: ignore[arg-type]
        (lambda: vs.Note("x", id=["id"]), "Note.id must be a string"),  # type: ignore[arg-type]
        (lambda: vs.UserSpoke("x", final=None), "UserSpoke.final must be a bool"),  # type: ignore[arg-type]
    ],
    ids=["ToolCalled", "ToolReturned", "ToolCancelled", "turn-list", "turn-dict", "id", "final-None"],
)
def test_unhashable_ids_and_references(store: vs.Store, make: Callable[[], Any], needle: str) -> None:
    s = _session(store)
    _refused(store, s, make, vs.InvalidEvent, needle)


def test_unhashable_ids_in_non_owner_writes(store: vs.Store) -> None:
    _session(store)
    with nothing_changes(store, "c1"):
        for ev in (vs.ToolReturned(["t1"], 1), vs.Note("x", id=["n"])):  # type: ignore[arg-type]
            with pytest.raises(vs.InvalidEvent, match="must be a string"):
                store.append("c1", ev)


@pytest.mark.parametrize("ttl", ["5", float("nan"), float("inf"), -1, 0, True, [5], 10**400, 2.0**33])
def test_handoff_ttl_that_is_not_positive_seconds(store: vs.Store, ttl: Any) -> None:
    s = _session(store)
    with nothing_changes(store, "c1", s), pytest.raises(vs.InvalidEvent, match="handoff ttl") as err:
        s.handoff(to="billing", ttl=ttl)
    assert "seconds" in str(err.value) or "shorter" in str(err.value) or "hours" in str(err.value)
    assert s.state.pending_handoff is None
    assert s.handoff(to="billing", ttl=5).to_agent == "billing"
    assert s.handoff(to="billing", ttl=2.5).to_agent == "billing"


def test_handoff_kind_that_is_not_a_string(store: vs.Store) -> None:
    s = _session(store)
    with nothing_changes(store, "c1", s), pytest.raises(vs.InvalidEvent, match="use one of"):
        s.handoff(to="billing", kind=["transfer"])  # type: ignore[arg-type]


@pytest.mark.parametrize("target", [123, 1.5, None, ["c1"], {"call": "c1"}, object()])
def test_resume_with_something_that_is_not_a_target(store: vs.Store, target: Any) -> None:
    _session(store)
    with nothing_changes(store, "c1"), pytest.raises(vs.ConfigError) as err:
        store.resume(target, agent="billing")
    # a voicestate error, and still the TypeError it used to be
    assert isinstance(err.value, vs.VoiceStateError)
    assert isinstance(err.value, TypeError)
    assert "a HandoffPacket, bytes, a JSON or token string, or a call id" in str(err.value)

    async def aresume() -> None:
        await store.aresume(target, agent="billing")

    with pytest.raises(vs.ConfigError):
        asyncio.run(aresume())


@pytest.mark.parametrize("call_id", [["c1"], {"c": 1}, 7, None])
def test_unhashable_call_ids(store: vs.Store, call_id: Any) -> None:
    _session(store)
    for call in (
        lambda: store.load(call_id),
        lambda: store.events(call_id),
        lambda: store.open(call_id, agent="x"),
        lambda: store.append(call_id, vs.Note("x")),
    ):
        with pytest.raises(vs.ConfigError, match="printable characters"):
            call()


def test_invalid_argument_is_config_error_and_type_error() -> None:
    from voicestate._errors import InvalidArgument

    assert issubclass(InvalidArgument, vs.ConfigError)
    assert issubclass(InvalidArgument, vs.VoiceStateError)
    assert issubclass(InvalidArgument, TypeError)
    # the others stay what they were: ValueErrors
    for cls in (vs.InvalidEvent, vs.ConfigError, vs.PacketError):
        assert issubclass(cls, ValueError) and issubclass(cls, vs.VoiceStateError)


# --- event classes the codec does not know ---------------------------------------------------------------


@attrs.frozen
class NoTypeOfItsOwn(vs.Event):
    text: str = ""  # TYPE inherited: it would be stored as "Event"


@attrs.frozen
class SpokeSubclass(vs.UserSpoke):
    mood: str = ""  # TYPE inherited: it would be stored as a UserSpoke


@attrs.frozen
class Impostor(vs.Event):
    TYPE: ClassVar[str] = "Note"  # another class's TYPE
    text: str = ""


@pytest.mark.parametrize(
    "make",
    [
        lambda: NoTypeOfItsOwn(text="x"),
        lambda: SpokeSubclass("hi", mood="calm"),
        lambda: Impostor(text="x"),
        lambda: (vs.Note("a"), NoTypeOfItsOwn()),
    ],
    ids=["no-type", "subclass-of-a-core-type", "another-class-type", "in-a-batch"],
)
def test_event_class_that_would_be_stored_as_another_type(store: vs.Store, make: Callable[[], Any]) -> None:
    s = _session(store)
    _refused(store, s, make, vs.InvalidEvent, "register_event_type")
    with pytest.raises(vs.InvalidEvent, match="TYPE"):
        encode_event(_as_tuple(make())[-1])


def test_unregistered_note_subclass_through_append(store: vs.Store) -> None:
    @attrs.frozen
    class LateNote(vs.Note):
        pass

    _session(store)
    with nothing_changes(store, "c1"), pytest.raises(vs.InvalidEvent, match="TYPE of its own"):
        store.append("c1", LateNote("x"))


def test_a_class_refused_before_registration_is_accepted_after(store: vs.Store) -> None:
    @attrs.frozen
    class TypedErrorsLate(vs.Event):
        text: str = ""

    s = _session(store)
    with pytest.raises(vs.InvalidEvent, match="TYPE of its own"):
        s.record(TypedErrorsLate(text="x"))
    vsp.register_event_type(TypedErrorsLate)  # registered under its class name
    seq = s.record(TypedErrorsLate(text="now known"))
    stored = store.events("c1")[-1]
    assert isinstance(stored, TypedErrorsLate) and stored.text == "now known" and stored.seq == seq


def test_a_type_of_its_own_not_yet_registered_is_kept_intact(store: vs.Store) -> None:
    # a writer without the plugin loaded: stored under its own TYPE, read back intact
    @attrs.frozen
    class Escalation(vs.Event):
        TYPE: ClassVar[str] = "tests.typed_errors.Escalation"
        level: int = 1

    s = _session(store)
    s.record(Escalation(level=3))
    back = store.events("c1")[-1]
    assert isinstance(back, vs.UnknownEvent)
    assert (back.type_name, dict(back.fields)) == ("tests.typed_errors.Escalation", {"level": 3})


def test_event_class_with_a_field_of_no_stored_type(store: vs.Store) -> None:
    @attrs.frozen
    class Odd(vs.Event):
        TYPE: ClassVar[str] = "tests.typed_errors.Odd"
        tags: set[str] = attrs.field(factory=set)

    s = _session(store)
    _refused(store, s, lambda: Odd(tags={"a"}), vs.InvalidEvent, "names no stored type")


def test_something_that_is_not_an_event() -> None:
    with pytest.raises(vs.InvalidEvent, match="not an event"):
        encode_event(123)  # type: ignore[arg-type]


def test_the_bare_event_base_class_is_refused(store: vs.Store) -> None:
    s = _session(store)
    _refused(store, s, vs.Event, vs.InvalidEvent, "base class")
    with nothing_changes(store, "c1"), pytest.raises(vs.InvalidEvent):
        store.append("c1", vs.Event())
    with pytest.raises(vs.InvalidEvent, match="base class"):
        encode_event(vs.Event())


# --- tokens ----------------------------------------------------------------------------------------------


def test_to_token_with_an_expiry_past_2106(store: vs.Store) -> None:
    packet = _session(store).handoff(to="billing")
    for expires, reason in ((2.0**32, "too_large"), (1e300, "too_large"), (-5.0, "malformed")):
        with pytest.raises(PacketError) as err:
            attrs.evolve(packet, expires_at=expires).to_token()
        assert err.value.reason == reason
        if reason == "too_large":
            assert "shorter ttl" in str(err.value) and "JSON" in str(err.value)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(PacketError, match="malformed"):
            attrs.evolve(packet, expires_at=bad).to_token()
    # the last second a token can carry still works
    assert attrs.evolve(packet, expires_at=float(2**32 - 1)).to_token().startswith("vs1.")


def test_to_token_with_a_call_id_that_is_not_text(store: vs.Store) -> None:
    packet = _session(store).handoff(to="billing")
    with pytest.raises(PacketError) as err:
        attrs.evolve(packet, call_id=SURROGATE).to_token()
    assert err.value.reason == "malformed"
    with pytest.raises(PacketError, match="packet id"):
        attrs.evolve(packet, packet_id=None).to_token()


# --- a receiver without keys ------------------------------------------------------------------------------


def test_a_receiver_without_keys_says_how_to_configure_them(store: vs.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICESTATE_SIGNING_KEYS", raising=False)
    packet = _session(store).handoff(to="billing")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        receiver = vs.open_store(store.tiers.all[0].url)  # the same calls, no keys
    try:
        assert receiver.keys.ephemeral and not receiver.keys.configured
        for decode in (
            lambda: decode_token(packet.to_token(), receiver.keys),
            lambda: HandoffPacket.from_json(packet.to_json(), receiver.keys),
            lambda: HandoffPacket.from_bytes(packet.to_bytes(), receiver.keys),
            lambda: receiver.resume(packet.to_token(), agent="billing"),
        ):
            with pytest.raises(PacketError) as err:
                decode()
            text = str(err.value)
            assert err.value.reason == "unknown_key"
            assert "no signing keys configured" in text, text
            assert "'k1'" in text
            assert 'open_store(signing_keys="k1:<secret>")' in text
            assert "VOICESTATE_SIGNING_KEYS" in text
        assert receiver.load("c1").owner == "triage"
    finally:
        receiver.close()
    # a receiver with keys, just not this one, is told which it has
    other = vsp.parse_keys("k9:another-secret-0123456789")
    with pytest.raises(PacketError) as err:
        decode_token(packet.to_token(), other)
    assert "does not have (it knows ['k9'])" in str(err.value)
    assert "no signing keys configured" not in str(err.value)
    # an empty ring (built by hand) says the same as an ephemeral one
    empty = vsp.KeyRing({}, "")
    with pytest.raises(PacketError, match="no signing keys configured"):
        decode_token(packet.to_token(), empty)
