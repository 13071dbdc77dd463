"""Memory records as a call stores them, and CrewAI's query semantics over them (no I/O).

The semantics are those of CrewAI's default backend (``LanceDBStorage`` of crewai 1.15), so
a Crew behaves the same on either: a scope prefix is a string prefix of the record's scope
(``/call/1`` also matches ``/call/12``), search ranks by squared Euclidean distance (a record
with no embedding counts as the zero vector) and scores ``1 / (1 + distance)``, and with a
category or metadata filter it takes three times ``limit`` nearest records, then filters.
"""

from __future__ import annotations

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
        "embedding": [float(x) for x in record.embedding] if record.embedding else None,
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
        embedding=list(data["embedding"]) if data.get("embedding") else None,
        source=data.get("source"),
        private=bool(data.get("private", False)),
    )


def _in_scope(scope: str, prefix: str | None) -> bool:
    if prefix is None or not prefix.strip("/"):
        return True
    return scope.startswith(prefix.rstrip("/"))


def _matches(rec: Record, categories: list[str] | None, metadata_filter: Mapping[str, Any] | None) -> bool:
    if categories and not any(c in rec["categories"] for c in categories):
        return False
    return not metadata_filter or all(rec["metadata"].get(k) == v for k, v in metadata_filter.items())


class Index:
    """The records of one memory, with their embeddings as a matrix for search."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self._ids: list[str] | None = None
        self._matrix: Any = None

    def put(self, records: Iterable[Record]) -> None:
        for rec in records:
            self.records[rec["id"]] = rec
        self._ids = None

    def drop(self, ids: Iterable[str]) -> None:
        for rid in ids:
            self.records.pop(rid, None)
        self._ids = None

    @property
    def dim(self) -> int | None:
        return next((len(r["embedding"]) for r in self.records.values() if r.get("embedding")), None)

    def _vectors(self) -> tuple[list[str], Any]:
        if self._ids is None:
            dim = self.dim or 0
            self._ids = list(self.records)
            rows = [self.records[i].get("embedding") or [0.0] * dim for i in self._ids]
            self._matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), dim)
        return self._ids, self._matrix

    def search(
        self,
        query: list[float],
        scope_prefix: str | None,
        categories: list[str] | None,
        metadata_filter: Mapping[str, Any] | None,
        limit: int,
        min_score: float,
    ) -> list[tuple[Record, float]]:
        ids, matrix = self._vectors()
        if not ids:
            return []
        q = np.asarray(query, dtype=np.float32)
        if matrix.shape[1] == 0:  # no record has an embedding (the call's facts alone): all count as zero
            matrix = np.zeros((len(ids), q.shape[0]), dtype=np.float32)
        if matrix.shape[1] != q.shape[0]:
            raise ValueError(f"the query has {q.shape[0]} dimensions and the memory's embeddings {matrix.shape[1]}")
        distances = ((matrix - q) ** 2).sum(axis=1)
        wanted = limit * 3 if (categories or metadata_filter) else limit
        out: list[tuple[Record, float]] = []
        taken = 0
        for i in np.argsort(distances, kind="stable"):
            rec = self.records[ids[i]]
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
            return [i for i in record_ids if i in self.records]
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
