"""Redaction: card numbers are masked when an event is recorded, before it reaches any tier,
chain or process; ordinary long numbers survive; ``redact=False`` opts out; the
``redact_event`` hook chain; and the cost of redaction on the record path."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from conftest import memory_url

import voicestate as vs
import voicestate.plugins as vsp
from voicestate.backend import genesis, verify_chain
from voicestate.plugins import decode_event
from voicestate.testing import spawn

KEYS = "r1:redact-tests-secret-0123456789"

# (as said, last four digits)
CARDS = [
    ("4111 1111 1111 1111", "1111"),  # Visa, spaces
    ("5500-0000-0000-0004", "0004"),  # Mastercard, dashes
    ("378282246310005", "0005"),  # Amex, 15 digits, no separators
    ("6011111111111117", "1117"),  # Discover, no separators
    ("4111-1111-1111-1111", "1111"),
    ("6011 1111 1111 1117", "1117"),
]
CARD_IDS = [c for c, _ in CARDS]

NOT_CARDS = [
    "4111 1111 1111 1112",  # one digit off: fails Luhn
    "4111111111111112",
    "order 1234567890123",  # 13 digits, fails Luhn
    "call me at +1 415-555-0123",  # a phone number
    "my number is (415) 555 0123 or 415.555.0199",
    "ref 123456789012",  # 12 digits
    "account 12345678901234567",  # 17 digits, fails Luhn
]


def masked(last4: str) -> str:
    return f"[card ending {last4}]"


def needles(card: str) -> list[bytes]:
    """The card's digits as they might be stored: as said, bare, spaced or dashed in fours."""
    digits = "".join(ch for ch in card if ch.isdigit())
    fours = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    forms = {card, digits, " ".join(fours), "-".join(fours), card.replace("-", " "), card.replace(" ", "-")}
    return [f.encode() for f in forms]


def tiers_holding(store: vs.Store, call_id: str, card: str) -> list[str]:
    """URLs of the tiers whose stored bytes contain the card number in any form."""
    found = []
    for tier in store.tiers.all:
        data = b"".join(e.data for e in tier.backend.load(call_id))
        if any(n in data for n in needles(card)):
            found.append(tier.url)
    return found


def stored_events(store: vs.Store, call_id: str) -> list[vs.Event]:
    """The deciding tier's events, decoded from their stored bytes."""
    return [decode_event(e.data, e.seq, e.chain) for e in store.tiers.deciding.backend.load(call_id)]


@pytest.fixture
def store() -> Iterator[vs.Store]:
    s = vs.open_store(memory_url("redact"), signing_keys=KEYS)
    try:
        yield s
    finally:
        s.close()


def record_everything(store: vs.Store, call_id: str, card: str) -> tuple[vs.Session, vs.HandoffPacket]:
    """The card number in every place an event can carry it."""
    s = store.open(call_id, agent="triage", meta={"caller": f"card {card}", "nested": {"list": [card, 7]}})
    s.record(vs.UserSpoke(f"my card is {card} thanks"))
    t = s.record(vs.AgentSpoke(f"I read back {card} to you"))
    s.record(vs.Interrupted(turn=t, heard=f"I read back {card}", heard_ms=1200))
    s.record(vs.Note(f"supervisor saw {card}"))
    s.record(vs.ToolCalled("t1", "charge", {"card": card, "nested": {"cards": [card, {"pan": card}]}, "amount": 12}))
    s.record(vs.ToolReturned("t1", {"charged": [{"pan": card}], "text": f"ok {card}", "n": 1}))
    s.record(vs.ToolCalled("t2", "verify", {}), vs.ToolReturned("t2", None, error=f"card {card} declined"))
    s.record(vs.SlotsSet({"card": card, "cards": [card], "x": {"y": card}, "plain": "keep"}))
    s.record(vs.SlotsSet({"pan": card}, scope="agent:billing"))
    s.record(vs.ToolCalled("t3", "slow", {}))
    store.append(call_id, vs.Note(f"from outside {card}", agent="supervisor"))  # non-owner writes
    store.append(call_id, vs.ToolReturned("t3", f"late {card}", agent="worker"))
    s.refresh()
    packet = s.handoff(to="billing", reason=f"card {card} on file", summary=f"caller gave {card}")
    return s, packet


def check_everything_masked(
    st_: vs.CallState, packet: vs.HandoffPacket, card: str, last4: str, *, meta: bool = True
) -> None:
    m = masked(last4)
    if meta:
        assert dict(st_.meta) == {"caller": f"card {m}", "nested": {"list": [m, 7]}}
    assert [(t.text, t.heard) for t in st_.turns] == [
        (f"my card is {m} thanks", None),
        (f"I read back {m} to you", f"I read back {m}"),
    ]
    assert [n.text for n in st_.notes] == [f"supervisor saw {m}", f"from outside {m}"]
    assert dict(st_.tools["t1"].arguments) == {"card": m, "nested": {"cards": [m, {"pan": m}]}, "amount": 12}
    assert st_.tools["t1"].result == {"charged": [{"pan": m}], "text": f"ok {m}", "n": 1}
    assert st_.tools["t2"].error == f"card {m} declined"
    assert st_.tools["t3"].result == f"late {m}"
    assert dict(st_.slots) == {"card": m, "cards": [m], "x": {"y": m}, "plain": "keep"}
    assert dict(st_.private_slots["billing"]) == {"pan": m}
    handed = st_.handoffs[-1]
    assert (handed.reason, handed.summary) == (f"card {m} on file", f"caller gave {m}")
    assert (packet.reason, packet.summary) == (f"card {m} on file", f"caller gave {m}")
    for text in (packet.to_json(), json.dumps(st_.context("openai"), ensure_ascii=False)):
        assert not any(n.decode() in text for n in needles(card))
    assert not any(n in packet.to_bytes() for n in needles(card))


# --- masking, field by field -----------------------------------------------------------------


@pytest.mark.parametrize(("card", "last4"), CARDS, ids=CARD_IDS)
def test_card_numbers_are_masked_everywhere(store: vs.Store, card: str, last4: str) -> None:
    s, packet = record_everything(store, "c1", card)
    check_everything_masked(store.load("c1"), packet, card, last4)  # as stored
    assert tiers_holding(store, "c1", card) == []
    # the packet the receiver redeems carries the masked text only
    b = store.resume(packet.to_json(), agent="billing")
    check_everything_masked(b.state, packet, card, last4)
    # the recording session's own state (its meta: test_openers_own_state_shows_the_masked_meta)
    check_everything_masked(s.state, packet, card, last4, meta=False)


def test_openers_own_state_shows_the_masked_meta(store: vs.Store) -> None:
    # "before it is applied anywhere": the session that opened the call folds the redacted
    # CallStarted too, not the one it was given (its summary and packets are built from it)
    card, m = "4111 1111 1111 1111", masked("1111")
    s = store.open("c1", agent="triage", meta={"caller": card, "channel": "sip"})
    assert dict(store.load("c1").meta) == {"caller": m, "channel": "sip"}
    assert dict(s.state.meta) == {"caller": m, "channel": "sip"}
    s.record(vs.UserSpoke("hi"))
    packet = s.handoff(to="billing", summary=None, inline=True)
    assert packet.summary is not None and card not in packet.summary
    assert packet.state is not None and dict(packet.state.meta) == {"caller": m, "channel": "sip"}


def test_each_event_type_is_masked_as_stored(store: vs.Store) -> None:
    card, m = "4111 1111 1111 1111", masked("1111")
    record_everything(store, "c1", card)
    by_type: dict[str, list[vs.Event]] = {}
    for ev in stored_events(store, "c1"):
        by_type.setdefault(type(ev).__name__, []).append(ev)
    assert by_type["CallStarted"][0].meta["caller"] == f"card {m}"  # type: ignore[attr-defined]
    assert by_type["UserSpoke"][0].text == f"my card is {m} thanks"  # type: ignore[attr-defined]
    assert by_type["AgentSpoke"][0].text == f"I read back {m} to you"  # type: ignore[attr-defined]
    assert by_type["Interrupted"][0].heard == f"I read back {m}"  # type: ignore[attr-defined]
    assert [n.text for n in by_type["Note"]] == [f"supervisor saw {m}", f"from outside {m}"]  # type: ignore[attr-defined]
    assert by_type["ToolCalled"][0].arguments["nested"] == {"cards": [m, {"pan": m}]}  # type: ignore[attr-defined]
    assert by_type["HandedOff"][0].reason == f"card {m} on file"  # type: ignore[attr-defined]
    # ids survive redaction (they are the idempotency keys)
    assert len({e.id for e in stored_events(store, "c1")}) == store.load("c1").seq


def test_default_handoff_summary_carries_the_masked_text(store: vs.Store) -> None:
    s = store.open("c1", agent="triage", meta={"caller": "4111 1111 1111 1111"})
    s.record(vs.UserSpoke("charge 5500-0000-0000-0004 please"))
    s.record(vs.SlotsSet({"intent": "pay with 378282246310005"}))
    packet = s.handoff(to="billing")
    assert packet.summary is not None
    for card, last4 in [("4111 1111 1111 1111", "1111"), ("5500-0000-0000-0004", "0004"), ("378282246310005", "0005")]:
        assert not any(n.decode() in packet.summary for n in needles(card)), packet.summary
        assert masked(last4) in packet.summary
        assert tiers_holding(store, "c1", card) == []


@pytest.mark.parametrize("text", NOT_CARDS)
def test_ordinary_long_numbers_survive(store: vs.Store, text: str) -> None:
    s = store.open("c1", agent="triage", meta={"ref": text})
    s.record(vs.UserSpoke(text), vs.AgentSpoke(text))
    s.record(vs.ToolCalled("t1", "lookup", {"q": text, "deep": [{"q": text}]}), vs.ToolReturned("t1", [text]))
    s.record(vs.SlotsSet({"ref": text}))
    store.append("c1", vs.Note(text))
    s.refresh()
    st_ = s.state
    assert dict(st_.meta) == {"ref": text}
    assert [t.text for t in st_.turns] == [text, text]
    assert dict(st_.tools["t1"].arguments) == {"q": text, "deep": [{"q": text}]}
    assert st_.tools["t1"].result == [text]
    assert dict(st_.slots) == {"ref": text}
    assert st_.notes[-1].text == text
    assert "card ending" not in json.dumps([e.data.hex() for e in store.tiers.deciding.backend.load("c1")])
    assert store.load("c1").turns[0].text == text


def test_cards_and_ordinary_numbers_in_one_text(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(
        vs.UserSpoke("order 1234567890123, card 4111 1111 1111 1111, backup 5500-0000-0000-0004, call +1 415-555-0123")
    )
    assert s.state.turns[0].text == (
        "order 1234567890123, card [card ending 1111], backup [card ending 0004], call +1 415-555-0123"
    )


def test_non_final_user_turn_is_not_stored_at_all(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("4111 1111 1111", final=False))
    s.record(vs.UserSpoke("4111 1111 1111 1111"))
    assert [t.text for t in s.state.turns] == [masked("1111")]
    assert tiers_holding(store, "c1", "4111 1111 1111 1111") == []
    assert not any(b"4111 1111 1111" in e.data for e in store.tiers.deciding.backend.load("c1"))


def test_async_and_queued_records_are_masked_too() -> None:
    card = "6011111111111117"

    async def main() -> vs.CallState:
        store = vs.open_store(memory_url("redact-async"), signing_keys=KEYS)
        try:
            async with store.aopen("c1", agent="triage", meta={"pan": card}) as s:
                await s.arecord(vs.UserSpoke(f"a {card}"))
                s.record_nowait(vs.AgentSpoke(f"b {card}"), vs.Note(f"c {card}"))
                await s.aflush()
                await store.aappend("c1", vs.Note(f"d {card}"))
                assert tiers_holding(store, "c1", card) == []
            return await store.aload("c1")
        finally:
            await store.aclose()

    st_ = asyncio.run(main())
    m = masked("1117")
    assert dict(st_.meta) == {"pan": m}
    assert [t.text for t in st_.turns] == [f"a {m}", f"b {m}"]
    assert [n.text for n in st_.notes] == [f"c {m}", f"d {m}"]


@pytest.mark.parametrize("how", ["record", "append"])
def test_tool_cancel_and_call_end_reasons_are_masked(store: vs.Store, how: str) -> None:
    # free text that anyone may write (store.append): a cancelled payment tool, a hang-up reason
    card = "4111 1111 1111 1111"
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("hi"), vs.ToolCalled("t1", "charge", {}))
    if how == "record":
        s.record(vs.ToolCancelled("t1", f"card {card} was declined"))
        s.end(f"caller read out {card} and hung up")
    else:
        store.append("c1", vs.ToolCancelled("t1", f"card {card} was declined"))
        store.append("c1", vs.CallEnded(f"caller read out {card} and hung up"))
    st_ = store.load("c1")
    assert st_.tools["t1"].error == f"card {masked('1111')} was declined"
    assert st_.ended_reason == f"caller read out {masked('1111')} and hung up"
    assert tiers_holding(store, "c1", card) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111 1111 1111 1111 123", f"card {masked('1111')} 123"),  # the CVV right after it
        ("4111 1111 1111 1111 12 28", f"{masked('1111')} 12 28"),  # then the expiry
    ],
    ids=["cvv", "expiry"],
)
def test_card_followed_by_more_digits_is_masked(store: vs.Store, text: str, expected: str) -> None:
    # Speech-to-text writes what the caller reads out in one go: number, then CVV or expiry.
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke(text))
    assert tiers_holding(store, "c1", "4111 1111 1111 1111") == []
    assert s.state.turns[0].text == expected


# --- every tier, every process -----------------------------------------------------------------


def test_no_tier_ever_stores_the_number(tmp_path: Path) -> None:
    urls = (
        memory_url("redact-hot"),
        f"sqlite:///{tmp_path / 'deciding.db'}",
        f"sqlite:///{tmp_path / 'b.db'}?write=behind",
    )
    store = vs.open_store(*urls, signing_keys=KEYS)
    try:
        assert [t.write for t in store.tiers.all] == ["through", "through", "behind"]
        for i, (card, last4) in enumerate(CARDS):
            call_id = f"c{i}"
            s, packet = record_everything(store, call_id, card)
            s.flush(all_tiers=True)
            seq = s.state.seq
            for tier in store.tiers.all:
                assert [e.seq for e in tier.backend.load(call_id)] == list(range(1, seq + 1)), tier.url
            assert tiers_holding(store, call_id, card) == []
            check_everything_masked(store.load(call_id), packet, card, last4)
    finally:
        store.close()
    # and reading the files afresh, nothing there either
    for name in ("deciding.db", "b.db"):
        reopened = vs.open_store(f"sqlite:///{tmp_path / name}", signing_keys=KEYS)
        try:
            for i, (card, _) in enumerate(CARDS):
                assert tiers_holding(reopened, f"c{i}", card) == []
        finally:
            reopened.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for card, _ in CARDS:
        assert not any(n in raw for n in needles(card)), card


def _child_resume_and_record(url: str, packet_json: str, card: str) -> tuple[Any, ...]:
    store = vs.open_store(url, signing_keys=KEYS)
    try:
        s = store.resume(packet_json, agent="billing")  # checks the chain value the packet covers
        before = s.state.turns[0].text
        s.record(vs.UserSpoke(f"billing heard {card}"))
        s.record(vs.ToolCalled("t9", "charge", {"pan": card}), vs.Note(f"billing note {card}"))
        return ("ok", os.getpid(), before, s.state.seq)
    finally:
        store.close()


def test_chain_verifies_across_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    card, m = "5500-0000-0000-0004", masked("0004")
    store = vs.open_store(url, signing_keys=KEYS)
    try:
        s = store.open("c1", agent="triage", meta={"pan": card})
        s.record(vs.UserSpoke(f"my card is {card}"))
        s.record(vs.SlotsSet({"card": card}))
        packet = s.handoff(to="billing", reason=f"pay with {card}")
        s.record(vs.UserSpoke(f"are you there? {card}"))  # warm transfer: the sender keeps recording
        [result] = spawn(_child_resume_and_record, [(url, packet.to_json(), card)])
        assert result[0] == "ok", result
        assert result[1] != os.getpid()
        assert result[2] == f"my card is {m}"  # the child read the masked text
        log = store.tiers.deciding.backend.load("c1")
        assert len(log) == result[3]
        assert verify_chain(genesis("c1"), log) == -1
        st_ = store.load("c1")
        assert (st_.owner, st_.epoch, st_.seq) == ("billing", 2, result[3])
        assert [t.text for t in st_.turns] == [f"my card is {m}", f"are you there? {m}", f"billing heard {m}"]
        assert dict(st_.tools["t9"].arguments) == {"pan": m}
        assert st_.notes[-1].text == f"billing note {m}"
        assert dict(st_.slots) == {"card": m}
        assert st_.meta["pan"] == m
        assert tiers_holding(store, "c1", card) == []
        # the old owner folds the child's events in (verifying their chain) and sees the same
        s.refresh()
        assert s.state == st_
        with pytest.raises(vs.FencedError):
            s.record(vs.Note(card))
        assert tiers_holding(store, "c1", card) == []
    finally:
        store.close()


# --- opting out ------------------------------------------------------------------------------


def test_redact_false_stores_the_number_as_is(tmp_path: Path) -> None:
    card = "4111 1111 1111 1111"
    for url in (memory_url("redact-off"), f"sqlite:///{tmp_path / 'off.db'}"):
        store = vs.open_store(url, signing_keys=KEYS, redact=False)
        try:
            s = store.open("c1", agent="triage", meta={"pan": card})
            s.record(vs.UserSpoke(f"my card is {card}"))
            s.record(vs.ToolCalled("t1", "charge", {"pan": card}))
            store.append("c1", vs.Note(card))
            st_ = store.load("c1")
            assert st_.turns[0].text == f"my card is {card}"
            assert st_.meta["pan"] == card
            assert st_.tools["t1"].arguments["pan"] == card
            assert st_.notes[0].text == card
            assert tiers_holding(store, "c1", card) == [store.tiers.deciding.url]
        finally:
            store.close()
    # a redacting store next to it still masks
    on = vs.open_store(memory_url("redact-on"), signing_keys=KEYS)
    try:
        on.open("c1", agent="triage").record(vs.UserSpoke(card))
        assert on.load("c1").turns[0].text == masked("1111")
    finally:
        on.close()


# --- the redact_event hook chain --------------------------------------------------------------


class Upper:
    @vsp.hookimpl
    def redact_event(self, event: vs.Event) -> vs.Event | None:
        if isinstance(event, vs.UserSpoke):
            return attrs.evolve(event, text=event.text.upper())
        return None


class ChangesType:
    @vsp.hookimpl
    def redact_event(self, event: vs.Event) -> vs.Event | None:
        if isinstance(event, (vs.UserSpoke, vs.Note)) and "secret" in event.text:
            return vs.AgentSpoke("nothing to see", id=event.id, at=event.at)
        return None


class ChangesId:
    @vsp.hookimpl
    def redact_event(self, event: vs.Event) -> vs.Event | None:
        if isinstance(event, (vs.UserSpoke, vs.Note)) and "secret" in event.text:
            return attrs.evolve(event, id=event.id + "-redacted", text="nothing to see")
        return None


def test_plugin_redactor_runs_with_the_card_redactor(plugin: Callable[[object], None]) -> None:
    plugin(Upper())
    store = vs.open_store(memory_url("redact-chain"), signing_keys=KEYS)  # after registering: it reads the chain
    try:
        s = store.open("c1", agent="triage")
        s.record(vs.UserSpoke("my card is 4111 1111 1111 1111"))  # the one-event fast path
        s.record(vs.UserSpoke("and 5500-0000-0000-0004"), vs.AgentSpoke("Thanks 6011111111111117"))  # a batch
        store.append("c1", vs.Note("note 378282246310005"))
        s.refresh()
        texts = [t.text for t in s.state.turns]
        # both ran, whatever their order: upper-cased by the plugin, masked by the core
        assert [t.upper() for t in texts] == [
            "MY CARD IS [CARD ENDING 1111]",
            "AND [CARD ENDING 0004]",
            "THANKS [CARD ENDING 1117]",
        ]
        assert texts[0].startswith("MY CARD IS ") and texts[1].startswith("AND ")
        assert texts[2] == f"Thanks {masked('1117')}"  # the plugin leaves agent turns alone
        assert s.state.notes[0].text == f"note {masked('0005')}"
        # what the hooks returned is what was stored, byte for byte the same in a fresh fold
        stored = [e.text for e in stored_events(store, "c1") if isinstance(e, vs.UserSpoke)]
        assert stored == texts[:2]
        assert [t.text for t in store.load("c1").turns] == texts
        assert verify_chain(genesis("c1"), store.tiers.deciding.backend.load("c1")) == -1
        for card, _ in CARDS:
            assert tiers_holding(store, "c1", card) == []
    finally:
        store.close()
    # redact=False turns every redact_event hook off, the plugin's too
    off = vs.open_store(memory_url("redact-chain-off"), signing_keys=KEYS, redact=False)
    try:
        off.open("c1", agent="triage").record(vs.UserSpoke("my card is 4111 1111 1111 1111"))
        assert off.load("c1").turns[0].text == "my card is 4111 1111 1111 1111"
    finally:
        off.close()


@pytest.mark.parametrize("bad", [ChangesType, ChangesId], ids=["type", "id"])
def test_redactor_may_not_change_type_or_id(plugin: Callable[[object], None], bad: type) -> None:
    plugin(bad())
    store = vs.open_store(memory_url("redact-bad"), signing_keys=KEYS)
    try:
        s = store.open("c1", agent="triage")
        s.record(vs.UserSpoke("hello"))
        before = len(store.tiers.deciding.backend.load("c1"))
        with pytest.raises(vs.InvalidEvent, match="redact_event"):
            s.record(vs.UserSpoke("my secret"))
        with pytest.raises(vs.InvalidEvent, match="redact_event"):
            s.record(vs.AgentSpoke("fine"), vs.UserSpoke("another secret"))  # the batch path
        with pytest.raises(vs.InvalidEvent, match="redact_event"):
            store.append("c1", vs.Note("a secret note"))

        async def arecord() -> None:
            await s.arecord(vs.UserSpoke("async secret"))

        with pytest.raises(vs.InvalidEvent, match="redact_event"):
            asyncio.run(arecord())
        # nothing of them was stored or folded
        assert len(store.tiers.deciding.backend.load("c1")) == before
        assert s.state.seq == before == store.load("c1").seq
        assert [t.text for t in s.state.turns] == ["hello"]
        assert not any(
            b"secret" in e.data or b"nothing to see" in e.data for e in store.tiers.deciding.backend.load("c1")
        )
        # and the session still works
        assert s.record(vs.UserSpoke("all good")) == before + 1
    finally:
        store.close()


# --- cost -----------------------------------------------------------------------------------------


def _time_records(redact: bool, texts: list[str]) -> float:
    store = vs.open_store(memory_url("redact-perf"), signing_keys=KEYS, redact=redact)
    try:
        s = store.open("perf", agent="triage")
        events = [vs.UserSpoke(t) for t in texts]
        gc.collect()
        t0 = time.perf_counter()
        for ev in events:
            s.record(ev)
        elapsed = time.perf_counter() - t0
        assert s.state.seq == len(texts) + 1
        return elapsed
    finally:
        store.close()


def test_redaction_costs_at_most_twice_the_record_time() -> None:
    texts = []
    for i in range(2000):
        if i % 20 == 0:
            texts.append(f"my order number is 1234567890{i:03d} and my phone is 415 555 {i:04d}")
        elif i % 5 == 0:
            texts.append(f"it was invoice {i} from March, about {i * 3} dollars")
        else:
            texts.append(f"I was charged twice for the same thing, turn {i}, can you help me please")
    on, off = [], []
    for _ in range(5):  # interleaved, best of five: noise from other work on the machine cancels out
        off.append(_time_records(False, texts))
        on.append(_time_records(True, texts))
    assert min(on) <= 2.0 * min(off), (min(on), min(off))
