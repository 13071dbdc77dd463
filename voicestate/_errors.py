"""The error hierarchy: every error the library raises derives from VoiceStateError."""

from __future__ import annotations

from typing import Literal

PacketReason = Literal[
    "malformed",
    "bad_signature",
    "unknown_key",
    "expired",
    "wrong_target",
    "chain_mismatch",
    "unsupported_version",
    "too_large",
]

PACKET_REASONS: tuple[PacketReason, ...] = (
    "malformed",
    "bad_signature",
    "unknown_key",
    "expired",
    "wrong_target",
    "chain_mismatch",
    "unsupported_version",
    "too_large",
)


class VoiceStateError(Exception):
    """Base class of every voicestate error."""


class CallNotFound(VoiceStateError, LookupError):
    """No call with this id exists in the store."""


class OwnershipError(VoiceStateError):
    """The call cannot be opened, redeemed or taken over as asked."""


class FencedError(OwnershipError):
    """A write from an agent that no longer owns the call (or after the call ended).

    Nothing of the rejected write is stored in any tier.
    """


class SeqConflict(VoiceStateError):
    """The call's log moved on while a conditional write was in flight.

    Sessions retry on their own; this escapes only when retries are exhausted.
    """

    def __init__(self, message: str, *, expected: int, actual: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class PacketError(VoiceStateError, ValueError):
    """A handoff packet or token could not be accepted; ``reason`` says why."""

    def __init__(self, reason: PacketReason, message: str) -> None:
        if reason not in PACKET_REASONS:  # pragma: no cover - programming error
            raise ValueError(f"unknown packet error reason {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason: PacketReason = reason


class HandoffVetoed(VoiceStateError):
    """A ``prepare_handoff`` hook refused the handoff."""


class BackendUnavailable(VoiceStateError, ConnectionError):
    """A storage tier could not be reached or failed mid-operation."""


class UnknownBackend(VoiceStateError, ValueError):
    """No backend is registered for a store URL's scheme."""


class ConfigError(VoiceStateError, ValueError):
    """A store URL, option or key specification is invalid."""


class InvalidEvent(VoiceStateError, ValueError):
    """An event (or stored event bytes) is malformed, of a future schema, or not allowed here."""


class IntegrityError(VoiceStateError):
    """Stored events do not match their hash chain: corruption or tampering."""


class InvalidArgument(ConfigError, TypeError):
    """An argument of the wrong type (e.g. ``resume(123)``); the message says what to pass.

    A ConfigError, and a TypeError too, so code that caught the TypeError this
    used to be still catches it.
    """
