"""Listing calls: ``CallInfo`` and the filters of ``store.calls``."""

from __future__ import annotations

import time
from typing import Literal

import attrs

from ._backend import CallMeta
from ._errors import ConfigError


@attrs.frozen
class CallInfo:
    """One call as ``store.calls()`` lists it, from the deciding tier's metadata (no log read).

    Times are ``time.time()`` seconds. ``lease_until`` is when the owner's lease
    runs out (0: none); ``stale`` is true for an active call whose lease has.
    """

    call_id: str
    status: Literal["active", "ended"]
    owner: str | None
    epoch: int
    seq: int
    started_at: float
    last_active_at: float
    lease_until: float
    pending_to: str | None

    @property
    def stale(self) -> bool:
        return self.status == "active" and self.lease_until <= time.time()

    @classmethod
    def from_meta(cls, call_id: str, meta: CallMeta) -> CallInfo:
        return cls(
            call_id,
            "ended" if meta.ended else "active",
            meta.owner,
            meta.epoch,
            meta.seq,
            meta.started_at,
            meta.active_at,
            meta.lease_until,
            meta.pending_to,
        )


def check_filters(status: str | None, owner: str | None, stale: bool | None, limit: int, after: str | None) -> None:
    if owner is not None and not isinstance(owner, str):
        raise ConfigError(f"calls(owner=...) is an agent name, not {type(owner).__name__}")
    if after is not None and not isinstance(after, str):
        raise ConfigError(f"calls(after=...) is the last call id of the previous page, not {type(after).__name__}")
    if stale not in (None, True, False):
        raise ConfigError(f"calls(stale=...) is True, False or None, not {stale!r:.40}")
    if status not in (None, "active", "ended"):
        raise ConfigError(f"calls(status=...) is 'active', 'ended' or None, not {status!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"calls(limit=...) is a positive int, not {limit!r}")


def wanted(info: CallInfo, status: str | None, owner: str | None, stale: bool | None) -> bool:
    return (
        (status is None or info.status == status)
        and (owner is None or info.owner == owner)
        and (stale is None or info.stale == stale)
    )
