"""Identifiers: fast unique event ids (a random per-process prefix and a counter),
packet ids, and the checks of call ids and agent names."""

from __future__ import annotations

import itertools
import os
import secrets

from ._errors import ConfigError

_prefix = secrets.token_hex(6)
_counter = itertools.count(1)


def _reseed() -> None:
    # A forked child must not reuse its parent's prefix, or ids would collide.
    global _prefix, _counter
    _prefix = secrets.token_hex(6)
    _counter = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_event_id() -> str:
    """A new id, unique across processes with overwhelming probability (~1 µs cheaper than uuid4)."""
    return f"{_prefix}-{next(_counter):x}"


def new_packet_id() -> str:
    """32 hex characters (16 random bytes): the token carries them raw."""
    return secrets.token_hex(16)


def check_call_id(call_id: object) -> str:
    """``call_id`` if it is a valid call id, else ConfigError saying what a call id is."""
    if not isinstance(call_id, str) or not 1 <= len(call_id) <= 128 or not call_id.isprintable():
        raise ConfigError(f"call id {call_id!r}: use 1 to 128 printable characters")
    if call_id.startswith("{") or call_id.startswith("vs1."):
        raise ConfigError(f"call id {call_id!r} may not start with '{{' or 'vs1.' (those are packets and tokens)")
    return call_id


def check_name(name: object, what: str = "agent name") -> str:
    """``name`` if it is a valid agent name (1 to 128 printable characters), else ConfigError."""
    if not isinstance(name, str) or not 1 <= len(name) <= 128 or not name.isprintable():
        raise ConfigError(f"{what} {name!r}: use 1 to 128 printable characters")
    return name
