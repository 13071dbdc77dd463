"""The built-in redactor: payment card numbers, on by default.

In a run of digits (spaces or dashes allowed between groups), any stretch of
13 to 19 digits that starts and ends at group boundaries and passes the Luhn
check becomes ``[card ending 1234]``; the rest of the run (a CVV or an expiry
read out after the number) is kept. Ordinary long numbers (order ids, phone
numbers) fail the check and survive. A cheap digit count runs first, so
ordinary utterances cost a fraction of a microsecond.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from ._events import (
    AgentSpoke,
    CallEnded,
    CallStarted,
    Event,
    HandedOff,
    Interrupted,
    Note,
    SlotsSet,
    ToolCalled,
    ToolCancelled,
    ToolReturned,
    UserSpoke,
)
from .hookspecs import hookimpl

# A run of digit groups separated by spaces or dashes, not glued to other digits.
_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -]+[0-9]+)*(?![0-9])")
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


def _mask_run(match: re.Match[str]) -> str:
    run = match.group(0)
    groups = [(m.start(), m.group(0)) for m in re.finditer(r"[0-9]+", run)]
    if sum(len(g) for _, g in groups) < 13:
        return run
    out, pos, i = [], 0, 0
    while i < len(groups):
        # the longest Luhn-valid stretch of whole groups starting at group i
        found = None
        digits = ""
        for j in range(i, len(groups)):
            digits += groups[j][1]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_ok(digits):
                found = (j, digits)
        if found is None:
            i += 1
            continue
        j, digits = found
        begin, end = groups[i][0], groups[j][0] + len(groups[j][1])
        out.append(run[pos:begin])
        out.append(f"[card ending {digits[-4:]}]")
        pos, i = end, j + 1
    out.append(run[pos:])
    return "".join(out)


def redact_text(text: str) -> str:
    """``text`` with every Luhn-valid card number masked."""
    if not _may_hold_card(text):
        return text
    return _RUN.sub(_mask_run, text)


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
    ToolCancelled: ("reason",),
    CallEnded: ("reason",),
}
_DATA_FIELDS: dict[type[Event], tuple[str, ...]] = {
    ToolCalled: ("arguments",),
    ToolReturned: ("result", "error"),
    SlotsSet: ("values",),
    CallStarted: ("meta",),
}


def redact_or_same(event: Event) -> Event:
    """:func:`redact_event`, returning the event itself when nothing changed.

    The record path calls this for every utterance: a one-text-field event with
    fewer than 13 digits returns at once.
    """
    names = _TEXT_FIELDS.get(event.__class__)
    if names is not None and len(names) == 1:
        value = getattr(event, names[0])
        if value.__class__ is str:
            raw = value.encode()
            if len(raw) - len(raw.translate(None, _DIGITS)) < 13:
                return event
    return redact_event(event) or event


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
            new = _RUN.sub(_mask_run, value)
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
