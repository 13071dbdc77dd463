"""Plain data for humans and JSON: events by their full field names, CallState,
and the one cattrs converter (used by the CLI, packets shown as JSON, integrations)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

from ._codec import BASE_KEYS, TYPE_KEY, event_from_map
from ._errors import InvalidEvent
from ._events import BASE_FIELDS, Event, UnknownEvent, event_class
from ._state import CallState


def event_to_dict(event: Event) -> dict[str, Any]:
    """A readable dict: ``type`` plus every field by its full name."""
    out: dict[str, Any] = {"type": event.TYPE if not isinstance(event, UnknownEvent) else event.type_name}
    if isinstance(event, UnknownEvent):
        out.update(id=event.id, at=event.at, agent=event.agent, seq=event.seq, fields=dict(event.fields))
    else:
        for f in attrs.fields(type(event)):
            if f.name in ("chain", "extra"):
                continue
            out[f.name] = getattr(event, f.name)
        if event.extra:
            out["extra"] = dict(event.extra)
    if event.chain is not None:
        out["chain"] = event.chain.hex()
    return out


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """The inverse of :func:`event_to_dict` (validated like stored bytes)."""
    data = dict(data)
    type_name = data.pop("type", None)
    if not isinstance(type_name, str):
        raise InvalidEvent("an event dict needs a string 'type'")
    seq = data.pop("seq", None)
    chain_hex = data.pop("chain", None)
    raw: dict[str, Any] = {TYPE_KEY: type_name}
    cls = event_class(type_name)
    if cls is None:
        raw.update(data.pop("fields", {}) or {})
    else:
        raw.update(data.pop("extra", {}) or {})
    for key, attr in BASE_KEYS.items():
        if attr in data:
            raw[key] = data.pop(attr)
    if cls is not None:
        for name in list(data):
            if name not in BASE_FIELDS:
                raw[name] = data.pop(name)
    if data:
        raise InvalidEvent(f"{type_name}: unknown keys {sorted(data)}")
    chain = bytes.fromhex(chain_hex) if isinstance(chain_hex, str) else None
    return event_from_map(raw, seq=seq, chain=chain)


def make_converter() -> cattrs.Converter:
    """The one converter: events (by type), CallState and packets to plain data and back."""
    conv = cattrs.Converter()
    conv.register_unstructure_hook_func(lambda t: isinstance(t, type) and issubclass(t, Event), event_to_dict)
    conv.register_structure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, Event), lambda d, _t: event_from_dict(d)
    )
    conv.register_unstructure_hook(bytes, lambda b: b.hex())
    conv.register_structure_hook(bytes, lambda s, _t: bytes.fromhex(s))

    def state_to_dict(st: CallState) -> dict[str, Any]:
        return {
            "call_id": st.call_id,
            "tenant": st.tenant,
            "owner": st.owner,
            "epoch": st.epoch,
            "seq": st.seq,
            "status": st.status,
            "chain": st.chain.hex(),
            "meta": dict(st.meta),
            "turns": [t._asdict() for t in st.turns],
            "tools": {k: conv.unstructure(v) for k, v in st.tools.items()},
            "slots": dict(st.slots),
            "private_slots": {k: dict(v) for k, v in st.private_slots.items()},
            "plugin_state": {k: dict(v) for k, v in st.plugin_state.items()},
            "handoffs": [event_to_dict(h) for h in st.handoffs],
            "notes": [event_to_dict(n) for n in st.notes],
            "pending_handoff": None if st.pending_handoff is None else st.pending_handoff.packet_id,
        }

    conv.register_unstructure_hook(CallState, state_to_dict)
    return conv
