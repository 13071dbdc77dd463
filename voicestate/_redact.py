"""The built-in redactor: payment card numbers, on by default.

A run of 13 to 19 digits (spaces or dashes allowed between them) that passes
the Luhn check becomes ``[card ending 1234]``. Ordinary long numbers (order
ids, phone numbers) fail the check and survive. The pre-check is one regex
search per text field, so the in-process record budget holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from ._events import (
    AgentSpoke,
    CallStarted,
    Event,
    HandedOff,
    Interrupted,
    Note,
    SlotsSet,
    ToolCalled,
    ToolReturned,
    UserSpoke,
)
from .hookspecs import hookimpl

# Digits with optional single spaces/dashes between them, 13-19 digits in all,
# not glued to other digits.
_CANDIDATE = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")
_DIGITS = b"0123456789"


def _may_hold_card(text: str) -> bool:
    # Cheap pre-check (~0.2 us, far cheaper than the regex): at least 13 ASCII digits.
    raw = text.encode()
    return len(raw) - len(raw.translate(None, _DIGITS)) >= 13


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _mask(match: re.Match[str]) -> str:
    digits = match.group(0).replace(" ", "").replace("-", "")
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return f"[card ending {digits[-4:]}]"
    return match.group(0)


def redact_text(text: str) -> str:
    """``text`` with every Luhn-valid card number masked."""
    if not _may_hold_card(text):
        return text
    return _CANDIDATE.sub(_mask, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    return value


_TEXT_FIELDS: dict[type[Event], tuple[str, ...]] = {
    UserSpoke: ("text",),
    AgentSpoke: ("text",),
    Note: ("text",),
    Interrupted: ("heard",),
    HandedOff: ("reason", "summary"),
}
_DATA_FIELDS: dict[type[Event], tuple[str, ...]] = {
    ToolCalled: ("arguments",),
    ToolReturned: ("result", "error"),
    SlotsSet: ("values",),
    CallStarted: ("meta",),
}


@hookimpl
def redact_event(event: Event) -> Event | None:
    """Mask payment card numbers in what was said and in tool and slot data."""
    cls = type(event)
    names = _TEXT_FIELDS.get(cls)
    changes: dict[str, Any] = {}
    if names is not None:
        for name in names:
            value = getattr(event, name)
            if value.__class__ is not str:
                continue  # validation reports it later
            raw = value.encode()  # the pre-check, inline: it runs for every utterance
            if len(raw) - len(raw.translate(None, _DIGITS)) < 13:
                continue
            if _CANDIDATE.search(value) is not None:
                new = _CANDIDATE.sub(_mask, value)
                if new != value:
                    changes[name] = new
    else:
        for name in _DATA_FIELDS.get(cls, ()):
            value = getattr(event, name)
            if value is not None:
                new = _redact_value(value)
                if new != value:
                    changes[name] = new
    return attrs.evolve(event, **changes) if changes else None
