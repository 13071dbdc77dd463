"""Memory records as a call stores them, and CrewAI's query semantics over them (no I/O).

The semantics are those of CrewAI's default backend (``LanceDBStorage`` of crewai 1.15), so
a Crew behaves the same on either: a scope prefix is a string prefix of the record's scope
(``/call/1`` also matches ``/call/12``), search ranks by squared Euclidean distance (a record
with no embedding counts as the zero vector) and scores ``1 / (1 + distance)``, and with a
category or metadata filter it takes three times ``limit`` nearest records, then filters.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
from crewai.memory.types import MemoryRecord, ScopeInfo

Record = dict[str, Any]  # a record as the call stores it (JSON)


def to_json(record: MemoryRecord) -> Record:
    return {
        "id": record.id,
        "content": record.content,
        "scope": record.scope,
        "categories": list(record.categories),
        "metadata": dict(record.metadata),
        "importance": record.importance,
        "created_at": record.created_at.isoformat(),
        "last_accessed": record.last_accessed.isoformat(),
        "embedding": pack_vector(record.embedding) if record.embedding else None,
        "source": record.source,
        "private": record.private,
    }


def from_json(data: Mapping[str, Any]) -> MemoryRecord:
    return MemoryRecord(
        id=data["id"],
        content=data["content"],
        scope=data["scope"],
        categories=list(data.get("categories") or []),
        metadata=dict(data.get("metadata") or {}),
        importance=data.get("importance", 0.5),
        created_at=datetime.fromisoformat(data["created_at"]),
        last_accessed=datetime.fromisoformat(data["last_accessed"]),
        embedding=vector(data.get("embedding")).tolist() if data.get("embedding") else None,
        source=data.get("source"),
        private=bool(data.get("private", False)),
    )


def pack_vector(values: Iterable[float]) -> str:
    """An embedding as stored: float32 little-endian, base64 (a third of a list of msgpack floats,
    and decoded at C speed)."""
    return base64.b64encode(np.asarray(list(values), dtype="<f4").tobytes()).decode("ascii")


def vector(stored: Any) -> Any:
    """A stored embedding as a float32 array (a list of numbers is read too)."""
    if isinstance(stored, str):
        return np.frombuffer(base64.b64decode(stored), dtype="<f4")
    return np.asarray(stored, dtype=np.float32)


def _in_scope(scope: str, prefix: str | None) -> bool:
    if prefix is None or not prefix.strip("/"):
        return True
    return scope.startswith(prefix.rstrip("/"))


def _matches(rec: Record, categories: list[str] | None, metadata_filter: Mapping[str, Any] | None) -> bool:
    if categories and not any(c in rec["categories"] for c in categories):
        return False
    return not metadata_filter or all(rec["metadata"].get(k) == v for k, v in metadata_filter.items())


class Index:
    """The records of one memory, with their embeddings as rows of a matrix for search.

    Rows are appended as records arrive and blanked when they go (a replaced record keeps its
    row), so a save does not rebuild the matrix; it is compacted when half of it is blank.
    """

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self._row: dict[str, int] = {}  # record id -> its row
        self._ids: list[str | None] = []  # row -> record id (None: blank)
        self._matrix: Any = None  # (capacity x dim) float32, grown by doubling
        self.dim: int | None = None

    def put(self, records: Iterable[Record]) -> None:
        for rec in records:
            rid = rec["id"]
            self.records[rid] = rec
            stored = rec.get("embedding")
            vec = vector(stored) if stored else None
            if vec is not None and self.dim is None:
                self.dim = len(vec)
            row = self._row.get(rid)
            if row is None:
                row = self._row[rid] = len(self._ids)
                self._ids.append(rid)
            if self.dim is not None:
                self._ensure(row + 1)
                self._matrix[row] = vec if vec is not None and len(vec) == self.dim else 0.0

    def drop(self, ids: Iterable[str]) -> None:
        for rid in ids:
            if self.records.pop(rid, None) is not None:
                self._ids[self._row.pop(rid)] = None
        if not self.records:  # emptied (a reset): the next embedder may have another dimension
            self._row, self._ids, self._matrix, self.dim = {}, [], None, None
        elif len(self._ids) > 64 and len(self._row) * 2 < len(self._ids):
            self._compact()

    def _ensure(self, rows: int) -> None:
        assert self.dim is not None
        have = 0 if self._matrix is None else self._matrix.shape[0]
        if have >= rows:
            return
        grown = np.zeros((max(rows, 2 * have, 64), self.dim), np.float32)
        if self._matrix is not None:
            grown[:have] = self._matrix
        else:  # the dimension just became known: the rows put before it have no embedding
            for rid, row in self._row.items():
                stored = self.records[rid].get("embedding")
                vec = vector(stored) if stored else None
                if vec is not None and len(vec) == self.dim:
                    grown[row] = vec
        self._matrix = grown

    def _compact(self) -> None:
        keep = [(rid, row) for row, rid in enumerate(self._ids) if rid is not None]
        self._ids = [rid for rid, _ in keep]
        self._row = {rid: i for i, (rid, _) in enumerate(keep)}
        if self._matrix is not None:
            self._matrix = self._matrix[[row for _, row in keep]] if keep else None
            if self._matrix is not None and len(keep) < 64:
                self._ensure(64)

    def search(
        self,
        query: list[float],
        scope_prefix: str | None,
        categories: list[str] | None,
        metadata_filter: Mapping[str, Any] | None,
        limit: int,
        min_score: float,
    ) -> list[tuple[Record, float]]:
        if not self.records:
            return []
        q = np.asarray(query, dtype=np.float32)
        n = len(self._ids)
        # no record with an embedding (the call's facts alone): every record counts as zero
        matrix = np.zeros((n, q.shape[0]), dtype=np.float32) if self.dim is None else self._matrix[:n]
        if matrix.shape[1] != q.shape[0]:
            raise ValueError(f"the query has {q.shape[0]} dimensions and the memory's embeddings {matrix.shape[1]}")
        ids = self._ids
        distances = ((matrix - q) ** 2).sum(axis=1)
        wanted = limit * 3 if (categories or metadata_filter) else limit
        out: list[tuple[Record, float]] = []
        taken = 0
        for i in np.argsort(distances, kind="stable"):
            rid = ids[i]
            if rid is None:
                continue
            rec = self.records[rid]
            if not _in_scope(rec["scope"], scope_prefix):
                continue
            taken += 1
            if taken > wanted:
                break
            if not _matches(rec, categories, metadata_filter):
                continue
            score = 1.0 / (1.0 + float(distances[i]))
            if score >= min_score:
                out.append((rec, score))
            if len(out) >= limit:
                break
        return out

    def scan(self, scope_prefix: str | None) -> list[Record]:
        return [r for r in self.records.values() if _in_scope(r["scope"], scope_prefix)]

    def to_delete(
        self,
        scope_prefix: str | None,
        categories: list[str] | None,
        record_ids: list[str] | None,
        older_than: datetime | None,
        metadata_filter: Mapping[str, Any] | None,
    ) -> list[str]:
        """The ids ``delete`` removes, as CrewAI's default backend chooses them."""
        if record_ids and not (categories or metadata_filter):
            return [i for i in dict.fromkeys(record_ids) if i in self.records]
        if categories or metadata_filter:
            return [
                r["id"]
                for r in self.scan(scope_prefix)
                if _matches(r, categories, metadata_filter)
                and not (older_than and datetime.fromisoformat(r["created_at"]) >= older_than)
            ]
        out = []
        for r in self.records.values():
            if scope_prefix is not None and scope_prefix.strip("/"):
                prefix = "/" + scope_prefix.rstrip("/").lstrip("/")
                if not (r["scope"].startswith(prefix) or r["scope"] == "/"):  # CrewAI's backend takes "/" too
                    continue
            if older_than is not None and not r["created_at"] < older_than.isoformat():
                continue
            out.append(r["id"])
        return out

    def listed(self, scope_prefix: str | None, limit: int, offset: int) -> list[Record]:
        if limit <= 0 or offset < 0:
            return []
        if scope_prefix is not None and scope_prefix.strip("/"):
            scope_prefix = "/" + scope_prefix.rstrip("/").lstrip("/")
        rows = sorted(self.scan(scope_prefix), key=lambda r: r["created_at"], reverse=True)
        return rows[offset : offset + limit]

    def scope_info(self, scope: str) -> ScopeInfo:
        scope = scope.rstrip("/") or "/"
        prefix = scope if scope != "/" else ""
        if prefix and not prefix.startswith("/"):
            prefix = "/" + prefix
        rows = self.scan(prefix or None)
        child_prefix = (prefix + "/") if prefix else "/"
        children = {
            child_prefix + r["scope"][len(child_prefix) :].split("/", 1)[0]
            for r in rows
            if r["scope"].startswith(child_prefix) and r["scope"][len(child_prefix) :].split("/", 1)[0]
        }
        times = [datetime.fromisoformat(r["created_at"]) for r in rows]
        return ScopeInfo(
            path=scope or "/",
            record_count=len(rows),
            categories=sorted({c for r in rows for c in r["categories"]}),
            oldest_record=min(times) if times else None,
            newest_record=max(times) if times else None,
            child_scopes=sorted(children),
        )

    def child_scopes(self, parent: str) -> list[str]:
        parent = parent.rstrip("/") or ""
        prefix = (parent + "/") if parent else "/"
        found = set()
        for r in self.scan(prefix if prefix != "/" else None):
            sc = r["scope"]
            if sc.startswith(prefix) and sc != (prefix.rstrip("/") or "/"):
                first = sc[len(prefix) :].split("/", 1)[0]
                if first:
                    found.add(prefix + first)
        return sorted(found)

    def categories(self, scope_prefix: str | None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.scan(scope_prefix):
            for c in r["categories"]:
                counts[c] = counts.get(c, 0) + 1
        return counts

    def count(self, scope_prefix: str | None) -> int:
        if scope_prefix is None or scope_prefix.strip("/") == "":
            return len(self.records)
        return self.scope_info(scope_prefix).record_count

    def to_reset(self, scope_prefix: str | None) -> list[str]:
        if scope_prefix is None or scope_prefix.strip("/") == "":
            return list(self.records)
        prefix = scope_prefix.rstrip("/")
        return [r["id"] for r in self.records.values() if prefix <= r["scope"] < prefix + "/\uffff"]
