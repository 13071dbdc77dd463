"""CallState: the fold of a call's log, as cheap immutable snapshots.

The fold is kept by a mutable ``Folder``. Turns, tools, handoffs and notes live
in append-only lists; the rare in-place changes (an interruption, a tool result,
slot merges) go to small copy-on-write overlays. A snapshot records the list
lengths and shares everything, so folding one event is O(1) amortized and
taking a snapshot never copies the call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, overload

import attrs

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
    UserSpoke,
)

if TYPE_CHECKING:
    from ._context import ContextPolicy

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


class _Seq(Sequence[Any]):
    """A read-only view of the first ``n`` items of an append-only list, with overlay."""

    __slots__ = ("_base", "_n", "_over")

    def __init__(self, base: list[Any], n: int, over: Mapping[int, Any] | None = None) -> None:
        self._base, self._n, self._over = base, n, over

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
        if self._over:
            hit = self._over.get(i)
            if hit is not None:
                return hit
        return self._base[i]

    def __iter__(self) -> Iterator[Any]:
        over = self._over
        base = self._base
        for i in range(self._n):
            yield (over.get(i) or base[i]) if over else base[i]

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
        return self._items[idx]  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return (t.call_id for t in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return repr(dict(self))


class CallState:
    """An immutable snapshot of one call: the fold of its log up to ``seq``."""

    __slots__ = (
        "__weakref__",
        "call_id",
        "chain",
        "ended_reason",
        "epoch",
        "handoffs",
        "meta",
        "notes",
        "owner",
        "pending_handoff",
        "private_slots",
        "seq",
        "slots",
        "status",
        "tenant",
        "tools",
        "turns",
    )

    call_id: str
    tenant: str | None
    owner: str | None
    epoch: int
    seq: int
    status: Literal["active", "ended"]
    meta: Mapping[str, Any]
    chain: bytes
    turns: Sequence[Turn]
    tools: Mapping[str, ToolCall]
    slots: Mapping[str, Any]
    private_slots: Mapping[str, Mapping[str, Any]]
    handoffs: Sequence[HandedOff]
    notes: Sequence[Note]
    pending_handoff: HandedOff | None
    ended_reason: str | None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CallState is immutable")

    def pending_tools(self) -> list[ToolCall]:
        """Tool calls with no result yet: they must survive a handoff."""
        return [t for t in self.tools.values() if t.status == "pending"]

    @property
    def ended(self) -> bool:
        return self.status == "ended"

    def context(self, fmt: str = "openai", policy: ContextPolicy | None = None) -> Any:
        """Render this state as ``fmt`` messages (see :mod:`voicestate._context`)."""
        from ._context import render

        return render(self, fmt, policy)

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


class Folder:
    """Folds events into state; ``snapshot()`` hands out immutable CallStates."""

    def __init__(self, call_id: str, genesis: bytes) -> None:
        self.call_id = call_id
        self.tenant: str | None = None
        self.owner: str | None = None
        self.epoch = 0
        self.seq = 0
        self.chain = genesis
        self.status: Literal["active", "ended"] = "active"
        self.meta: Mapping[str, Any] = {}
        self.ended_reason: str | None = None
        self.turns: list[Turn] = []
        self.tools: list[ToolCall] = []
        self.handoffs: list[HandedOff] = []
        self.notes: list[Note] = []
        self.pending_handoff: HandedOff | None = None
        # copy-on-write parts; a flag says a snapshot shares them
        self._turn_over: dict[int, Turn] = {}
        self._tool_over: dict[int, ToolCall] = {}
        self._slots: dict[str, Any] = {}
        self._private: dict[str, dict[str, Any]] = {}
        self._shared = False
        self._owned_private: set[str] = set()
        # indexes: append-only, never shared with snapshots
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
        self._shared = True
        self._owned_private = set()
        s = object.__new__(CallState)
        _set(s, "call_id", self.call_id)
        _set(s, "tenant", self.tenant)
        _set(s, "owner", self.owner)
        _set(s, "epoch", self.epoch)
        _set(s, "seq", self.seq)
        _set(s, "status", self.status)
        _set(s, "meta", self.meta)
        _set(s, "chain", self.chain)
        _set(s, "turns", _Seq(self.turns, len(self.turns), self._turn_over))
        _set(s, "tools", _Tools(_Seq(self.tools, len(self.tools), self._tool_over), self._tool_index))
        _set(s, "slots", self._slots)
        _set(s, "private_slots", self._private)
        _set(s, "handoffs", _Seq(self.handoffs, len(self.handoffs)))
        _set(s, "notes", _Seq(self.notes, len(self.notes)))
        _set(s, "pending_handoff", self.pending_handoff)
        _set(s, "ended_reason", self.ended_reason)
        self._snap = s
        return s

    def rollback(self, snap: CallState) -> None:
        """Undo everything folded since ``snap`` was taken from this folder."""
        _rollback(self, snap)

    def agent_turn(self, ref: int | str | None) -> Turn | None:
        """The agent turn an ``Interrupted`` refers to, or None."""
        idx = self._turn_index(ref)
        return None if idx < 0 else self._turn(idx)

    def tool(self, call_id: str) -> ToolCall | None:
        idx = self._tool_index.get(call_id)
        return None if idx is None else (self._tool_over.get(idx) or self.tools[idx])

    def _turn(self, idx: int) -> Turn:
        return self._turn_over.get(idx) or self.turns[idx]

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

    def _unshare(self) -> None:
        if self._shared:
            self._turn_over = dict(self._turn_over)
            self._tool_over = dict(self._tool_over)
            self._slots = dict(self._slots)
            self._private = dict(self._private)
            self._shared = False

    def apply(self, ev: Event, seq: int, chain: bytes, agent: str | None) -> None:
        """Fold one stored event. ``agent`` is the writer (``ev.agent`` or the session's)."""
        self.seq = seq
        self.chain = chain
        self._snap = None
        t = type(ev)
        if t is UserSpoke:
            if ev.final:  # type: ignore[attr-defined]
                self.turns.append(Turn(seq, "user", agent, ev.text, at=ev.at))  # type: ignore[attr-defined]
        elif t is AgentSpoke:
            idx = len(self.turns)
            self.turns.append(Turn(seq, "agent", agent, ev.text, at=ev.at))  # type: ignore[attr-defined]
            self._agent_turn_by_seq[seq] = idx
            self._agent_turn_by_id[ev.id] = idx
            self._last_agent_turn = idx
        elif t is Interrupted:
            assert isinstance(ev, Interrupted)
            idx = self._turn_index(ev.turn)
            if idx >= 0:
                self._unshare()
                self._turn_over[idx] = self._turn(idx)._replace(heard=ev.heard, interrupted=True, heard_ms=ev.heard_ms)
        elif t is ToolCalled:
            assert isinstance(ev, ToolCalled)
            if ev.call_id not in self._tool_index:
                self._tool_index[ev.call_id] = len(self.tools)
                self.tools.append(ToolCall(ev.call_id, ev.name, ev.arguments, "pending", agent=agent, seq=seq))
        elif t is ToolReturned or t is ToolCancelled:
            call_id: str = ev.call_id  # type: ignore[attr-defined]
            found = self._tool_index.get(call_id)
            if found is None:  # a result for a call we never saw: keep it visible
                idx = self._tool_index[call_id] = len(self.tools)
                self.tools.append(ToolCall(call_id, "", {}, "pending", agent=agent, seq=seq))
            else:
                idx = found
            current = self._tool_over.get(idx) or self.tools[idx]
            if current.status == "pending":  # the first result wins
                self._unshare()
                if isinstance(ev, ToolReturned):
                    status: ToolStatus = "error" if ev.error is not None else "ok"
                    self._tool_over[idx] = attrs.evolve(current, status=status, result=ev.result, error=ev.error)
                else:
                    assert isinstance(ev, ToolCancelled)
                    self._tool_over[idx] = attrs.evolve(current, status="cancelled", error=ev.reason)
        elif t is SlotsSet:
            assert isinstance(ev, SlotsSet)
            self._unshare()
            if ev.scope == "call":
                target = self._slots
            elif ev.scope.startswith("agent:"):
                name = ev.scope[6:]
                inner = self._private.get(name)
                if inner is None or name not in self._owned_private:
                    inner = dict(inner or {})
                    self._private[name] = inner
                    self._owned_private.add(name)
                target = inner
            else:
                return
            for k, v in ev.values.items():
                if v is None:
                    target.pop(k, None)
                else:
                    target[k] = v
        elif t is Note:
            self.notes.append(_stamped(ev, seq, chain, agent))  # type: ignore[arg-type]
        elif t is HandedOff:
            h: HandedOff = _stamped(ev, seq, chain, agent)  # type: ignore[assignment]
            self._end_pending("replaced by a later handoff")
            self.handoffs.append(h)
            self.pending_handoff = h
        elif t is HandoffCancelled:
            pending = self.pending_handoff
            if pending is not None and pending.packet_id == ev.packet_id:  # type: ignore[attr-defined]
                self._end_pending("cancelled by its sender")
        elif t is OwnerChanged:
            assert isinstance(ev, OwnerChanged)
            self.owner = ev.owner
            self.epoch = ev.epoch
            self._end_pending(
                f"redeemed already by {ev.owner!r}"
                if ev.packet_id is not None
                else f"cleared when {ev.owner!r} took over the call"
            )
        elif t is CallStarted:
            assert isinstance(ev, CallStarted)
            self.meta = ev.meta
            self.tenant = ev.tenant
            self.owner = agent
            self.epoch = 1
        elif t is CallEnded:
            self.status = "ended"
            self.owner = None
            self._end_pending("cleared when the call ended")
            self.ended_reason = ev.reason  # type: ignore[attr-defined]
        # Unknown and plugin event types change nothing here; they stay in the log.


def _stamped(ev: Event, seq: int, chain: bytes, agent: str | None) -> Event:
    if ev.seq == seq and ev.chain == chain and ev.agent == agent:
        return ev
    return attrs.evolve(ev, seq=seq, chain=chain, agent=agent)


def _rollback(folder: Folder, snap: CallState) -> None:
    """Return ``folder`` to the state of ``snap`` (taken from it earlier).

    Lists are cut into new lists, so snapshots taken since keep what they saw.
    """
    f = folder
    f.seq, f.chain, f.owner, f.epoch = snap.seq, snap.chain, snap.owner, snap.epoch
    f.status, f.meta, f.tenant = snap.status, snap.meta, snap.tenant
    f.pending_handoff, f.ended_reason = snap.pending_handoff, snap.ended_reason
    turns: _Seq = snap.turns  # type: ignore[assignment]
    tools: _Seq = snap.tools._items  # type: ignore[attr-defined]
    n_turns, n_tools = len(turns), len(tools)
    f.turns = f.turns[:n_turns]
    f.tools = f.tools[:n_tools]
    f.handoffs = f.handoffs[: len(snap.handoffs)]
    f.notes = f.notes[: len(snap.notes)]
    f._turn_over = turns._over  # type: ignore[assignment]
    f._tool_over = tools._over  # type: ignore[assignment]
    f._slots = snap.slots  # type: ignore[assignment]
    f._private = snap.private_slots  # type: ignore[assignment]
    f._shared = True
    f._owned_private = set()
    f._tool_index = {k: v for k, v in f._tool_index.items() if v < n_tools}
    f._agent_turn_by_seq = {k: v for k, v in f._agent_turn_by_seq.items() if v < n_turns}
    f._agent_turn_by_id = {k: v for k, v in f._agent_turn_by_id.items() if v < n_turns}
    f._last_agent_turn = max(f._agent_turn_by_seq.values(), default=-1)
    f._snap = snap
