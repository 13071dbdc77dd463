"""What redaction covers (docs/concepts.md, "What redaction covers"), field by field:
card numbers are masked in every string value and every mapping key of an event's
payload, whatever the event's type (core, a plugin's, one this reader does not
know) and in its unknown fields; with space, dash or dot separators; and in
``Interrupted.heard`` when the caller heard only part of a number masked in the
turn the barge-in cut. Every tier, the SQLite WAL, the hash chain, the packet and
the rendered context see only the redacted event. Identifiers are not masked."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
from conftest import memory_url

import voicestate as vs
import voicestate.plugins as vsp
from voicestate.backend import genesis, verify_chain

KEYS = "r1:redaction-scope-secret-0123456789"
CARD = "4111 1111 1111 1111"
M = "[card ending 1111]"
SEPARATED = [
    ("4111 1111 1111 1111", "1111"),
    ("4111-1111-1111-1111", "1111"),
    ("4111.1111.1111.1111", "1111"),
    ("5500 0000.0000-0004", "0004"),  # mixed
    ("4111  1111  1111  1111", "1111"),  # doubled spaces, as speech-to-text writes pauses
    ("4111111111111111", "1111"),
    ("3782.822463.10005", "0005"),  # Amex grouping 4-6-5
]


def needles(card: str) -> list[bytes]:
    """The card's digits as they might be stored: as given, bare, or in fours with any separator."""
    digits = "".join(ch for ch in card if ch.isdigit())
    fours = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    forms = {card, digits, *(sep.join(fours) for sep in (" ", "-", "."))}
    return [f.encode() for f in forms]


def stored_bytes(store: vs.Store, call_id: str) -> bytes:
    return b"".join(e.data for tier in store.tiers.all for e in tier.backend.load(call_id))


def assert_nowhere(store: vs.Store, call_id: str, card: str = CARD) -> None:
    data = stored_bytes(store, call_id)
    assert not any(n in data for n in needles(card)), [n for n in needles(card) if n in data]


@pytest.fixture
def store() -> Iterator[vs.Store]:
    s = vs.open_store(memory_url("scope"), signing_keys=KEYS)
    try:
        yield s
    finally:
        s.close()


def _last(store: vs.Store, call_id: str = "c1") -> Any:
    return store.events(call_id)[-1]


# --- every string value and every mapping key of every core payload -----------------------------

CORE = {
    "UserSpoke.text": (lambda c: vs.UserSpoke(f"my card is {c}"), lambda e: e.text, f"my card is {M}"),
    "UserSpoke.language": (lambda c: vs.UserSpoke("hi", language=c), lambda e: e.language, M),
    "AgentSpoke.text": (lambda c: vs.AgentSpoke(f"I have {c}"), lambda e: e.text, f"I have {M}"),
    "Note.text": (lambda c: vs.Note(f"saw {c}"), lambda e: e.text, f"saw {M}"),
    "ToolCalled.arguments": (
        lambda c: vs.ToolCalled("t9", "charge", {"pan": c, c: {"nested": [c, {c: c}]}, "n": 1}),
        lambda e: e.arguments,
        {"pan": M, M: {"nested": [M, {M: M}]}, "n": 1},
    ),
    "ToolReturned.result (text)": (lambda c: vs.ToolReturned("t1", f"ok {c}"), lambda e: e.result, f"ok {M}"),
    "ToolReturned.result (data)": (
        lambda c: vs.ToolReturned("t1", [{c: [c]}, c, 5]),
        lambda e: e.result,
        [{M: [M]}, M, 5],
    ),
    "ToolReturned.error": (
        lambda c: vs.ToolReturned("t1", None, error=f"{c} declined"),
        lambda e: e.error,
        f"{M} declined",
    ),
    "ToolCancelled.reason": (lambda c: vs.ToolCancelled("t1", f"no {c}"), lambda e: e.reason, f"no {M}"),
    "SlotsSet.values": (
        lambda c: vs.SlotsSet({"card": c, c: "key too", "deep": {"x": [c]}}),
        lambda e: e.values,
        {"card": M, M: "key too", "deep": {"x": [M]}},
    ),
    "SlotsSet.values (private)": (
        lambda c: vs.SlotsSet({c: c}, scope="agent:billing"),
        lambda e: e.values,
        {M: M},
    ),
    "extra (unknown fields)": (
        lambda c: vs.Note("x", extra={"x_card": c, "x_map": {c: [c]}}),
        lambda e: dict(e.extra),
        {"x_card": M, "x_map": {M: [M]}},
    ),
}


@pytest.mark.parametrize(("make", "get", "expected"), CORE.values(), ids=CORE.keys())
def test_core_payloads(
    store: vs.Store, make: Callable[[str], vs.Event], get: Callable[[Any], Any], expected: Any
) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.ToolCalled("t1", "lookup", {}))
    s.record(make(CARD))
    assert get(_last(store)) == expected
    assert_nowhere(store, "c1")


def test_call_meta_keys_and_values(store: vs.Store) -> None:
    store.open("c1", agent="triage", meta={"caller": CARD, CARD: {"k": [CARD]}})
    assert dict(store.load("c1").meta) == {"caller": M, M: {"k": [M]}}
    assert_nowhere(store, "c1")


def test_non_owner_writes(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.ToolCalled("t1", "lookup", {}), vs.ToolCalled("t2", "lookup", {}))
    store.append("c1", vs.Note(f"from outside {CARD}", extra={"x_k": {CARD: CARD}}))
    store.append("c1", vs.ToolReturned("t1", {CARD: CARD}, agent="worker"))
    store.append("c1", vs.ToolCancelled("t2", CARD))
    store.append("c1", vs.CallEnded(f"hung up after {CARD}"))
    events = store.events("c1")
    assert events[-4].text == f"from outside {M}" and dict(events[-4].extra) == {"x_k": {M: M}}
    assert events[-3].result == {M: M}
    assert events[-2].reason == M
    assert events[-1].reason == f"hung up after {M}"
    assert_nowhere(store, "c1")


def test_handoff_reason_summary_and_data(store: vs.Store, plugin: Callable[[object], object]) -> None:
    class AddsData:
        @vsp.hookimpl
        def prepare_handoff(self, state: vs.CallState, packet: vs.HandoffPacket) -> dict[str, Any]:
            return {"data": {"crm_note": f"card {CARD}", CARD: {"list": [CARD]}}}

    plugin(AddsData())
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("hi"))
    packet = s.handoff(to="billing", reason=f"pay with {CARD}", summary=f"caller read {CARD}", inline=True)
    handed = store.load("c1").handoffs[-1]
    assert (handed.reason, handed.summary) == (f"pay with {M}", f"caller read {M}")
    assert dict(handed.data) == {"crm_note": f"card {M}", M: {"list": [M]}}
    assert dict(packet.data) == dict(handed.data)
    for text in (packet.to_json().encode(), packet.to_bytes(), packet.to_token().encode()):
        assert not any(n in text for n in needles(CARD))
    assert_nowhere(store, "c1")
    # the receiver reads the redacted handoff, and the chain the packet covers verifies
    b = store.resume(packet.to_json(), agent="billing")
    assert dict(b.state.handoffs[-1].data) == dict(handed.data)
    assert verify_chain(genesis("c1"), store.tiers.deciding.backend.load("c1")) == -1


# --- plugin event types and types this reader does not know ------------------------------------------


@attrs.frozen
class PaymentNoted(vs.Event):
    """A plugin's event type: every text and data field is redacted, whatever it is called."""

    TYPE = "tests.redaction_scope.PaymentNoted"
    memo: str
    ref: str | None = None
    details: Mapping[str, Any] = attrs.field(factory=dict)
    items: list[Any] = attrs.field(factory=list)
    anything: Any = None
    amount: float = 0.0
    count: int = 0


def test_plugin_event_types(store: vs.Store) -> None:
    vsp.register_event_type(PaymentNoted)  # (here, not at import: other modules' tests see the registry)
    s = store.open("c1", agent="triage")
    s.record(
        PaymentNoted(
            memo=f"paid with {CARD}",
            ref=CARD,
            details={CARD: {"pan": CARD}},
            items=[CARD, {"k": CARD}],
            anything=f"x {CARD}",
            amount=4111111111111111.0,  # a number, not text: kept
            count=7,
        )
    )
    ev = _last(store)
    assert isinstance(ev, PaymentNoted)
    assert (ev.memo, ev.ref, ev.anything) == (f"paid with {M}", M, f"x {M}")
    assert ev.details == {M: {"pan": M}}
    assert ev.items == [M, {"k": M}]
    assert (ev.amount, ev.count) == (4111111111111111.0, 7)
    assert_nowhere(store, "c1")


def test_event_types_this_reader_does_not_know(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.UnknownEvent(type_name="acme.Future", fields={"text": f"card {CARD}", CARD: [CARD], "n": 4}))
    ev = _last(store)
    assert isinstance(ev, vs.UnknownEvent) and ev.type_name == "acme.Future"
    assert dict(ev.fields) == {"text": f"card {M}", M: [M], "n": 4}
    assert_nowhere(store, "c1")


# --- separators and ordinary numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(("card", "last4"), SEPARATED, ids=[c for c, _ in SEPARATED])
def test_space_dash_and_dot_separators(store: vs.Store, card: str, last4: str) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke(f"it is {card}."), vs.SlotsSet({card: card}))
    assert s.state.turns[0].text == f"it is [card ending {last4}]."
    assert dict(s.state.slots) == {f"[card ending {last4}]": f"[card ending {last4}]"}
    assert_nowhere(store, "c1", card)


@pytest.mark.parametrize(
    "text",
    [
        "call 415.555.0199 or 415-555-0123",
        "version 1.2.3.4 of 2024.05.06",
        "total 1234567.89 dollars",
        "order 4111.1111.1111.1112",  # fails Luhn
        "ip 192.168.100.200 port 8080",
    ],
)
def test_ordinary_dotted_numbers_survive(store: vs.Store, text: str) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke(text), vs.SlotsSet({text: text}))
    assert s.state.turns[0].text == text
    assert dict(s.state.slots) == {text: text}


def test_two_keys_masked_alike_both_survive(store: vs.Store) -> None:
    # two cards ending the same: no value is lost to the collision
    s = store.open("c1", agent="triage")
    s.record(vs.SlotsSet({"4111 1111 1111 1111": "first", "4111-1111-1111-1111": "second", "plain": 1}))
    assert dict(s.state.slots) == {M: "first", f"{M} (2)": "second", "plain": 1}


# --- Interrupted.heard: the prefix of a masked number -----------------------------------------------------

READ_BACK = f"Let me read that back: {CARD}, expiring next May. Is that right?"


@pytest.mark.parametrize(
    ("heard", "expected"),
    [
        ("Let me read that back: 4111 1111 1111", f"Let me read that back: {M}"),  # 12 of 16 digits
        ("Let me read that back: 4111 11", f"Let me read that back: {M}"),
        ("Let me read that back: 4", f"Let me read that back: {M}"),
        (f"Let me read that back: {CARD}, expiring", f"Let me read that back: {M}, expiring"),
        ("let me READ that back 4111 1111 1111", f"let me READ that back {M}"),  # case and punctuation aside
        ("Let me read that back:", "Let me read that back:"),  # cut before the number: nothing to mask
        ("", ""),
    ],
    ids=["12-digits", "6-digits", "1-digit", "whole", "case-punct", "before", "nothing"],
)
def test_heard_prefix_of_a_masked_number_is_masked(store: vs.Store, heard: str, expected: str) -> None:
    s = store.open("c1", agent="triage")
    turn = s.record(vs.AgentSpoke(READ_BACK))
    s.record(vs.Interrupted(turn=turn, heard=heard, heard_ms=2100))
    st_ = store.load("c1")
    assert st_.turns[0].text == f"Let me read that back: {M}, expiring next May. Is that right?"
    assert st_.turns[0].heard == expected
    assert s.state.turns[0].heard == expected  # the recording session folded the same
    data = stored_bytes(store, "c1")
    for digits in (b"4111 1111 1111", b"4111 11", b"411111111111"):
        assert digits not in data
    rendered = json.dumps(st_.context("openai"))
    assert "4111" not in rendered


@pytest.mark.parametrize("how", ["seq", "id", "event", "latest", "same-batch", "same-batch-by-event"])
def test_heard_prefix_whichever_way_the_turn_is_named(store: vs.Store, how: str) -> None:
    s = store.open("c1", agent="triage")
    agent = vs.AgentSpoke(f"Your card {CARD} is on file")
    heard = "Your card 4111 1111 1111"
    if how.startswith("same-batch"):
        ref = agent if how.endswith("event") else None
        s.record(vs.UserSpoke("which card?"), agent, vs.Interrupted(turn=ref, heard=heard))
    else:
        seq = s.record(agent)
        s.record(vs.UserSpoke("wait"))
        ref = {"seq": seq, "id": agent.id, "event": agent, "latest": None}[how]
        s.record(vs.Interrupted(turn=ref, heard=heard))
    agent_turn = next(t for t in store.load("c1").turns if t.role == "agent")
    assert agent_turn.heard == f"Your card {M}"
    assert b"4111 1111 1111" not in stored_bytes(store, "c1")


def test_heard_with_two_numbers_and_a_dash_spelling(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    t = s.record(vs.AgentSpoke("Old 4111-1111-1111-1111, new 5500-0000-0000-0004, right?"))
    s.record(vs.Interrupted(turn=t, heard="Old 4111-1111-1111-1111, new 5500-00"))
    assert store.load("c1").turns[0].heard == "Old [card ending 1111], new [card ending 0004]"
    assert b"5500-00" not in stored_bytes(store, "c1")


def test_heard_that_parts_from_the_turn_is_refused_without_its_digits(store: vs.Store) -> None:
    # heard that is not a prefix of the turn is refused (InvalidEvent); runs of 4+ digits after where
    # they part are masked first, so not even the error message (which quotes heard) holds them
    s = store.open("c1", agent="triage")
    t = s.record(vs.AgentSpoke(f"The card is {CARD}."))
    before = store.events("c1")
    with pytest.raises(vs.InvalidEvent, match="not a prefix") as err:
        s.record(vs.Interrupted(turn=t, heard="The number's 4111 1111 1111, item 12"))
    assert "4111" not in str(err.value) and M in str(err.value)
    assert store.events("c1") == before


def test_heard_of_a_turn_without_a_masked_number_is_left_alone(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    t = s.record(vs.AgentSpoke("Your order 4111 1111 1111 is on its way"))  # 12 digits: no card
    s.record(vs.Interrupted(turn=t, heard="Your order 4111 1111 1111"))
    assert store.load("c1").turns[0].heard == "Your order 4111 1111 1111"


def test_heard_is_not_masked_when_redaction_is_off() -> None:
    off = vs.open_store(memory_url("scope-off"), signing_keys=KEYS, redact=False)
    try:
        s = off.open("c1", agent="triage")
        t = s.record(vs.AgentSpoke(READ_BACK))
        s.record(vs.Interrupted(turn=t, heard="Let me read that back: 4111 1111 1111"))
        turn = off.load("c1").turns[0]
        assert (turn.text, turn.heard) == (READ_BACK, "Let me read that back: 4111 1111 1111")
    finally:
        off.close()


def test_barge_in_during_a_read_back_reaches_no_tier_wal_chain_or_packet(tmp_path: Path) -> None:
    """The whole path: a hot tier, SQLite deciding (WAL), a behind tier, a handoff packet, another store."""
    urls = (
        memory_url("scope-hot"),
        f"sqlite:///{tmp_path / 'deciding.db'}",
        f"sqlite:///{tmp_path / 'b.db'}?write=behind",
    )
    store = vs.open_store(*urls, signing_keys=KEYS)
    try:
        s = store.open("c1", agent="triage", meta={"pan": CARD})
        s.record(vs.UserSpoke(f"my card is {CARD}"))
        t = s.record(vs.AgentSpoke(READ_BACK))
        s.record(vs.Interrupted(turn=t, heard="Let me read that back: 4111 1111 1111", heard_ms=2300))
        s.record(vs.SlotsSet({CARD: {"pan": CARD}}), vs.Note(f"n {CARD}", extra={"x": {CARD: 1}}))
        packet = s.handoff(to="billing", reason=f"pay {CARD}", inline=True)
        s.flush(all_tiers=True)
        for tier in store.tiers.all:
            log = tier.backend.load("c1")
            assert len(log) == store.load("c1").seq, tier.url
            assert verify_chain(genesis("c1"), log) == -1  # the chain is over the redacted bytes
            joined = b"".join(e.data for e in log)
            assert not any(n in joined for n in needles(CARD)) and b"4111 1111 1111" not in joined, tier.url
        # the files themselves, WAL included, while the store is open
        files = [p for p in tmp_path.iterdir() if p.is_file()]
        assert any(p.name.endswith("-wal") for p in files), [p.name for p in files]
        raw = b"".join(p.read_bytes() for p in files)
        assert not any(n in raw for n in needles(CARD)) and b"4111 1111 1111" not in raw
        # the packet (every encoding) and its inline state
        for text in (packet.to_json().encode(), packet.to_bytes()):
            assert not any(n in text for n in needles(CARD)) and b"4111 1111 1111" not in text
        assert packet.state is not None and packet.state.turns[1].heard == f"Let me read that back: {M}"
    finally:
        store.close()
    other = vs.open_store(f"sqlite:///{tmp_path / 'deciding.db'}", signing_keys=KEYS)
    try:
        b = other.resume(packet.to_json(), agent="billing")
        assert b.state.turns[1].heard == f"Let me read that back: {M}"
        assert "4111" not in json.dumps(b.context("openai"))
    finally:
        other.close()


# --- not masked: identifiers and references ----------------------------------------------------------------


def test_identifiers_are_not_masked(store: vs.Store) -> None:
    # a Luhn-valid run in an id, a tool call id or name, a slot scope or an agent name is an identifier
    # that other events and the store refer to: masking it would break those references
    ident = "4111111111111111"
    s = store.open("c1", agent="triage")
    s.record(vs.ToolCalled(ident, f"tool_{ident}", {}), vs.SlotsSet({"k": 1}, scope=f"agent:{ident}"))
    s.record(vs.ToolReturned(ident, "done"), vs.Note("x", id=f"note-{ident}"))
    st_ = store.load("c1")
    assert st_.tools[ident].name == f"tool_{ident}" and st_.tools[ident].status == "ok"
    assert dict(st_.private_slots[ident]) == {"k": 1}
    assert st_.notes[-1].id == f"note-{ident}"
    packet = s.handoff(to=f"agent-{ident}")
    assert packet.to_agent == f"agent-{ident}"
