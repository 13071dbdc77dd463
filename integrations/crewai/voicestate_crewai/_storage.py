"""``VoiceStateStorage``: CrewAI's memory ``StorageBackend`` on a voicestate store.

A memory is a call's log: the records are ``crewai.Remembered`` and
``crewai.Forgotten`` events (folded into ``CallState.plugin_state["crewai"]``).
The storage folds that log itself (once, then only its tail) into an index
with CrewAI's query semantics (``_records.Index``).

- With a session (the owner's, of a voice call), the Crew's memory is the
  call's: what it saves is written through the session, fenced like every
  owner write, and the call's facts (its slots, and each agent's private
  slots) are records it recalls: ``/call/facts`` and ``/call/agents/<agent>``,
  category ``"fact"``, read-only.
- Without one, it is a plain memory: a call of its own (``memory_id``), opened
  and ended at once (no owner, no lease), written with ``store.append``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from crewai.memory.storage.backend import EmbeddingDimensionMismatchError
from crewai.memory.types import MemoryRecord, ScopeInfo

import voicestate as vs
from voicestate.plugins import Flow, arun_flow, run_flow, twin

from ._events import Forgotten, Remembered, valid
from ._format import text_of
from ._records import Index, Record, from_json, to_json

T = TypeVar("T")
FACT_IDS = "fact:"  # the ids of the records that are the call's slots: fact:<key>
AGENT_FACT_IDS = "fact@"  # and an agent's private slots: fact@<agent>:<key>
_CHUNK = 256 * 1024  # JSON bytes of records per event at most (and half the store's cap): a large save
# is several events in one append


class VoiceStateStorage:
    """A CrewAI memory ``StorageBackend`` (structural: ``isinstance(x, StorageBackend)`` holds).

    ``store``: any voicestate store. ``session``: the owner's session of a call,
    whose log then holds the memory. ``memory_id``: the call that holds a plain
    memory (default ``"crewai-memory"``, per tenant). ``agent``: the name a plain
    memory is opened under.
    """

    def __init__(
        self,
        store: vs.Store,
        *,
        session: vs.Session | None = None,
        memory_id: str | None = None,
        agent: str = "crewai",
    ) -> None:
        if not isinstance(store, vs.Store):
            raise vs.ConfigError(f"store must be a voicestate Store (vs.open_store(...)), not {type(store).__name__}")
        if session is not None and not isinstance(session, vs.Session):
            raise vs.ConfigError(f"session must be a voicestate Session, not {type(session).__name__}")
        if session is not None and memory_id is not None and memory_id != session.call_id:
            raise vs.ConfigError("with a session the memory is its call's: pass session= or memory_id=, not both")
        self.store = store
        self.session = session
        tenant = store.tenant
        self.call_id = (
            session.call_id if session is not None else (memory_id or f"crewai-memory{f'.{tenant}' if tenant else ''}")
        )
        self.agent = agent
        self._index = Index()
        self._seq = 0
        self._last_id: str | None = None  # the id of the event at _seq
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<VoiceStateStorage {self.call_id!r} {'call' if self.session is not None else 'plain'}>"

    # -- the fold --------------------------------------------------------------------------

    def _read(self) -> Flow[Index]:
        """The index with the log's new tail folded in (all of the log, when it was replaced)."""
        for _ in range(2):
            after = max(self._seq - 1, 0)  # from the last event folded: it tells a replaced log
            try:
                tail: list[vs.Event] = yield twin(self.store.events, self.store.aevents, self.call_id, after=after)
            except vs.CallNotFound:
                with self._lock:
                    self._forget_all()  # deleted: nothing of it may be served any more
                return self._index
            with self._lock:
                if self._seq and not any(e.seq == self._seq and e.id == self._last_id for e in tail):
                    if tail and (tail[-1].seq or 0) < self._seq:
                        return self._index  # read before a write that another thread folded
                    self._forget_all()  # the call was deleted and created anew: fold it whole
                    continue
                for ev in tail:
                    if ev.seq is None or ev.seq <= self._seq:
                        continue
                    try:
                        self._apply(ev)
                    except (KeyError, TypeError, ValueError):
                        pass  # a malformed record another writer stored: skipped, the rest is read
                    self._seq, self._last_id = ev.seq, ev.id
            break
        return self._index

    def _apply(self, ev: vs.Event) -> None:
        if isinstance(ev, Remembered):
            self._index.put(r for r in ev.records if valid(r))
        elif isinstance(ev, Forgotten):
            self._index.drop(ev.ids)
        elif isinstance(ev, vs.SlotsSet):
            self._fact(ev)

    def _forget_all(self) -> None:
        self._index = Index()
        self._seq, self._last_id = 0, None

    def _fact(self, ev: vs.SlotsSet) -> None:
        if ev.scope == "call":
            scope, prefix = "/call/facts", FACT_IDS
        elif ev.scope.startswith("agent:"):
            scope, prefix = f"/call/agents/{ev.scope[6:]}", f"{AGENT_FACT_IDS}{ev.scope[6:]}:"
        else:
            return
        at = datetime.fromtimestamp(ev.at, UTC).replace(tzinfo=None).isoformat()  # CrewAI's naive UTC
        gone, put = [], []
        for key, value in ev.values.items():
            rid = f"{prefix}{key}"
            if value is None:
                gone.append(rid)
                continue
            put.append(
                {
                    "id": rid,
                    "content": f"{key}: {text_of(value)}",
                    "scope": scope,
                    "categories": ["fact"],
                    "metadata": {"key": key, "value": value},
                    "importance": 0.9,
                    "created_at": at,
                    "last_accessed": at,
                    "embedding": None,
                    "source": ev.agent,
                    "private": False,
                }
            )
        self._index.drop(gone)
        self._index.put(put)

    # -- writing ---------------------------------------------------------------------------

    def _write(self, events: list[vs.Event]) -> Flow[None]:
        if not events:
            return
        session = self.session
        if session is not None:
            yield twin(session.record, session.arecord, *events)  # one at a time with the app's
            return
        try:
            yield twin(self.store.append, self.store.aappend, self.call_id, *events)
        except vs.CallNotFound:
            yield twin(self._create, self._acreate)
            yield twin(self.store.append, self.store.aappend, self.call_id, *events)

    def _create(self) -> None:
        try:
            with self.store.open(self.call_id, agent=self.agent, meta={"crewai": "memory"}) as s:
                s.end("crewai memory")
        except vs.OwnershipError:
            pass  # another worker created it first

    async def _acreate(self) -> None:
        try:
            s = await self.store.aopen(self.call_id, agent=self.agent, meta={"crewai": "memory"})
        except vs.OwnershipError:
            return
        async with s:
            await s.aend("crewai memory")

    def _save(self, records: Sequence[MemoryRecord]) -> Flow[None]:
        # the call's facts are its slots: a Crew's update of one (consolidation) changes nothing
        own = [r for r in records if not _is_fact(r.id)]
        if not own:
            return
        index = yield from self._read()
        dims = {len(r.embedding) for r in own if r.embedding}
        with self._lock:
            have = index.dim
        if len(dims) > 1 or (have is not None and dims and dims != {have}):
            raise EmbeddingDimensionMismatchError(have or min(dims), max(dims) if have is None else dims.pop())
        chunk = min(_CHUNK, self.store.config.max_event_bytes // 2)
        yield from self._write(list(_remembered([to_json(r) for r in own], chunk)))

    def _forget(self, ids: list[str]) -> Flow[int]:
        own = [i for i in dict.fromkeys(ids) if not _is_fact(i)]  # the call's facts are its slots: read-only
        if own:
            yield from self._write([Forgotten(ids=own)])
        return len(own)

    def _delete(
        self,
        scope_prefix: str | None,
        categories: list[str] | None,
        record_ids: list[str] | None,
        older_than: datetime | None,
        metadata_filter: dict[str, Any] | None,
    ) -> Flow[int]:
        index = yield from self._read()
        with self._lock:
            ids = index.to_delete(scope_prefix, categories, record_ids, older_than, metadata_filter)
        return (yield from self._forget(ids))

    def _search(
        self,
        query_embedding: list[float],
        scope_prefix: str | None,
        categories: list[str] | None,
        metadata_filter: dict[str, Any] | None,
        limit: int,
        min_score: float,
    ) -> Flow[list[tuple[MemoryRecord, float]]]:
        index = yield from self._read()
        with self._lock:
            if index.dim is not None and len(query_embedding) != index.dim:
                raise EmbeddingDimensionMismatchError(index.dim, len(query_embedding))
            found = index.search(query_embedding, scope_prefix, categories, metadata_filter, limit, min_score)
        return [(from_json(rec), score) for rec, score in found]

    # -- the protocol ----------------------------------------------------------------------

    def save(self, records: list[MemoryRecord]) -> None:
        run_flow(self._save(records))

    async def asave(self, records: list[MemoryRecord]) -> None:
        await arun_flow(self._save(records))

    def search(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
    ) -> list[tuple[MemoryRecord, float]]:
        return run_flow(self._search(query_embedding, scope_prefix, categories, metadata_filter, limit, min_score))

    async def asearch(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
    ) -> list[tuple[MemoryRecord, float]]:
        flow = self._search(query_embedding, scope_prefix, categories, metadata_filter, limit, min_score)
        return await arun_flow(flow)

    def delete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        return run_flow(self._delete(scope_prefix, categories, record_ids, older_than, metadata_filter))

    async def adelete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        return await arun_flow(self._delete(scope_prefix, categories, record_ids, older_than, metadata_filter))

    def update(self, record: MemoryRecord) -> None:
        """Replace the record with ``record.id`` (as CrewAI's backend does, it is stored if it was not)."""
        run_flow(self._save([record]))

    def _query(self, ask: Callable[[Index], T]) -> T:
        """``ask`` of the index, once the log's new tail is folded in."""
        index = run_flow(self._read())
        with self._lock:
            return ask(index)

    def get_record(self, record_id: str) -> MemoryRecord | None:
        rec = self._query(lambda index: index.records.get(record_id))
        return from_json(rec) if rec is not None else None

    def list_records(self, scope_prefix: str | None = None, limit: int = 200, offset: int = 0) -> list[MemoryRecord]:
        return [from_json(r) for r in self._query(lambda index: index.listed(scope_prefix, limit, offset))]

    def get_scope_info(self, scope: str) -> ScopeInfo:
        return self._query(lambda index: index.scope_info(scope))

    def list_scopes(self, parent: str = "/") -> list[str]:
        return self._query(lambda index: index.child_scopes(parent))

    def list_categories(self, scope_prefix: str | None = None) -> dict[str, int]:
        return self._query(lambda index: index.categories(scope_prefix))

    def count(self, scope_prefix: str | None = None) -> int:
        return self._query(lambda index: index.count(scope_prefix))

    def reset(self, scope_prefix: str | None = None) -> None:
        run_flow(self._forget(self._query(lambda index: index.to_reset(scope_prefix))))


def _is_fact(record_id: str) -> bool:
    return record_id.startswith((FACT_IDS, AGENT_FACT_IDS))


def _remembered(records: list[Record], chunk: int) -> Iterator[Remembered]:
    """The records as events of at most about ``chunk`` bytes each (the store caps an event's size;
    JSON is longer than the stored msgpack, so this errs on the safe side)."""
    batch: list[Record] = []
    size = 0
    for rec in records:
        n = len(json.dumps(rec))
        if batch and size + n > chunk:
            yield Remembered(records=batch)
            batch, size = [], 0
        batch.append(rec)
        size += n
    if batch:
        yield Remembered(records=batch)
