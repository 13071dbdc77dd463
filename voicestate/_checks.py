"""Pure checks of events about to be recorded: their types, their references to
the call so far, redaction and encoding. Nothing here writes anything."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ._codec import encode_event
from ._config import StoreConfig
from ._errors import InvalidEvent
from ._events import (
    NON_OWNER_TYPES,
    RESERVED_TYPES,
    AgentSpoke,
    Event,
    Interrupted,
    SlotsSet,
    ToolCalled,
    ToolCancelled,
    ToolReturned,
    UserSpoke,
)
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
        if isinstance(ev, UserSpoke) and not ev.final and not config.store_interim:
            continue  # interim transcripts are not stored by default
        if type(ev) in _CHECKED and ev.id not in known:
            check(ev, batch, folder)
        batch.append(ev)
        data = encode_event(ev, agent)
        if len(data) > config.max_event_bytes:
            raise config.too_large(ev, len(data))
        out.append((ev, data))
    return out


def check(ev: Event, batch: Sequence[Event], folder: Folder) -> None:
    """Semantic checks against the call so far (and earlier events of the same batch)."""
    if isinstance(ev, Interrupted):
        ref = ev.turn
        if folder.agent_turn(ref) is None and not any(
            type(b) is AgentSpoke and (ref is None or ref == b.id) for b in batch
        ):
            raise InvalidEvent(
                f"Interrupted(turn={ref!r}) names no agent turn of this call; "
                "pass the seq that record(AgentSpoke(...)) returned, or the AgentSpoke itself"
            )
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


def prepare_outside(events: Sequence[Event], config: StoreConfig) -> list[Item]:
    """Validate, redact and encode a non-owner write (``store.append``)."""
    if not events:
        raise InvalidEvent("append() needs at least one event")
    items: list[Item] = []
    for ev in events:
        if not isinstance(ev, NON_OWNER_TYPES):
            raise InvalidEvent(
                f"store.append() takes Note, ToolReturned, ToolCancelled and CallEnded; "
                f"{type(ev).__name__} must be recorded by the call's owner"
            )
        if config.redact is not None:
            ev = config.redact(ev)
        data = encode_event(ev)
        if len(data) > config.max_event_bytes:
            raise config.too_large(ev, len(data))
        items.append((ev, data))
    if len({ev.id for ev, _ in items}) != len(items):
        raise InvalidEvent("the same event id appears twice in one append() call")
    return items
