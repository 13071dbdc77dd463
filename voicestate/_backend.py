"""The backend protocol: what a storage tier must do, and nothing more.

A backend stores, per call, a gapless list of :class:`StoredEvent` (bytes it
never decodes) and a little metadata derived from them: the seq, the epoch and
the chain head. Everything with meaning (ownership, handoffs, folding) lives
above it. Every method has an async twin named with an ``a`` prefix.
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
    """The deciding tier's metadata for one call: one small read."""

    seq: int
    epoch: int
    head: bytes
    ended: bool


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
    ) -> AppendResult:
        """Store ``events`` (seqs ``expected_seq + 1 ...``) in one atomic step, if and only if:

        - no event id is already stored for the call (else ``duplicate``, nothing written);
        - the call's seq is ``expected_seq`` (0: the call must not exist yet) and, when
          ``expected_head`` is given, its chain head is ``expected_head`` (so a writer
          that still holds a deleted call cannot append to a new call of the same id);
        - when ``expected_epoch`` is not None (owner writes, redemption, takeover):
          the call's epoch is ``expected_epoch`` and it has not ended.

        The new metadata is taken from the last event (``epoch``, ``final``, ``chain``).
        """

    def load(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[StoredEvent]:
        """Events ``from_seq .. to_seq`` (inclusive) in order; fewer if this tier lacks the rest."""

    def write_at(self, call_id: str, events: Sequence[StoredEvent]) -> int:
        """Idempotently store events at their own seqs (caches, behind tiers, backfill).

        Events at or below the high-water mark are skipped; a write that would
        leave a gap stores nothing. Returns the high-water mark afterwards.
        """

    def high_water(self, call_id: str) -> int:
        """The highest seq such that this tier holds every event up to it."""

    def delete(self, call_id: str) -> bool:
        """Remove the call; True if it existed."""

    def close(self) -> None:
        """Release connections; idempotent."""

    async def aget_meta(self, call_id: str) -> CallMeta | None: ...
    async def aappend(
        self,
        call_id: str,
        events: Sequence[StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
    ) -> AppendResult: ...
    async def aload(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[StoredEvent]: ...
    async def awrite_at(self, call_id: str, events: Sequence[StoredEvent]) -> int: ...
    async def ahigh_water(self, call_id: str) -> int: ...
    async def adelete(self, call_id: str) -> bool: ...
    async def aclose(self) -> None: ...
