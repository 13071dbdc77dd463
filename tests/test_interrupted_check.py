"""``Interrupted`` is checked against the turn it cuts: ``heard`` is a prefix of that turn's
text (ignoring case, whitespace and punctuation; a number that redaction masked matches
its mask or its digits) and ``heard_ms`` is an int >= 0 or None. A second ``Interrupted``
of the same turn replaces the first; a retry with the same event id is a no-op."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import memory_url

import voicestate as vs

KEYS = "t1:test-interrupted-check-secret-01"
TEXT = "Hello there, how can I help"


@pytest.fixture
def store() -> Iterator[vs.Store]:
    s = vs.open_store(memory_url("interrupted"), signing_keys=KEYS)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def plain_store() -> Iterator[vs.Store]:
    s = vs.open_store(memory_url("interrupted-plain"), signing_keys=KEYS, redact=False)
    try:
        yield s
    finally:
        s.close()


def _turn(store: vs.Store, text: str = TEXT) -> tuple[vs.Session, int]:
    s = store.open("c1", agent="triage")
    s.record(vs.UserSpoke("hi"))
    return s, s.record(vs.AgentSpoke(text))


def _cut(s: vs.Session) -> tuple[bool, str | None, int | None]:
    t = s.state.turns[-1]
    return t.interrupted, t.heard, t.heard_ms


# --- heard must be a prefix of the turn it cuts -------------------------------------------------


@pytest.mark.parametrize(
    "heard",
    [
        "",
        "Hello",
        "Hel",  # cut mid-word
        "Hello there, how can I help",  # all of it
        "hello THERE",  # case
        "Hello there how",  # punctuation
        "  Hello   there,\nhow ",  # whitespace
        "Hello there... how can",
        "HELLO-THERE!",
    ],
)
def test_a_prefix_is_accepted_as_given(store: vs.Store, heard: str) -> None:
    s, t = _turn(store)
    s.record(vs.Interrupted(turn=t, heard=heard, heard_ms=400))
    assert _cut(s) == (True, heard, 400)  # stored as the caller heard it, not normalised
    assert store.load("c1").turns[-1].heard == heard


@pytest.mark.parametrize(
    "heard",
    [
        "Goodbye",
        "there, how can I help",  # not from the start
        "Hello there, how can I help you today",  # longer than the turn
        "Hello their",
        "Hellothere x",
    ],
)
def test_what_is_not_a_prefix_is_refused(store: vs.Store, heard: str) -> None:
    s, t = _turn(store)
    before = store.events("c1")
    with pytest.raises(vs.InvalidEvent) as err:
        s.record(vs.Interrupted(turn=t, heard=heard, heard_ms=400))
    msg = str(err.value)
    assert "prefix" in msg and repr(heard) in msg and TEXT in msg  # says what was expected
    assert "ignoring case, whitespace and punctuation" in msg
    assert store.events("c1") == before  # nothing stored
    assert _cut(s) == (False, None, None)
    assert s.context("openai")[-1] == {"role": "assistant", "content": TEXT}  # nothing sent to the model


def test_the_message_clips_a_long_turn(store: vs.Store) -> None:
    s, t = _turn(store, "word " * 100)
    with pytest.raises(vs.InvalidEvent) as err:
        s.record(vs.Interrupted(turn=t, heard="nope"))
    assert len(str(err.value)) < 400 and "..." in str(err.value)


def test_accents_and_unicode_case(store: vs.Store) -> None:
    s, t = _turn(store, "Ça coûte 12 €, Zoë")
    for heard in ("ça coute 12", "CA COÛTE", "Ça coûte 12 €, Zoe", "Ça coûte 12 €, Zoe\u0308"):
        s.record(vs.Interrupted(turn=t, heard=heard))
    with pytest.raises(vs.InvalidEvent):
        s.record(vs.Interrupted(turn=t, heard="Ça coûte 13"))


@pytest.mark.parametrize("ref", ["seq", "id", "event", "latest"])
def test_every_way_of_naming_the_turn_is_checked(store: vs.Store, ref: str) -> None:
    s = store.open("c1", agent="triage")
    first = vs.AgentSpoke("First answer")
    seq = s.record(first)
    s.record(vs.UserSpoke("and?"))
    latest = vs.AgentSpoke("Second answer")
    latest_seq = s.record(latest)
    target, text = {
        "seq": (seq, "First"),
        "id": (first.id, "First"),
        "event": (first, "First"),
        "latest": (None, "Second"),
    }[ref]
    wrong = "Second" if text == "First" else "First"
    with pytest.raises(vs.InvalidEvent, match="prefix"):
        s.record(vs.Interrupted(turn=target, heard=wrong))
    s.record(vs.Interrupted(turn=target, heard=text))
    cut = {t.seq: t for t in s.state.turns}[latest_seq if ref == "latest" else seq]
    assert (cut.interrupted, cut.heard) == (True, text)


def test_a_turn_in_the_same_batch_is_checked(store: vs.Store) -> None:
    s = store.open("c1", agent="triage")
    s.record(vs.AgentSpoke("older turn"))
    newer = vs.AgentSpoke("newer turn")
    # turn=None in a batch is the latest agent turn so far: the one earlier in the batch
    with pytest.raises(vs.InvalidEvent, match="prefix"):
        s.record(newer, vs.Interrupted(turn=None, heard="older"))
    with pytest.raises(vs.InvalidEvent, match="prefix"):
        s.record(newer, vs.Interrupted(turn=newer, heard="older"))
    assert [t.text for t in s.state.turns] == ["older turn"]  # the batch is refused whole
    s.record(newer, vs.Interrupted(turn=None, heard="newer"))
    assert [(t.text, t.heard) for t in s.state.turns] == [("older turn", None), ("newer turn", "newer")]


def test_heard_must_be_text(store: vs.Store) -> None:
    s, t = _turn(store)
    for bad in (None, 5, b"Hello"):
        with pytest.raises(vs.InvalidEvent, match="heard"):
            s.record(vs.Interrupted(turn=t, heard=bad))  # type: ignore[arg-type]


# --- masked numbers (redaction) --------------------------------------------------------------------


def test_a_card_read_back_and_heard_whole_is_redacted_alike(store: vs.Store) -> None:
    card = "4111 1111 1111 1111"
    s, t = _turn(store, f"I read back {card} to you")
    s.record(vs.Interrupted(turn=t, heard=f"I read back {card}", heard_ms=1200))
    cut = s.state.turns[-1]
    assert card not in cut.text and card not in (cut.heard or "")
    assert cut.interrupted and cut.heard_ms == 1200


def test_a_card_cut_part_way_is_still_a_prefix(store: vs.Store) -> None:
    # the turn is stored masked ("[card ending 1111]"); the caller heard half the number
    s, t = _turn(store, "Your card 4111 1111 1111 1111 is on file")
    s.record(vs.Interrupted(turn=t, heard="Your card 4111 1111"))
    cut = s.state.turns[-1]
    assert cut.interrupted and "4111 1111" not in (cut.heard or "")
    with pytest.raises(vs.InvalidEvent, match="prefix"):
        s.record(vs.Interrupted(turn=t, heard="Your cart 4111"))


def test_a_number_masked_only_in_heard_matches_its_digits(store: vs.Store) -> None:
    # 1234567890128010 fails the Luhn check, so the turn keeps it; its first 13 digits pass it,
    # so redaction masks them in heard: "[card ending 0128]" still matches the turn's digits
    s, t = _turn(store, "Order 1234567890128010 ships today")
    s.record(vs.Interrupted(turn=t, heard="Order 1234567890128"))
    assert s.state.turns[-1].heard == "Order [card ending 0128]"
    with pytest.raises(vs.InvalidEvent, match="prefix"):
        s.record(vs.Interrupted(turn=t, heard="Order [card ending 9999]"))


def test_a_mask_in_heard_matches_the_same_mask_or_digits_ending_alike(plain_store: vs.Store) -> None:
    s, t = _turn(plain_store, "Your card [card ending 1111], or 5500 0000 0000 0004, is on file")
    for heard in ("Your card [card ending 1111]", "your card [card ending 1111] or [card ending 0004] is"):
        s.record(vs.Interrupted(turn=t, heard=heard))
        assert s.state.turns[-1].heard == heard
    for heard in ("Your card [card ending 2222]", "Your card [card ending 1111] or [card ending 0005]"):
        with pytest.raises(vs.InvalidEvent, match="prefix"):
            s.record(vs.Interrupted(turn=t, heard=heard))


def test_asterisks_are_punctuation(store: vs.Store) -> None:
    # a model's markdown is not spoken: heard transcripts leave the asterisks out
    s, t = _turn(store, "**Sure!** Let me *check* that")
    s.record(vs.Interrupted(turn=t, heard="Sure! Let me check"))
    with pytest.raises(vs.InvalidEvent, match="prefix"):
        s.record(vs.Interrupted(turn=t, heard="xxSure"))


# --- heard_ms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ms", [-5, -1, True, False, 1.5, 910.0, "910"])
def test_heard_ms_must_be_an_int_of_at_least_zero(store: vs.Store, ms: Any) -> None:
    s, t = _turn(store)
    before = store.events("c1")
    with pytest.raises(vs.InvalidEvent) as err:
        s.record(vs.Interrupted(turn=t, heard="Hello", heard_ms=ms))
    assert "heard_ms" in str(err.value) and repr(ms) in str(err.value)
    if isinstance(ms, int) and not isinstance(ms, bool):
        assert ">= 0" in str(err.value) and "audio_end_ms" in str(err.value)
    assert store.events("c1") == before
    assert _cut(s) == (False, None, None)


@pytest.mark.parametrize("ms", [None, 0, 1, 60_000])
def test_heard_ms_none_or_at_least_zero(store: vs.Store, ms: int | None) -> None:
    s, t = _turn(store)
    s.record(vs.Interrupted(turn=t, heard="Hello", heard_ms=ms))
    assert _cut(s) == (True, "Hello", ms)


def test_record_nowait_refuses_at_once(store: vs.Store) -> None:
    async def go() -> None:
        s = await store.aopen("c1", agent="triage")
        t = await s.arecord(vs.AgentSpoke(TEXT))
        with pytest.raises(vs.InvalidEvent, match="prefix"):
            s.record_nowait(vs.Interrupted(turn=t, heard="Goodbye"))
        with pytest.raises(vs.InvalidEvent, match="heard_ms"):
            await s.arecord(vs.Interrupted(turn=t, heard="Hello", heard_ms=-5))
        await s.aflush()
        assert not s.state.turns[-1].interrupted

    asyncio.run(go())


# --- a second Interrupted of the same turn ---------------------------------------------------------


def test_a_later_interrupted_replaces_the_earlier_one(store: vs.Store) -> None:
    # a pipeline reports a guess at once, then the exact playout position
    s, t = _turn(store)
    s.record(vs.Interrupted(turn=t, heard="Hello there", heard_ms=None))
    assert _cut(s) == (True, "Hello there", None)
    s.record(vs.Interrupted(turn=t, heard="Hello there, how", heard_ms=1430))  # longer than the guess
    assert _cut(s) == (True, "Hello there, how", 1430)
    s.record(vs.Interrupted(turn=t, heard="Hello", heard_ms=610))  # or shorter
    assert _cut(s) == (True, "Hello", 610)
    s.record(vs.Interrupted(turn=t, heard="Hello"))  # whole: heard_ms goes with it
    assert _cut(s) == (True, "Hello", None)
    assert store.load("c1").turns[-1] == s.state.turns[-1]
    assert s.context("openai")[-2:] == [
        {"role": "assistant", "content": "Hello"},
        {"role": "system", "content": "[The caller interrupted the assistant here; they heard only the text above.]"},
    ]
    # and a later one is checked like the first
    with pytest.raises(vs.InvalidEvent, match="prefix"):
        s.record(vs.Interrupted(turn=t, heard="Goodbye", heard_ms=700))
    assert _cut(s) == (True, "Hello", None)


def test_two_in_one_batch_the_last_wins(store: vs.Store) -> None:
    s, t = _turn(store)
    s.record(vs.Interrupted(turn=t, heard="Hel", heard_ms=100), vs.Interrupted(turn=t, heard="Hello", heard_ms=300))
    assert _cut(s) == (True, "Hello", 300)


def test_a_retry_with_the_same_event_id_is_a_no_op(store: vs.Store) -> None:
    s, t = _turn(store)
    ev = vs.Interrupted(turn=t, heard="Hello there", heard_ms=900)
    seq = s.record(ev)
    s.record(vs.Interrupted(turn=t, heard="Hello", heard_ms=500))
    n = len(store.events("c1"))
    assert s.record(ev) == seq  # the retry returns the stored seq and changes nothing
    assert len(store.events("c1")) == n
    assert _cut(s) == (True, "Hello", 500)
    # from another session too (a retry after a crash, say)
    b = store.resume("c1", agent="triage", takeover=True, force=True)
    assert b.record(ev) == seq
    assert _cut(b) == (True, "Hello", 500)
