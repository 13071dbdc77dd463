"""What the saver knows of one thread: the fold of its call's log (pure, no I/O).

Checkpoints are kept per ``(owner, ns)``: on a voice call the owner is the
agent that wrote them (each agent's graph state is its own), on a plain thread
it is ``""``. A channel value is resolved from the checkpoint that stored that
version nearest on the parent chain, so two checkpoints that stored different
values under one version (a fork, or a caller reusing versions) each get their own.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

import voicestate as vs

from ._compact import CALL_VALUE, INPUT_VALUE, names_of, unpack_event
from ._events import Checkpointed, ThreadCleared, WritesPut

PLAIN = "thread"  # CallStarted.meta["langgraph"] of a call that holds a plain thread
INPUT_IDS = "lc:in:"  # the event ids of those messages: lc:in:<key>:<n>

RECENT = 4  # how many recent checkpoints a new one is compared with, to store the smallest difference

Blob = tuple[str, bytes]
Key = tuple[str, str]  # (owner, ns)


@attrs.define(slots=True)
class Stored:
    """One checkpoint as stored: LangGraph's checkpoint without values, and where its values are."""

    id: str
    owner: str
    ns: str
    cp: Mapping[str, Any]
    meta: Any  # the metadata (JSON), or ["serde", type, b64]
    parent: str | None
    blobs: dict[str, tuple[Any, Blob | None]]  # channel -> (version, blob); None: the call's messages
    seq: int
    _names: list[str] | None = None

    @property
    def names(self) -> list[str]:
        """The names its successors refer to by index (see :mod:`._compact`)."""
        if self._names is None:
            self._names = names_of(self.cp)
        return self._names


@attrs.define(slots=True)
class Write:
    task: str
    idx: int
    channel: str
    value: Blob
    path: str


class Thread:
    """The fold of one thread's log, kept up to date by the saver (``seq``, ``chain``)."""

    def __init__(self, thread_id: str) -> None:
        self.id = thread_id
        # What this process knows of the messages it recorded: kept when the fold is reset.
        self.recorded: set[str] = set()  # message ids known to be in the call's log
        self.pending_inputs: list[str] = []  # inputs this process recorded, not yet seen in a checkpoint
        self.reset()

    def reset(self) -> None:
        """Forget the fold (the log was deleted or replaced); the next read folds it from the start."""
        self.kind: str | None = None  # "plain", "call", or None: no call of that id (yet)
        self.seq = 0
        self.chain: bytes | None = None  # of the event at ``seq``; None when folded from our own write
        self.last_id: str | None = None  # the id of the event at ``seq``
        self.checkpoints: dict[Key, dict[str, Stored]] = {}
        self.by_seq: dict[int, Stored] = {}  # every checkpoint folded, by its event's seq: the bases
        self.recent: dict[Key, list[Stored]] = {}  # the last few stored per key: candidate bases
        self.versions: dict[tuple[str, str, str, Any], list[str]] = {}  # (owner, ns, channel, version) -> ids
        self.writes: dict[tuple[str, str, str], dict[tuple[str, int], Write]] = {}
        self.inputs: dict[str, list[str]] = {}  # input key -> the texts recorded for it (INPUT_IDS)
        # a task's writes of the conversation, held until the step ends (see VoiceStateSaver._put_writes)
        self.withheld: dict[tuple[str, str, str], list[tuple[str, str, list[Any]]]] = {}
        self.special: set[tuple[str, str, str]] = set()  # checkpoints a task of which interrupted or failed

    # -- folding -----------------------------------------------------------------------

    def take(self, tail: list[vs.Event]) -> bool:
        """Fold what ``tail`` (read from at or before this fold's seq) adds; False when the log
        does not continue this fold (it was deleted and created anew: read it whole)."""
        if self.seq == 0:
            self.fold(tail)
            return True
        at = next((e for e in tail if e.seq == self.seq), None)
        if at is None:
            # read before a write of ours landed (nothing new), or a log shorter than this fold
            return bool(tail) and (tail[-1].seq or 0) < self.seq
        same = at.chain == self.chain if self.chain is not None else at.id == self.last_id
        if not same:
            return False
        self.fold([e for e in tail if (e.seq or 0) > self.seq])
        return True

    def fold(self, events: list[vs.Event]) -> None:
        for ev in events:
            assert ev.seq is not None
            if ev.seq <= self.seq:
                continue
            self.apply(ev)
            self.seq, self.chain, self.last_id = ev.seq, ev.chain, ev.id

    def apply(self, ev: vs.Event) -> None:
        if isinstance(ev, Checkpointed):
            self._checkpointed(ev)
        elif isinstance(ev, WritesPut):
            self._written(ev)
        elif isinstance(ev, ThreadCleared):
            owner = self.owner_of(ev)
            self.checkpoints = {k: v for k, v in self.checkpoints.items() if k[0] != owner}
            self.writes = {k: v for k, v in self.writes.items() if k[0] != owner}
            self.versions = {k: v for k, v in self.versions.items() if k[0] != owner}
            self.recent = {k: v for k, v in self.recent.items() if k[0] != owner}
        elif isinstance(ev, vs.CallStarted):
            self.kind = "plain" if ev.meta.get("langgraph") == PLAIN else "call"
        elif isinstance(ev, vs.UserSpoke) and ev.id.startswith(INPUT_IDS):
            self.inputs.setdefault(ev.id[len(INPUT_IDS) :].rsplit(":", 1)[0], []).append(ev.text)

    def owner_of(self, ev: vs.Event) -> str:
        return (ev.agent or "") if self.kind == "call" else ""

    def _checkpointed(self, ev: Checkpointed) -> None:
        assert ev.seq is not None
        owner = self.owner_of(ev)
        key = (owner, ev.ns)
        if ev.base > 0:
            base = self.by_seq.get(ev.base)
        elif ev.base == 0:  # the writer's previous checkpoint in this namespace
            base = self.recent[key][-1] if self.recent.get(key) else None
        else:
            base = None
        if ev.base >= 0 and base is None:
            raise vs.IntegrityError(
                f"thread {self.id!r}: the checkpoint at seq {ev.seq} is stored against "
                f"{f'seq {ev.base}' if ev.base else 'a previous checkpoint'}, which the log does not hold"
            )
        cp, meta, parent, values = unpack_event(ev, base)
        blobs: dict[str, tuple[Any, Blob | None]] = {}
        for channel, (version, kind, data) in values.items():
            if kind == CALL_VALUE:
                blob: Blob | None = None
            elif kind == INPUT_VALUE:
                blob = (kind, data.encode())
            elif kind in ("empty", "null"):
                blob = (kind, b"")
            else:
                blob = (kind, base64.b64decode(data))
            blobs[channel] = (version, blob)
            self.versions.setdefault((owner, ev.ns, channel, version), []).append(cp["id"])
        stored = Stored(cp["id"], owner, ev.ns, cp, meta, parent, blobs, ev.seq)
        self.checkpoints.setdefault(key, {})[stored.id] = stored
        self.by_seq[ev.seq] = stored
        recent = self.recent.setdefault(key, [])
        recent.append(stored)
        del recent[:-RECENT]

    def _written(self, ev: WritesPut) -> None:
        into = self.writes.setdefault((self.owner_of(ev), ev.ns, ev.cid), {})
        for idx, channel, kind, data in ev.writes:
            key = (ev.task, idx)
            if idx >= 0 and key in into:
                continue  # a task's regular writes are stored once; special ones are replaced
            into[key] = Write(ev.task, idx, channel, (kind, base64.b64decode(data)), ev.path)

    # -- reading -----------------------------------------------------------------------

    def latest(self, owner: str, ns: str) -> Stored | None:
        got = self.checkpoints.get((owner, ns))
        return got[max(got)] if got else None

    def find(self, owner: str, ns: str, cid: str) -> Stored | None:
        return self.checkpoints.get((owner, ns), {}).get(cid)

    def each(self, owner: str | None, ns: str | None) -> Iterator[Stored]:
        """Checkpoints newest first (``None``: any owner, any namespace)."""
        found = [
            s
            for (o, n), by_id in self.checkpoints.items()
            if (owner is None or o == owner) and (ns is None or n == ns)
            for s in by_id.values()
        ]
        found.sort(key=lambda s: s.id, reverse=True)
        return iter(found)

    def value(self, stored: Stored, channel: str, version: Any) -> tuple[bool, Blob | None]:
        """``(found, blob)`` of ``channel`` at ``version`` as ``stored`` sees it (blob None: the call's)."""
        own = stored.blobs.get(channel)
        if own is not None and own[0] == version:
            return True, own[1]
        holders = self.versions.get((stored.owner, stored.ns, channel, version))
        if not holders:
            return False, None
        by_id = self.checkpoints[(stored.owner, stored.ns)]
        if len(holders) > 1:  # the same version stored twice: the nearest ancestor's
            at: Stored | None = stored
            seen = 0
            while at is not None and seen <= len(by_id):
                got = at.blobs.get(channel)
                if got is not None and got[0] == version:
                    return True, got[1]
                at = by_id.get(at.parent) if at.parent else None
                seen += 1
            older = [h for h in holders if h <= stored.id]
            holder = max(older) if older else max(holders)
        else:
            holder = holders[0]
        return True, by_id[holder].blobs[channel][1]

    def pending(self, owner: str, ns: str, cid: str) -> list[Write]:
        got = self.writes.get((owner, ns, cid))
        if not got:
            return []
        return sorted(got.values(), key=lambda w: (w.path, w.task, w.idx))

    def has_write(self, owner: str, ns: str, cid: str, task: str, idx: int) -> bool:
        return (task, idx) in self.writes.get((owner, ns, cid), {})

    def has_special(self, owner: str, ns: str, cid: str) -> bool:
        """Whether a task of checkpoint ``cid`` stored a special write (an interrupt, an error)."""
        return any(idx < 0 for _, idx in self.writes.get((owner, ns, cid), {}))
