"""The built-in redactor: payment card numbers, on by default.

In a run of digits (spaces, dashes or dots allowed between groups), any stretch
of 13 to 19 digits that starts and ends at group boundaries and passes the Luhn
check becomes ``[card ending 1234]``; the rest of the run (a CVV or an expiry
read out after the number) is kept. Ordinary long numbers (order ids, phone
numbers) fail the check and survive. A cheap digit count runs first, so
ordinary utterances cost a fraction of a microsecond.

Scope (docs/concepts.md, "What redaction covers"): every string value and every
mapping key of an event's payload, whatever its type (core, plugin or unknown
to this reader), its unknown fields (``extra``) included; not the identifiers
that other events or the store refer to (ids, agent names, tool call ids and
names, slot scopes, packet ids, the tenant, a handoff's target and kind). An
``Interrupted.heard`` that stops inside a number masked in the turn it cuts
has its digits masked too (:func:`mask_heard`, called where the cut turn is
known: ``_checks.prepare``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from ._errors import InvalidEvent
from ._events import (
    JSON,
    JSON_MAP,
    MAX_DEPTH,
    OPT_STR,
    STR,
    AgentSpoke,
    CallEnded,
    CallStarted,
    Event,
    HandedOff,
    HandoffCancelled,
    Interrupted,
    Note,
    OwnerChanged,
    SlotsSet,
    ToolCalled,
    ToolCancelled,
    ToolReturned,
    UnknownEvent,
    UserSpoke,
    field_kinds,
)
from .hookspecs import hookimpl

# A run of digit groups separated by spaces, dashes or dots, not glued to other digits.
_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ .-]+[0-9]+)*(?![0-9])")
_GROUP = re.compile(r"[0-9]+")
_MASKED = re.compile(r"\[card ending [0-9]{4}\]")
_DIGITS = b"0123456789"
MASK_PREFIX = "[card ending "


def _digit_count(text: str) -> int:
    try:
        raw = text.encode()
    except UnicodeEncodeError:  # a lone surrogate: the codec refuses it later, with a typed error
        raw = text.encode("utf-8", "surrogatepass")
    return len(raw) - len(raw.translate(None, _DIGITS))


def _may_hold_card(text: str) -> bool:
    # Cheap pre-check (~0.2 us, far cheaper than the regex): at least 13 ASCII digits.
    return _digit_count(text) >= 13


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
    groups = [(m.start(), m.group(0)) for m in _GROUP.finditer(run)]
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
        out.append(f"{MASK_PREFIX}{digits[-4:]}]")
        pos, i = end, j + 1
    out.append(run[pos:])
    return "".join(out)


def redact_text(text: str) -> str:
    """``text`` with every Luhn-valid card number masked (``text`` itself when there is none)."""
    if not _may_hold_card(text):
        return text
    new = _RUN.sub(_mask_run, text)
    return text if new == text else new


def _redact_value(value: Any, depth: int = 0) -> Any:
    """``value`` with card numbers masked in every string and every mapping key, at any depth.

    Returns ``value`` itself when nothing changed. Anything that is not plain
    data is returned as it is (the codec refuses it later, with a typed error).
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        if depth > MAX_DEPTH:  # the codec's own limit, checked before recursing: never a RecursionError
            raise InvalidEvent(f"nested deeper than {MAX_DEPTH} levels")
        out: dict[Any, Any] = {}
        changed = False
        for k, v in value.items():
            nv = _redact_value(v, depth + 1)
            nk = redact_text(k) if isinstance(k, str) else k
            if nk is not k:
                changed = True
                if nk in out or nk in value:
                    nk = _free_key(nk, out, value)
            elif nv is not v:
                changed = True
            out[nk] = nv
        return out if changed else value
    if isinstance(value, (list, tuple)):
        if depth > MAX_DEPTH:
            raise InvalidEvent(f"nested deeper than {MAX_DEPTH} levels")
        items = [_redact_value(v, depth + 1) for v in value]
        if any(n is not v for n, v in zip(items, value, strict=True)):
            return items
        return value
    return value


def _free_key(key: str, out: Mapping[Any, Any], original: Mapping[Any, Any]) -> str:
    """Two keys masked alike (two cards ending the same): the later one gets `` (2)``, `` (3)``..."""
    n = 2
    while f"{key} ({n})" in out or f"{key} ({n})" in original:
        n += 1
    return f"{key} ({n})"


# Per class: the payload fields to redact, as (name, "text" | "data"). Identifiers and
# references are left alone: masking them would break what refers to them.
_CORE: dict[type[Event], tuple[tuple[str, str], ...]] = {
    CallStarted: (("meta", "data"),),
    UserSpoke: (("text", "text"), ("language", "text")),
    AgentSpoke: (("text", "text"),),
    Note: (("text", "text"),),
    Interrupted: (("heard", "text"),),
    ToolCalled: (("arguments", "data"),),
    ToolReturned: (("result", "data"), ("error", "text")),
    ToolCancelled: (("reason", "text"),),
    SlotsSet: (("values", "data"),),
    HandedOff: (("reason", "text"), ("summary", "text"), ("data", "data")),
    HandoffCancelled: (),
    OwnerChanged: (),
    CallEnded: (("reason", "text"),),
    UnknownEvent: (("fields", "data"),),
}
NOT_REDACTED: dict[type[Event], tuple[str, ...]] = {
    CallStarted: ("tenant",),
    Interrupted: ("turn",),
    ToolCalled: ("call_id", "name"),
    ToolReturned: ("call_id",),
    ToolCancelled: ("call_id",),
    SlotsSet: ("scope",),
    HandedOff: ("to_agent", "kind", "packet_id"),
    HandoffCancelled: ("packet_id",),
    OwnerChanged: ("owner", "packet_id"),
    UnknownEvent: ("type_name",),
}
"""The payload fields of core types that are identifiers or references, and not masked
(besides every event's ``id``, ``agent`` and ``at``)."""

_PLAN: dict[type[Event], tuple[tuple[str, str], ...]] = dict(_CORE)


def _plan(cls: type[Event]) -> tuple[tuple[str, str], ...]:
    """A plugin's event type: every text field and every data field."""
    plan = _PLAN.get(cls)
    if plan is None:
        try:
            kinds = field_kinds(cls)
        except TypeError:  # not a valid event class: the codec refuses it, with a typed error
            kinds = {}
        plan = tuple(
            (name, "text" if kind in (STR, OPT_STR) else "data")
            for name, kind in kinds.items()
            if kind in (STR, OPT_STR, JSON, JSON_MAP)
        )
        _PLAN[cls] = plan
    return plan


def redact_or_same(event: Event) -> Event:
    """:func:`redact_event`, returning the event itself when nothing changed.

    The record path calls this for every utterance: an event with one text
    field (or a UserSpoke) and fewer than 13 digits returns at once.
    """
    cls = event.__class__
    if cls is UserSpoke or cls is AgentSpoke or cls is Note:
        value = event.text  # type: ignore[attr-defined]
        if value.__class__ is str and not event.extra:
            try:
                raw = value.encode()  # the pre-check, inline: it runs for every utterance
            except UnicodeEncodeError:  # a lone surrogate: the codec refuses it later, typed
                raw = value.encode("utf-8", "surrogatepass")
            if len(raw) - len(raw.translate(None, _DIGITS)) < 13:
                if cls is not UserSpoke:
                    return event
                lang = event.language  # type: ignore[attr-defined]
                if lang is None or (lang.__class__ is str and len(lang) < 13):
                    return event
    return redact_event(event) or event


@hookimpl
def redact_event(event: Event) -> Event | None:
    """Mask payment card numbers in every string value and mapping key of the event's payload."""
    changes: dict[str, Any] = {}
    for name, how in _plan(type(event)):
        value = getattr(event, name, None)
        if value is None:
            continue
        if how == "text":
            if value.__class__ is not str:
                continue  # validation reports it later
            new = redact_text(value)
        else:
            new = _redact_data(event, name, value)
        if new is not value:
            changes[name] = new
    extra = event.extra
    if extra:
        new_extra = _redact_data(event, "extra", extra)
        if new_extra is not extra:
            changes["extra"] = new_extra
    return attrs.evolve(event, **changes) if changes else None


def _redact_data(event: Event, name: str, value: Any) -> Any:
    try:
        return _redact_value(value)
    except InvalidEvent as exc:  # too deep: say where
        raise InvalidEvent(f"{type(event).TYPE}.{name}: {exc}") from None


def mask_heard(heard: str, turn: str) -> str:
    """``heard`` with the digits the caller heard of a number masked in ``turn`` masked too.

    ``turn`` is the cut turn's text as stored (already redacted). ``heard`` is
    matched against it ignoring case, whitespace and punctuation; where the
    turn holds ``[card ending 1234]`` and ``heard`` holds digits (a number cut
    off part way, which the Luhn check cannot recognise), those digits become
    the turn's mask, so ``heard`` stays a prefix of the stored turn. Should
    ``heard`` part from the turn's text before a masked number, every run of 4
    or more digits after that point is masked the same way (``_checks`` then
    refuses it as not a prefix, and its error quotes the masked text).
    """
    if MASK_PREFIX not in turn or not heard:
        return heard
    masks = {m.start(): m for m in _MASKED.finditer(turn)}
    if not masks:
        return heard
    out: list[str] = []
    emitted = 0  # heard[:emitted] is in out
    i = j = 0
    n, m = len(turn), len(heard)
    while True:
        while j < n and j not in masks and not turn[j].isalnum():
            j += 1
        while i < m and not heard[i].isalnum() and not (heard[i] == "[" and _MASKED.match(heard, i)):
            i += 1
        if i >= m:
            break  # all of heard follows the turn
        mask = masks.get(j)
        if mask is not None:
            already = _MASKED.match(heard, i)
            if already is not None:  # the whole number was heard, and masked already
                i, j = already.end(), mask.end()
                continue
            run = _RUN.match(heard, i) if heard[i] in "0123456789" else None
            if run is None:
                return _mask_rest(heard, i, out, emitted, turn, j, masks)
            out.append(heard[emitted:i])
            out.append(mask.group(0))
            emitted = i = run.end()
            j = mask.end()
            continue
        if j >= n or heard[i].lower() != turn[j].lower():
            return _mask_rest(heard, i, out, emitted, turn, j, masks)
        i += 1
        j += 1
    out.append(heard[emitted:])
    return "".join(out)


def _mask_rest(
    heard: str, i: int, out: list[str], emitted: int, turn: str, j: int, masks: Mapping[int, re.Match[str]]
) -> str:
    """``heard`` parted from the turn at ``i``: mask its runs of 4+ digits if a masked number lies ahead."""
    ahead = [pos for pos in masks if pos >= j]
    if not ahead:
        out.append(heard[emitted:])
        return "".join(out)
    label = masks[min(ahead)].group(0)

    def sub(match: re.Match[str]) -> str:
        run = match.group(0)
        return label if sum(len(g) for g in _GROUP.findall(run)) >= 4 else run

    out.append(heard[emitted:i])
    out.append(_RUN.sub(sub, heard[i:]))
    return "".join(out)
