"""Pure checks of events about to be recorded: their types, their references to
the call so far, redaction and encoding. Nothing here writes anything."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs

from ._codec import encode_event
from ._config import StoreConfig
from ._errors import InvalidEvent
from ._events import (
    RESERVED_TYPES,
    AgentSpoke,
    Event,
    Interrupted,
    SlotsSet,
    ToolCalled,
    ToolCancelled,
    ToolReturned,
    UserSpoke,
    check_changes,
)
from ._redact import mask_heard
from ._state import Folder

Item = tuple[Event, bytes]
"""An event ready to append: the event as recorded (redacted) and its canonical bytes."""

_CHECKED = frozenset({Interrupted, ToolCalled, ToolReturned, ToolCancelled, SlotsSet})


def prepare(
    events: Sequence[Event],
    *,
    folder: Folder,
    known: Collection[str],
    config: StoreConfig,
    agent: str,
    internal: bool = False,
) -> list[Item]:
    """Validate (types, references, reserved events), redact and encode the owner's events.

    ``known`` holds the ids already stored: a retry of a stored event is a no-op,
    not an error, so its references are not checked again. ``internal`` lets the
    store's own events through (``CallStarted``, ``HandedOff``, ...).
    """
    if not events:
        raise InvalidEvent("record() needs at least one event")
    batch: list[Event] = []
    out = []
    redact = config.redact
    for ev in events:
        if not isinstance(ev, Event):
            raise InvalidEvent(f"record() takes events (vs.UserSpoke(...), ...), not {type(ev).__name__}")
        if not internal and isinstance(ev, RESERVED_TYPES):
            raise InvalidEvent(
                f"{type(ev).__name__} is written by the store: use open(), handoff(), cancel_handoff() or resume()"
            )
        if batch and any(b.id == ev.id for b in batch):
            raise InvalidEvent(f"event id {ev.id!r} appears twice in one record() call")
        if redact is not None:
            ev = redact(ev)
        if isinstance(ev, UserSpoke) and ev.final is False and not config.store_interim:
            continue  # interim transcripts are not stored by default
        if type(ev) is SlotsSet and not isinstance(ev.scope, str):
            raise InvalidEvent(f"SlotsSet scope {ev.scope!r:.60}: use 'call' (the default) or 'agent:<name>'")
        data = encode_event(ev, agent)  # validates every field first: the checks below may rely on their types
        if type(ev).STATE is not None:
            check_changes(ev)
        if redact is not None and type(ev) is Interrupted:
            ev, data = _mask_heard(ev, data, batch, folder, agent)
        if type(ev) in _CHECKED and ev.id not in known:
            check(ev, batch, folder)
        batch.append(ev)
        if len(data) > config.max_event_bytes:
            raise config.too_large(ev, len(data))
        out.append((ev, data))
    return out


def _mask_heard(ev: Interrupted, data: bytes, batch: Sequence[Event], folder: Folder, agent: str) -> Item:
    """Redaction of ``heard`` that needs the cut turn's text (see ``_redact.mask_heard``)."""
    if not ev.heard:
        return ev, data
    turn = _cut_turn_text(ev.turn, batch, folder)
    if turn is None:
        return ev, data  # names no turn: check() says so
    heard = mask_heard(ev.heard, turn)
    if heard == ev.heard:
        return ev, data
    ev = attrs.evolve(ev, heard=heard)
    return ev, encode_event(ev, agent)


def _cut_turn_text(ref: int | str | None, batch: Sequence[Event], folder: Folder) -> str | None:
    """The (redacted) text of the agent turn an Interrupted names: earlier in its batch, or folded."""
    if not isinstance(ref, int):  # a seq names a stored turn only
        for b in reversed(batch):
            if type(b) is AgentSpoke and (ref is None or ref == b.id):
                return b.text
    turn = folder.agent_turn(ref)
    return None if turn is None else turn.text


def check(ev: Event, batch: Sequence[Event], folder: Folder) -> None:
    """Semantic checks against the call so far (and earlier events of the same batch)."""
    if isinstance(ev, Interrupted):
        # A second Interrupted of the same turn is accepted and replaces the first (the fold
        # keeps the latest): a guess first, the exact playout position later. A retry with
        # the same event id never gets here (it is a no-op).
        ref = ev.turn
        text = _cut_turn_text(ref, batch, folder)
        if text is None:
            raise InvalidEvent(
                f"Interrupted(turn={ref!r}) names no agent turn of this call; "
                "pass the seq that record(AgentSpoke(...)) returned, or the AgentSpoke itself"
            )
        _check_heard(ev, text)
    elif isinstance(ev, ToolCalled):
        cid = ev.call_id
        if folder.tool(cid) is not None or any(isinstance(b, ToolCalled) and b.call_id == cid for b in batch):
            raise InvalidEvent(f"tool call id {cid!r} is already used in this call")
    elif isinstance(ev, (ToolReturned, ToolCancelled)):
        cid = ev.call_id
        if folder.tool(cid) is None and not any(isinstance(b, ToolCalled) and b.call_id == cid for b in batch):
            raise InvalidEvent(f"no tool call {cid!r} in this call: record ToolCalled({cid!r}, ...) first")
    elif isinstance(ev, SlotsSet):
        scope = ev.scope
        if scope != "call" and not (scope.startswith("agent:") and len(scope) > 6):
            raise InvalidEvent(f"SlotsSet scope {scope!r}: use 'call' or 'agent:<name>'")


def _check_heard(ev: Interrupted, text: str) -> None:
    """``heard_ms`` is None or an int >= 0; ``heard`` is a prefix of ``text``, the cut turn's."""
    heard, ms = ev.heard, ev.heard_ms
    if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int) or ms < 0):
        raise InvalidEvent(
            f"Interrupted.heard_ms must be None or an int >= 0 (milliseconds of the turn's audio played "
            f"before the cut, OpenAI's audio_end_ms), not {ms!r}"
        )
    if not isinstance(heard, str):
        raise InvalidEvent(f"Interrupted.heard must be the text the caller heard (a str), not {type(heard).__name__}")
    if text.startswith(heard) or _heard_prefix(heard, text):
        return
    shown = text if len(text) <= 80 else text[:77] + "..."
    raise InvalidEvent(
        f"Interrupted.heard {heard!r} is not a prefix of the turn it cuts ({shown!r}): heard must be the "
        "start of that turn's text (compared ignoring case, whitespace and punctuation)"
    )


def _letters(text: str) -> str:
    """``text`` for the prefix comparison: its letters and digits, case-folded, accents dropped."""
    import unicodedata  # the slow path only: a heard that is not literally a prefix

    return "".join(ch for ch in unicodedata.normalize("NFKD", text.casefold()) if ch.isalnum())


def _heard_prefix(heard: str, text: str) -> bool:
    """``heard`` is a prefix of ``text``, ignoring case, whitespace and punctuation.

    A number redaction masked in ``heard`` (``[card ending 1234]``) matches the
    same mask in ``text`` or digits ending in those four: redaction masks a
    number in ``heard`` by itself (its digits may pass the Luhn check where the
    whole number in the turn does not).
    """
    import re  # the slow path only, like _letters

    from ._redact import MASK_PREFIX

    masked = re.compile(re.escape(MASK_PREFIX) + r"([0-9]{4})\]")
    if MASK_PREFIX not in heard:
        return _letters(text).startswith(_letters(heard))
    parts, pos = [], 0
    for m in masked.finditer(heard):
        last4 = m.group(1)
        parts += [re.escape(_letters(heard[pos : m.start()])), f"(?:{_letters(m.group(0))}|[0-9]*{last4})"]
        pos = m.end()
    parts.append(re.escape(_letters(heard[pos:])))
    return re.match("".join(parts), _letters(text)) is not None


def prepare_outside(events: Sequence[Event], config: StoreConfig) -> list[Item]:
    """Validate, redact and encode a non-owner write (``store.append``)."""
    if not events:
        raise InvalidEvent("append() needs at least one event")
    items: list[Item] = []
    for ev in events:
        if not (isinstance(ev, Event) and type(ev).OUTSIDE):
            raise InvalidEvent(
                f"store.append() takes Note, ToolReturned, ToolCancelled, CallEnded and plugin events "
                f"marked OUTSIDE = True; {type(ev).__name__} must be recorded by the call's owner"
            )
        if config.redact is not None:
            ev = config.redact(ev)
        data = encode_event(ev)
        if type(ev).STATE is not None:
            check_changes(ev)
        if len(data) > config.max_event_bytes:
            raise config.too_large(ev, len(data))
        items.append((ev, data))
    if len({ev.id for ev, _ in items}) != len(items):
        raise InvalidEvent("the same event id appears twice in one append() call")
    return items
