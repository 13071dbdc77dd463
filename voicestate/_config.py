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

    def __attrs_post_init__(self) -> None:
        if not self.packet_ttl > 0:
            raise ConfigError(f"packet_ttl must be positive seconds, got {self.packet_ttl!r}")
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
