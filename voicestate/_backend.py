"""The backend protocol: what a storage tier must do, and nothing more.

A backend stores, per call, a gapless list of :class:`StoredEvent` (bytes it
never decodes) and a little metadata: the seq, the epoch and the chain head
(derived from the events), and what the writer sets with each append
(:class:`MetaUpdate`: owner, pending handoff target, lease, expiry), which is
what listing calls and telling a dead owner from a live one need. Everything
with meaning (ownership, handoffs, folding) lives above it. Every method has an
async twin named with an ``a`` prefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple, Protocol, runtime_checkable

import attrs


class StoredEvent(NamedTuple):
    """An event as every tier stores it: its encoded bytes, chain value and position.

    ``epoch`` is the call's epoch once this event is applied and ``final`` is true
    for ``CallEnded``: backends keep the call's metadata from them without
    decoding anything.
    """

    seq: int
    id: str
    data: bytes
    chain: bytes
    epoch: int
    final: bool


@attrs.frozen
class CallMeta:
    """The deciding tier's metadata for one call: one small read.

    ``seq``, ``epoch``, ``head`` and ``ended`` follow the events; the rest is
    what the last :class:`MetaUpdate` set (times are the writer's ``time.time()``;
    ``lease_until`` 0 means no live lease, ``expires_at`` None never expires).
    """

    seq: int
    epoch: int
    head: bytes
    ended: bool
    owner: str | None = None
    pending_to: str | None = None
    lease_until: float = 0.0
    started_at: float = 0.0
    active_at: float = 0.0
    expires_at: float | None = None
    tenant: str | None = None


@attrs.frozen
class MetaUpdate:
    """What an append sets in the call's metadata besides what its events imply.

    The writer knows the meaning; the backend stores the values as given (with
    ``ended``: no owner, no pending target, no lease), except that within one epoch
    (the append does not change it) the lease only grows: ``max(stored,
    lease_until)``, so an outside writer's copy read before a renewal never
    shortens it. ``tenant`` and ``at`` on
    the creating append also set the call's tenant and ``started_at``; every
    append sets ``active_at = at``. ``lapsed_by`` is a further condition (a
    takeover's): the append is a ``conflict`` unless the stored lease ran out by
    then (``lease_until <= lapsed_by``).
    """

    owner: str | None
    pending_to: str | None
    lease_until: float
    expires_at: float | None
    at: float
    tenant: str | None = None
    lapsed_by: float | None = None

    @classmethod
    def keep(cls, meta: CallMeta, at: float, *, expires_at: float | None = None) -> MetaUpdate:
        """An outside writer's update: everything as it was (a new ``expires_at`` if given)."""
        return cls(
            meta.owner,
            meta.pending_to,
            meta.lease_until,
            meta.expires_at if expires_at is None else expires_at,
            at,
            meta.tenant,
        )


class Snapshot(NamedTuple):
    """The fold of a call at ``seq`` (opaque ``data``), with that seq's chain value."""

    seq: int
    chain: bytes
    data: bytes


class AppendResult(NamedTuple):
    """Outcome of a conditional append.

    ``ok``: every event was stored. ``conflict``: the call's seq (or, for owner
    writes, its epoch or ended flag) did not match, and ``meta`` is the current
    metadata (``None`` when the call does not exist). ``duplicate``: some event
    ids are already stored (``duplicates`` maps them to their seqs); nothing was
    written.
    """

    status: Literal["ok", "conflict", "duplicate"]
    meta: CallMeta | None = None
    duplicates: Mapping[str, int] = {}


OK = AppendResult("ok")


@attrs.frozen
class Capabilities:
    """What the conformance suite may expect of a backend."""

    shared_across_processes: bool = False  # several OS processes may share a call
    threads: bool = True  # several threads of one process may append at once
    watch: bool = False  # wait_for/await_for are native (else the store polls get_meta with backoff)
    snapshots: bool = False  # put_snapshot/get_snapshot are implemented


@runtime_checkable
class Backend(Protocol):
    """One storage tier. Implementations must make ``append`` atomic."""

    url: str
    capabilities: Capabilities

    def get_meta(self, call_id: str) -> CallMeta | None:
        """Current metadata, or ``None`` if the call does not exist."""

    def append(
        self,
        call_id: str,
        events: Sequence[StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
        update: MetaUpdate | None = None,
    ) -> AppendResult:
        """Store ``events`` (seqs ``expected_seq + 1 ...``) in one atomic step, if and only if:

        - no event id is already stored for the call (else ``duplicate``, nothing written);
        - the call's seq is ``expected_seq`` (0: the call must not exist yet) and, when
          ``expected_head`` is given, its chain head is ``expected_head`` (so a writer
          that still holds a deleted call cannot append to a new call of the same id);
        - when ``expected_epoch`` is not None (owner writes, redemption, takeover):
          the call's epoch is ``expected_epoch`` and it has not ended;
        - when ``update.lapsed_by`` is set: the call's lease ran out by then.

        The new metadata is taken from the last event (``epoch``, ``final``, ``chain``)
        and from ``update`` (None: keep what was set, as ``write_at`` does). A call
        whose ``expires_at`` has passed does not exist for any method (purge lazily or
        natively); creating it again (``expected_seq == 0``) replaces it.
        """

    def renew(self, call_id: str, epoch: int, lease_until: float) -> CallMeta | None:
        """Set the owner's lease if the call is at ``epoch`` and has not ended; the
        metadata afterwards (the caller compares: a moved epoch means it was fenced)."""

    def list_calls(self, tenant: str | None, after: str | None, limit: int) -> list[tuple[str, CallMeta]]:
        """Live calls in call-id order, after ``after``; only ``tenant``'s when it is not None.
        Exactly ``limit`` of them whenever that many follow (a shorter page is the last)."""

    def load(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[StoredEvent]:
        """Events ``from_seq .. to_seq`` (inclusive) in order; fewer if this tier lacks the rest."""

    def write_at(self, call_id: str, events: Sequence[StoredEvent], update: MetaUpdate | None = None) -> int:
        """Idempotently store events at their own seqs (caches, behind tiers, backfill).

        Events at or below the high-water mark are skipped, unless the tier holds
        that seq with another chain value: then its copy is stale (the call was
        deleted and created anew) and it is dropped first. A write that would leave
        a gap stores nothing. ``update`` (None: keep) sets the metadata as in
        ``append``. Returns the high-water mark afterwards.
        """

    def high_water(self, call_id: str) -> int:
        """The highest seq such that this tier holds every event up to it."""

    def delete(self, call_id: str) -> bool:
        """Remove the call's content; True if it existed.

        ``write_at`` must not bring it back: the tier keeps a tombstone (the call id,
        the chain value of its first event, when it went) until its retention ends,
        and accepts the call again only from a first event with another chain value
        (a new call of the same id) or through ``append`` with ``expected_seq == 0``.
        """

    def close(self) -> None:
        """Release connections; idempotent."""

    # Optional, with Capabilities.watch: block until the call's seq passes ``after``,
    # the call goes, or ``timeout`` seconds pass; return its metadata then.
    #   def wait_for(self, call_id: str, after: int, timeout: float) -> CallMeta | None
    #   async def await_for(self, call_id: str, after: int, timeout: float) -> CallMeta | None
    # Optional, with Capabilities.snapshots: one snapshot per call, the newest kept.
    #   def put_snapshot(self, call_id: str, snapshot: Snapshot) -> None
    #   def get_snapshot(self, call_id: str) -> Snapshot | None   (and their a-twins)

    async def aget_meta(self, call_id: str) -> CallMeta | None: ...
    async def aappend(
        self,
        call_id: str,
        events: Sequence[StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
        update: MetaUpdate | None = None,
    ) -> AppendResult: ...
    async def arenew(self, call_id: str, epoch: int, lease_until: float) -> CallMeta | None: ...
    async def alist_calls(self, tenant: str | None, after: str | None, limit: int) -> list[tuple[str, CallMeta]]: ...
    async def aload(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[StoredEvent]: ...
    async def awrite_at(self, call_id: str, events: Sequence[StoredEvent], update: MetaUpdate | None = None) -> int: ...
    async def ahigh_water(self, call_id: str) -> int: ...
    async def adelete(self, call_id: str) -> bool: ...
    async def aclose(self) -> None: ...
