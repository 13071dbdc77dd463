"""StoreConfig: the options of one store, validated once by ``open_store``."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ._errors import CallNotFound, ConfigError, InvalidEvent
from ._events import Event
from ._keys import KeyRing
from ._packet import DEFAULT_SKEW


@attrs.frozen(kw_only=True)
class StoreConfig:
    """Everything a store and its sessions decide by; durations are seconds.

    ``redact`` is the composed ``redact_event`` chain (None: off for this store).
    ``lease``: how long an owner's lease lasts unless renewed (by its appends, by
    ``heartbeat()``, and in the background for async sessions). ``retention``: how
    long an ended call is kept; ``max_call_age``: how long a call that never ended
    is kept after it started. ``require_packet``: a pending handoff is redeemed only
    with its signed packet or token. ``snapshot_every``: an owner writes a snapshot
    of the fold this many events after the last one (and at every handoff), where
    the deciding tier keeps snapshots (0: never; resumes then replay the log).
    """

    keys: KeyRing
    tenant: str | None = None
    packet_ttl: float = 120.0
    skew: float = DEFAULT_SKEW
    retries: int = 64
    barrier_timeout: float = 30.0
    behind_queue: int = 10_000
    store_interim: bool = False
    redact: Callable[[Event], Event] | None = None
    max_event_bytes: int = 1024 * 1024
    lease: float = 10.0
    retention: float = 7 * 86400.0
    max_call_age: float = 86400.0
    require_packet: bool = False
    snapshot_every: int = 500

    def __attrs_post_init__(self) -> None:
        for name in ("packet_ttl", "lease", "retention", "max_call_age", "skew", "barrier_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} is seconds (an int or a float), not {type(value).__name__} {value!r}")
            if not value > 0 and not (name == "skew" and value == 0):
                raise ConfigError(f"{name} must be positive seconds, got {value!r}")
        for name in ("retries", "behind_queue", "snapshot_every", "max_event_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an int, not {type(value).__name__} {value!r}")
        if self.retries < 1:
            raise ConfigError(f"retries must be at least 1, got {self.retries!r}")
        if self.snapshot_every < 0:
            raise ConfigError(f"snapshot_every is a number of events (0: no snapshots), got {self.snapshot_every!r}")
        if self.max_event_bytes < 1024:
            raise ConfigError(f"max_event_bytes must be at least 1024, got {self.max_event_bytes!r}")
        if self.behind_queue < 1:
            raise ConfigError(f"behind_queue must be at least 1, got {self.behind_queue!r}")

    def check_tenant(self, call_id: str, tenant: str | None) -> None:
        """With a tenant set, a call of another tenant does not exist for this store."""
        if self.tenant is not None and tenant != self.tenant:
            raise CallNotFound(f"no call {call_id!r} for tenant {self.tenant!r}")

    def too_large(self, ev: Event, size: int) -> InvalidEvent:
        return InvalidEvent(
            f"{type(ev).__name__} {ev.id!r} encodes to {size:,} bytes, over this store's limit of "
            f"{self.max_event_bytes:,} (open_store(max_event_bytes=...)); store large payloads elsewhere "
            "and record a reference"
        )
