"""The events a Crew's memory is stored as, in the log of a voicestate call.

Both fold into ``CallState.plugin_state["crewai"]`` (record id -> record), so the
voice agent that takes the call back sees what the Crew remembered in its state.
Anyone may append them (``OUTSIDE``): a memory that is not a call's has no owner;
on a call the storage writes them through the owner's session, fenced.
"""

from __future__ import annotations

from collections.abc import Mapping
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


EVENT_TYPES: tuple[type[vs.Event], ...] = (Remembered, Forgotten)
