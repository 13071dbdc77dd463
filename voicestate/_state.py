"""CallState: the fold of a call's log, as cheap immutable snapshots.

The fold is kept by a mutable ``Folder``. Turns, tools, handoffs and notes live
in append-only lists; the rare in-place changes (an interruption, a tool result,
slot merges) go to small copy-on-write overlays. A snapshot records the list
lengths and shares everything, so folding one event is O(1) amortized and
taking a snapshot never copies the call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, TypeVar, overload

import attrs

from ._context import ContextPolicy, render
from ._events import (
    AgentSpoke,
    CallEnded,
    CallStarted,
    Event,
    HandedOff,
    HandoffCancelled,
    Interrupted,
    Note,
    OwnerChanged,
    SlotsSet,
    ToolCalled,
    ToolCancelled,
    ToolReturned,
    UnknownEvent,
    UserSpoke,
)

Role = Literal["user", "agent"]
ToolStatus = Literal["pending", "ok", "error", "cancelled"]


class Turn(NamedTuple):
    """One spoken turn. ``heard`` is ``None`` unless the turn was interrupted.

    A NamedTuple rather than an attrs class: one is built per turn on the
    record path, and this is twice as fast to build.
    """

    seq: int
    role: Role
    agent: str | None
    text: str
    heard: str | None = None
    interrupted: bool = False
    heard_ms: int | None = None
    at: float = 0.0


@attrs.frozen
class ToolCall:
    """A tool call and its outcome; ``seq`` is that of its ``ToolCalled`` event."""

    call_id: str
    name: str
    arguments: Mapping[str, Any]
    status: ToolStatus
    result: Any = None
    error: str | None = None
    agent: str | None = None
    seq: int = 0


class HandoffView(NamedTuple):
    """What a handoff's summary could state, as it stood when the ``HandedOff`` was folded."""

    pending_tools: frozenset[str]  # call ids of the tool calls running then
    slots: Mapping[str, Any]  # the call slots then


History = dict[Any, list[tuple[int, Any]]]
"""key -> [(seq, value)] in seq order: every change, never rewritten, so a
snapshot at seq S sees the last value at or before S without anything being copied."""

_GONE: Any = object()  # a deleted slot


def _at(history: History, key: Any, seq: int) -> Any:
    entries = history.get(key)
    if entries:
        for at, value in reversed(entries):  # changes to one key are few
            if at <= seq:
                return value
    return _GONE


class _Seq(Sequence[Any]):
    """A read-only view of the first ``n`` items of an append-only list, as of ``seq``."""

    __slots__ = ("_base", "_changes", "_n", "_seq")

    def __init__(self, base: list[Any], n: int, changes: History | None = None, seq: int = 0) -> None:
        self._base, self._n, self._changes, self._seq = base, n, changes, seq

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        if self._changes:
            hit = _at(self._changes, i, self._seq)
            if hit is not _GONE:
                return hit
        return self._base[i]

    def changed(self) -> list[int]:
        """The indices of the items changed at or before this view's seq (interrupted turns:
        few), in order."""
        changes, seq, n = self._changes, self._seq, self._n
        if not changes:
            return []
        return sorted(i for i, entries in changes.items() if i < n and entries[0][0] <= seq)

    def __iter__(self) -> Iterator[Any]:
        changes, base, seq = self._changes, self._base, self._seq
        for i in range(self._n):
            if changes and i in changes:
                hit = _at(changes, i, seq)
                yield base[i] if hit is _GONE else hit
            else:
                yield base[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __repr__(self) -> str:
        return repr(list(self))


class _Tools(Mapping[str, ToolCall]):
    """call id -> ToolCall, as of a snapshot."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: _Seq, index: Mapping[str, int]) -> None:
        # ``index`` only ever gains keys, so sharing it with the Folder is safe.
        self._items, self._index = items, index

    def __getitem__(self, call_id: str) -> ToolCall:
        idx = self._index.get(call_id)
        if idx is None or idx >= len(self._items):
            raise KeyError(call_id)
        tool: ToolCall = self._items[idx]
        return tool

    def __iter__(self) -> Iterator[str]:
        return (t.call_id for t in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return repr(dict(self))


class _Slots(Mapping[str, Any]):
    """Slots as of a snapshot: the last value of each key at or before ``seq``."""

    __slots__ = ("_history", "_seq")

    def __init__(self, history: History, seq: int) -> None:
        self._history, self._seq = history, seq

    def __getitem__(self, key: str) -> Any:
        value = _at(self._history, key, self._seq)
        if value is _GONE:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        # dict order is first-set order; keys set after the snapshot are skipped
        return (k for k in list(self._history) if _at(self._history, k, self._seq) is not _GONE)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr(dict(self))


class _Private(Mapping[str, Mapping[str, Any]]):
    """agent name -> that agent's private slots, as of a snapshot."""

    __slots__ = ("_histories", "_seq")

    def __init__(self, histories: dict[str, History], seq: int) -> None:
        self._histories, self._seq = histories, seq

    def __getitem__(self, agent: str) -> Mapping[str, Any]:
        history = self._histories.get(agent)
        view = _Slots(history, self._seq) if history is not None else None
        if view is None or not view:
            raise KeyError(agent)
        return view

    def __iter__(self) -> Iterator[str]:
        return (a for a in list(self._histories) if _Slots(self._histories[a], self._seq))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr({k: dict(v) for k, v in self.items()})


def _copy_json(value: Any) -> Any:
    """A private copy of a JSON-like value, so a caller mutating its dict later
    cannot change the state behind the log's back."""
    if isinstance(value, Mapping):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy_json(v) for v in value]
    return value


class CallState:
    """An immutable snapshot of one call: the fold of its log up to ``seq``."""

    __slots__ = (
        "__weakref__",
        "_parts",
        "call_id",
        "chain",
        "ended_reason",
        "epoch",
        "meta",
        "owner",
        "owner_handoff",
        "pending_handoff",
        "seq",
        "status",
        "tenant",
    )

    call_id: str
    tenant: str | None
    owner: str | None
    epoch: int
    seq: int
    status: Literal["active", "ended"]
    meta: Mapping[str, Any]
    chain: bytes
    pending_handoff: HandedOff | None
    owner_handoff: HandedOff | None
    """The handoff whose packet made the owner the owner (after the end: the last
    owner); ``None`` if it opened the call or another agent took it over."""
    ended_reason: str | None
    # The folder's lists and histories with their lengths at this snapshot; the
    # views are built when read (taking a snapshot stays a few attribute sets).
    _parts: tuple[Any, ...]

    @property
    def turns(self) -> Sequence[Turn]:
        p = self._parts
        return _Seq(p[0], p[1], p[2], self.seq)

    @property
    def tools(self) -> Mapping[str, ToolCall]:
        p = self._parts
        return _Tools(_Seq(p[3], p[4], p[5], self.seq), p[6])

    @property
    def slots(self) -> Mapping[str, Any]:
        return _Slots(self._parts[7], self.seq)

    @property
    def private_slots(self) -> Mapping[str, Mapping[str, Any]]:
        return _Private(self._parts[8], self.seq)

    @property
    def plugin_state(self) -> Mapping[str, Mapping[str, Any]]:
        """What plugin event types folded in: their namespace (``STATE``) -> key -> value."""
        return _Private(self._parts[14], self.seq)

    @property
    def handoffs(self) -> Sequence[HandedOff]:
        p = self._parts
        return _Seq(p[9], p[10])

    @property
    def notes(self) -> Sequence[Note]:
        p = self._parts
        return _Seq(p[11], p[12])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CallState is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("CallState is immutable")

    def pending_tools(self) -> list[ToolCall]:
        """Tool calls with no result yet: they must survive a handoff."""
        return [t for t in self.tools.values() if t.status == "pending"]

    @property
    def ended(self) -> bool:
        return self.status == "ended"

    def context(self, fmt: str = "openai", policy: ContextPolicy | None = None, *, agent: str | None = None) -> Any:
        """Render this state as ``fmt`` messages (``"openai"``; integrations add more).

        The context is for ``policy.agent``, else ``agent``, else the owner.
        """
        return render(self, fmt, policy, agent=agent)

    def _at_handoff(self, handoff: HandedOff) -> HandoffView | None:
        """What was true when ``handoff`` (one of ``handoffs``) was folded: for rendering what changed since."""
        p = self._parts
        views = p[13]
        for i in range(min(p[10], len(views)) - 1, -1, -1):
            if p[9][i] is handoff:
                view: HandoffView = views[i]
                return view
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CallState):
            return NotImplemented
        return (self.call_id, self.seq, self.chain) == (other.call_id, other.seq, other.chain)

    def __hash__(self) -> int:
        return hash((self.call_id, self.seq, self.chain))

    def __repr__(self) -> str:
        return (
            f"CallState(call_id={self.call_id!r}, seq={self.seq}, owner={self.owner!r}, "
            f"epoch={self.epoch}, status={self.status!r}, turns={len(self.turns)}, tools={len(self.tools)})"
        )


_set = object.__setattr__
_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Folder:
    """Folds events into state; ``snapshot()`` hands out immutable CallStates.

    Nothing a snapshot can see is ever modified: lists only grow, and in-place
    changes (an interruption, a tool result, a slot) are appended to per-key
    histories stamped with their seq, which a snapshot reads as of its own seq.
    """

    def __init__(self, call_id: str, genesis: bytes) -> None:
        self.call_id = call_id
        self.tenant: str | None = None
        self.owner: str | None = None
        self.epoch = 0
        self.seq = 0
        self.chain = genesis
        self.status: Literal["active", "ended"] = "active"
        self.meta: Mapping[str, Any] = _EMPTY
        self.ended_reason: str | None = None
        self.ended_seq: int | None = None  # seq of the CallEnded
        self.turns: list[Turn] = []
        self.tools: list[ToolCall] = []
        self.handoffs: list[HandedOff] = []
        self.notes: list[Note] = []
        self.handoff_views: list[HandoffView] = []  # one per handoff, aligned with ``handoffs``
        self.pending_handoff: HandedOff | None = None
        self.owner_handoff: HandedOff | None = None  # the redeemed handoff that made the owner
        self._turn_changes: History = {}
        self._tool_changes: History = {}
        self._slots: History = {}
        self._private: dict[str, History] = {}
        self._plugin: dict[str, History] = {}  # a plugin event type's STATE namespace -> its keys
        # an event of a type this process does not know was folded: a plugin's state may be
        # missing here, so no snapshot is written from this fold
        self.opaque = False
        # indexes: they only gain keys
        self._agent_turn_by_seq: dict[int, int] = {}
        self._agent_turn_by_id: dict[str, int] = {}
        self._last_agent_turn = -1
        self._tool_index: dict[str, int] = {}
        self._snap: CallState | None = None
        # why a handoff stopped being pending, by packet id (for error messages)
        self.fates: dict[str, str] = {}

    # -- reading ---------------------------------------------------------------

    def snapshot(self) -> CallState:
        snap = self._snap
        if snap is not None:
            return snap
        s = object.__new__(CallState)
        _set(s, "call_id", self.call_id)
        _set(s, "tenant", self.tenant)
        _set(s, "owner", self.owner)
        _set(s, "epoch", self.epoch)
        _set(s, "seq", self.seq)
        _set(s, "status", self.status)
        _set(s, "meta", self.meta)
        _set(s, "chain", self.chain)
        _set(s, "pending_handoff", self.pending_handoff)
        _set(s, "owner_handoff", self.owner_handoff)
        _set(s, "ended_reason", self.ended_reason)
        turns, tools, handoffs, notes = self.turns, self.tools, self.handoffs, self.notes
        _set(
            s,
            "_parts",
            (
                turns,
                len(turns),
                self._turn_changes,
                tools,
                len(tools),
                self._tool_changes,
                self._tool_index,
                self._slots,
                self._private,
                handoffs,
                len(handoffs),
                notes,
                len(notes),
                self.handoff_views,
                self._plugin,
            ),
        )
        self._snap = s
        return s

    def rollback(self, snap: CallState) -> None:
        """Undo everything folded since ``snap`` was taken from this folder.

        Cut lists and histories are new objects, so snapshots taken since keep
        what they saw.
        """
        seq = snap.seq
        self.seq, self.chain, self.owner, self.epoch = seq, snap.chain, snap.owner, snap.epoch
        self.status, self.meta, self.tenant = snap.status, snap.meta, snap.tenant
        self.pending_handoff, self.ended_reason = snap.pending_handoff, snap.ended_reason
        if snap.status == "active":
            self.ended_seq = None
        self.owner_handoff = snap.owner_handoff
        n_turns, n_tools = len(snap.turns), len(snap.tools)
        self.turns = self.turns[:n_turns]
        self.tools = self.tools[:n_tools]
        self.handoffs = self.handoffs[: len(snap.handoffs)]
        self.handoff_views = self.handoff_views[: len(snap.handoffs)]
        self.notes = self.notes[: len(snap.notes)]
        self._turn_changes = _cut(self._turn_changes, seq)
        self._tool_changes = _cut(self._tool_changes, seq)
        self._slots = _cut(self._slots, seq)
        self._private = {a: _cut(h, seq) for a, h in self._private.items()}
        self._plugin = {a: _cut(h, seq) for a, h in self._plugin.items()}
        self._tool_index = {k: v for k, v in self._tool_index.items() if v < n_tools}
        self._agent_turn_by_seq = {k: v for k, v in self._agent_turn_by_seq.items() if v < n_turns}
        self._agent_turn_by_id = {k: v for k, v in self._agent_turn_by_id.items() if v < n_turns}
        self._last_agent_turn = max(self._agent_turn_by_seq.values(), default=-1)
        self._snap = snap

    def agent_turn(self, ref: int | str | None) -> Turn | None:
        """The agent turn an ``Interrupted`` refers to, or None."""
        idx = self._turn_index(ref)
        return None if idx < 0 else self._turn(idx)

    def tool(self, call_id: str) -> ToolCall | None:
        idx = self._tool_index.get(call_id)
        return None if idx is None else self._tool(idx)

    def _turn(self, idx: int) -> Turn:
        changes = self._turn_changes.get(idx)
        return changes[-1][1] if changes else self.turns[idx]

    def _tool(self, idx: int) -> ToolCall:
        changes = self._tool_changes.get(idx)
        return changes[-1][1] if changes else self.tools[idx]

    def _turn_index(self, ref: int | str | None) -> int:
        if ref is None:
            return self._last_agent_turn
        if isinstance(ref, int):
            return self._agent_turn_by_seq.get(ref, -1)
        return self._agent_turn_by_id.get(ref, -1)

    # -- folding ---------------------------------------------------------------

    def _end_pending(self, fate: str) -> None:
        pending = self.pending_handoff
        if pending is not None:
            self.fates[pending.packet_id] = fate
            self.pending_handoff = None

    def apply(self, ev: Event, seq: int, chain: bytes, agent: str | None) -> None:
        """Fold one stored event. ``agent`` is the writer (``ev.agent`` or the session's)."""
        self.seq = seq
        self.chain = chain
        self._snap = None
        fold = _FOLDS.get(ev.__class__)
        if fold is not None:
            fold(self, ev, seq, chain, agent)
        elif ev.__class__.STATE is not None:  # a plugin event type that folds into plugin_state
            self._plugin_changes(ev, seq)
        elif ev.__class__ is UnknownEvent:
            self.opaque = True
        # other plugin event types, and unknown ones, change nothing here; they stay in the log

    def _plugin_changes(self, ev: Event, seq: int) -> None:
        # Checked when recorded (check_changes); an event another writer stored that this
        # plugin cannot fold stays in the log and changes nothing.
        try:
            changes = {str(k): (_GONE if v is None else _copy_json(v)) for k, v in ev.changes().items()}
        except Exception:
            return
        if changes:
            target = self._plugin.setdefault(str(ev.__class__.STATE), {})
            for k, v in changes.items():
                target.setdefault(k, []).append((seq, v))

    def _user_spoke(self, ev: UserSpoke, seq: int, chain: bytes, agent: str | None) -> None:
        if ev.final:
            self.turns.append(Turn(seq, "user", agent, ev.text, None, False, None, ev.at))

    def _agent_spoke(self, ev: AgentSpoke, seq: int, chain: bytes, agent: str | None) -> None:
        idx = len(self.turns)
        self.turns.append(Turn(seq, "agent", agent, ev.text, None, False, None, ev.at))
        self._agent_turn_by_seq[seq] = idx
        self._agent_turn_by_id[ev.id] = idx
        self._last_agent_turn = idx

    def _interrupted(self, ev: Interrupted, seq: int, chain: bytes, agent: str | None) -> None:
        # A later Interrupted of the same turn replaces the earlier one whole (heard and
        # heard_ms): a pipeline reports a guess first and the exact playout position later.
        idx = self._turn_index(ev.turn)
        if idx >= 0:
            turn = self._turn(idx)._replace(heard=ev.heard, interrupted=True, heard_ms=ev.heard_ms)
            self._turn_changes.setdefault(idx, []).append((seq, turn))

    def _tool_called(self, ev: ToolCalled, seq: int, chain: bytes, agent: str | None) -> None:
        if ev.call_id not in self._tool_index:
            self._tool_index[ev.call_id] = len(self.tools)
            args = MappingProxyType(_copy_json(ev.arguments))
            self.tools.append(ToolCall(ev.call_id, ev.name, args, "pending", agent=agent, seq=seq))

    def _tool_done(self, call_id: str, seq: int, agent: str | None) -> tuple[int, ToolCall]:
        found = self._tool_index.get(call_id)
        if found is None:  # a result for a call we never saw: keep it visible
            idx = self._tool_index[call_id] = len(self.tools)
            self.tools.append(ToolCall(call_id, "", _EMPTY, "pending", agent=agent, seq=seq))
        else:
            idx = found
        return idx, self._tool(idx)

    def _tool_returned(self, ev: ToolReturned, seq: int, chain: bytes, agent: str | None) -> None:
        idx, current = self._tool_done(ev.call_id, seq, agent)
        if current.status == "pending":  # the first result wins
            status: ToolStatus = "error" if ev.error is not None else "ok"
            done = attrs.evolve(current, status=status, result=_copy_json(ev.result), error=ev.error)
            self._tool_changes.setdefault(idx, []).append((seq, done))

    def _tool_cancelled(self, ev: ToolCancelled, seq: int, chain: bytes, agent: str | None) -> None:
        idx, current = self._tool_done(ev.call_id, seq, agent)
        if current.status == "pending":  # the first result wins
            done = attrs.evolve(current, status="cancelled", error=ev.reason)
            self._tool_changes.setdefault(idx, []).append((seq, done))

    def _slots_set(self, ev: SlotsSet, seq: int, chain: bytes, agent: str | None) -> None:
        if ev.scope == "call":
            target = self._slots
        elif ev.scope.startswith("agent:"):
            target = self._private.setdefault(ev.scope[6:], {})
        else:
            return
        for k, v in ev.values.items():
            target.setdefault(k, []).append((seq, _GONE if v is None else _copy_json(v)))

    def _note(self, ev: Note, seq: int, chain: bytes, agent: str | None) -> None:
        self.notes.append(_stamped(ev, seq, chain, agent))

    def _handed_off(self, ev: HandedOff, seq: int, chain: bytes, agent: str | None) -> None:
        h = _stamped(ev, seq, chain, agent)
        self._end_pending("replaced by a later handoff")
        self.handoffs.append(h)
        pending = frozenset(t.call_id for i in range(len(self.tools)) if (t := self._tool(i)).status == "pending")
        self.handoff_views.append(HandoffView(pending, MappingProxyType(dict(_Slots(self._slots, seq)))))
        self.pending_handoff = h

    def _handoff_cancelled(self, ev: HandoffCancelled, seq: int, chain: bytes, agent: str | None) -> None:
        pending = self.pending_handoff
        if pending is not None and pending.packet_id == ev.packet_id:
            self._end_pending("cancelled by its sender")

    def _owner_changed(self, ev: OwnerChanged, seq: int, chain: bytes, agent: str | None) -> None:
        pending = self.pending_handoff
        if ev.packet_id is not None and pending is not None and pending.packet_id == ev.packet_id:
            self.owner_handoff = pending  # redeemed: its summary is what the new owner reads
        elif ev.owner != self.owner:
            self.owner_handoff = None  # another agent took over: no handoff brought the call to it
        self.owner = ev.owner
        self.epoch = ev.epoch
        self._end_pending(
            f"redeemed already by {ev.owner!r}"
            if ev.packet_id is not None
            else f"cleared when {ev.owner!r} took over the call"
        )

    def _call_started(self, ev: CallStarted, seq: int, chain: bytes, agent: str | None) -> None:
        self.meta = MappingProxyType(_copy_json(ev.meta))
        self.tenant = ev.tenant
        self.owner = agent
        self.epoch = 1

    def _call_ended(self, ev: CallEnded, seq: int, chain: bytes, agent: str | None) -> None:
        self.status = "ended"
        self.owner = None
        self._end_pending("cleared when the call ended")
        self.ended_reason = ev.reason
        self.ended_seq = seq


_Fold = Callable[[Folder, Any, int, bytes, "str | None"], None]
_FOLDS: dict[type[Event], _Fold] = {
    UserSpoke: Folder._user_spoke,
    AgentSpoke: Folder._agent_spoke,
    Interrupted: Folder._interrupted,
    ToolCalled: Folder._tool_called,
    ToolReturned: Folder._tool_returned,
    ToolCancelled: Folder._tool_cancelled,
    SlotsSet: Folder._slots_set,
    Note: Folder._note,
    HandedOff: Folder._handed_off,
    HandoffCancelled: Folder._handoff_cancelled,
    OwnerChanged: Folder._owner_changed,
    CallStarted: Folder._call_started,
    CallEnded: Folder._call_ended,
}
"""Event type -> how it changes the fold: one lookup per event, and each method typed for its event."""


def _cut(history: History, seq: int) -> History:
    out: History = {}
    for key, entries in history.items():
        kept = [e for e in entries if e[0] <= seq]
        if kept:
            out[key] = kept
    return out


_E = TypeVar("_E", bound=Event)


def _stamped(ev: _E, seq: int, chain: bytes, agent: str | None) -> _E:
    if ev.seq == seq and ev.chain == chain and ev.agent == agent:
        return ev
    return attrs.evolve(ev, seq=seq, chain=chain, agent=agent)
