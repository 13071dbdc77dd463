"""Watching a call: where a watcher is in the log, and the next events after it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ._codec import decode_stored, genesis
from ._errors import CallNotFound, ConfigError, IntegrityError
from ._events import Event
from ._ids import check_call_id
from ._io import Flow

if TYPE_CHECKING:
    from ._store import Store


class Cursor:
    """Where a watcher is in a call's log: the seq and chain value it has seen up to."""

    def __init__(self, store: Store, call_id: str, after: int) -> None:
        check_call_id(call_id)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ConfigError(f"watch(after=...) is a seq (an int >= 0), not {after!r}")
        self.store, self.call_id, self.seq = store, call_id, after
        self.chain: bytes | None = genesis(call_id) if after == 0 else None
        self.checked = False
        self.found = False
        self.done = False

    def next(self, timeout: float | None) -> Flow[list[Event] | None]:
        """The events after the cursor, once there are some; None once the call is gone."""
        tiers, call_id = self.store.tiers, self.call_id
        if not self.checked:
            yield from self.store._tenant_guard(call_id)
            self.checked = True
        deadline = None if timeout is None else time.monotonic() + timeout
        meta = yield from tiers.meta(call_id)
        while True:
            if meta is None and not self.found:
                raise CallNotFound(f"no call {call_id!r} in {self.store!r} to watch")
            self.found = True
            if meta is None or meta.seq < self.seq or self.done:
                return None  # deleted (or deleted and created anew, shorter), or over
            if meta.ended and meta.seq == self.seq:
                return None  # ended, and nothing after what was seen
            if meta.seq > self.seq:
                if self.chain is None:
                    at = yield from tiers.load_at(call_id, self.seq)
                    if at is None:
                        return None
                    self.chain = at.chain
                try:
                    got = yield from tiers.load(call_id, meta, self.seq + 1, self.chain)
                except IntegrityError:
                    return None  # the log no longer continues what was seen: a new call of that id
                self.seq, self.chain = got[-1].seq, got[-1].chain
                self.done = meta.ended  # post-call notes are yielded, then the watch ends
                return [decode_stored(se.data, se.seq, se.chain) for se in got]
            left = 30.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no event stored in call {call_id!r} after seq {self.seq} within {timeout:g} s")
            # the metadata the wait ends with is current: no second read before the events
            meta = yield from tiers.wait_for(call_id, self.seq, min(left, 30.0))
