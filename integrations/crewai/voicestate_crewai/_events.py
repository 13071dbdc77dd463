"""The events a Crew's memory is stored as, in the log of a voicestate call.

Both fold into ``CallState.plugin_state["crewai"]`` (record id -> record), so the
voice agent that takes the call back sees what the Crew remembered in its state.
Anyone may append them (``OUTSIDE``): a memory that is not a call's has no owner;
on a call the storage writes them through the owner's session, fenced.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import attrs

import voicestate as vs

NAMESPACE = "crewai"


@attrs.frozen
class Remembered(vs.Event):
    """Memory records saved or updated: each a JSON record (see ``_records.to_json``)."""

    TYPE: ClassVar[str] = "crewai.Remembered"
    OUTSIDE: ClassVar[bool] = True
    STATE: ClassVar[str | None] = NAMESPACE
    records: list[Any] = attrs.field(factory=list)

    def changes(self) -> Mapping[str, Any]:
        bad = [i for i, r in enumerate(self.records) if not valid(r)]
        if bad:  # refused when recorded (check_changes), so a malformed record is never stored
            raise ValueError(f"records {bad[:5]} are not memory records (id, content, scope, ... see _records)")
        return {r["id"]: r for r in self.records}


@attrs.frozen
class Forgotten(vs.Event):
    """Memory records deleted, by id."""

    TYPE: ClassVar[str] = "crewai.Forgotten"
    OUTSIDE: ClassVar[bool] = True
    STATE: ClassVar[str | None] = NAMESPACE
    ids: list[str] = attrs.field(factory=list)

    def changes(self) -> Mapping[str, Any]:
        return dict.fromkeys(self.ids)


def valid(rec: Any) -> bool:
    """Whether ``rec`` is a memory record (what another writer stored may not be): checked when
    a ``Remembered`` is recorded, and skipped when read."""
    if not isinstance(rec, Mapping) or not isinstance(rec.get("id"), str):
        return False
    if not isinstance(rec.get("scope"), str) or not isinstance(rec.get("content"), str):
        return False
    if not isinstance(rec.get("categories"), list) or not isinstance(rec.get("metadata"), Mapping):
        return False
    for key in ("created_at", "last_accessed"):
        try:
            datetime.fromisoformat(rec[key])
        except (KeyError, TypeError, ValueError):
            return False
    emb = rec.get("embedding")
    if emb is None or isinstance(emb, list):
        return emb is None or (bool(emb) and all(isinstance(x, int | float) for x in emb))
    try:
        raw = base64.b64decode(emb, validate=True) if isinstance(emb, str) else b""
    except ValueError:  # binascii.Error
        return False
    return len(raw) > 0 and len(raw) % 4 == 0  # float32 values


EVENT_TYPES: tuple[type[vs.Event], ...] = (Remembered, Forgotten)
