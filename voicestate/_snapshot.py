"""Snapshots: the fold of a call at some seq, encoded once, so a resume reads the
snapshot and the events after it instead of decoding and folding the whole log.

The encoding is msgpack of the fold's current values (no per-key histories: a
folder restored from a snapshot is only ever read at or after its seq). Turns are
plain arrays, turned into ``Turn`` tuples without per-field work; handoffs and
notes keep their events' canonical bytes. A snapshot is not covered by the hash
chain itself: it carries the chain value of its seq, and the events after it
must chain onto that value (checked on every resume), so a snapshot that does
not fit the log is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import msgpack

from ._backend import Snapshot
from ._codec import decode_event, encode_event, packb
from ._events import HandedOff
from ._state import Folder, HandoffView, ToolCall, Turn

VERSION = 2


def _plain(value: Any) -> Any:
    if isinstance(value, (dict, MappingProxyType)):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _index(handoffs: Sequence[HandedOff], which: HandedOff | None) -> int:
    return -1 if which is None else next(i for i, h in enumerate(handoffs) if h is which)


def snapshot_of(folder: Folder) -> Snapshot:
    """The folder's state, encoded, at its current seq."""
    state = folder.snapshot()
    turns = list(state.turns)
    agent_ids = {idx: tid for tid, idx in folder._agent_turn_by_id.items()}
    tools = [
        (t.call_id, t.name, _plain(t.arguments), t.status, _plain(t.result), t.error, t.agent, t.seq)
        for t in state.tools.values()
    ]
    handoffs = [(h.seq, h.chain, encode_event(h, h.agent)) for h in state.handoffs]
    notes = [(n.seq, n.chain, encode_event(n, n.agent)) for n in state.notes]
    pending = state.pending_handoff
    body = (
        VERSION,
        folder.call_id,
        state.seq,
        state.tenant,
        state.owner,
        state.epoch,
        state.status,
        _plain(state.meta),
        state.ended_reason,
        folder.ended_seq,
        [tuple(t) for t in turns],
        [(i, agent_ids[i]) for i in sorted(agent_ids)],
        tools,
        _plain(dict(state.slots)),
        {a: _plain(dict(v)) for a, v in state.private_slots.items()},
        handoffs,
        notes,
        _index(state.handoffs, pending),
        dict(folder.fates),
        _index(state.handoffs, folder.owner_handoff),
        [(sorted(v.pending_tools), _plain(v.slots)) for v in folder.handoff_views],
    )
    return Snapshot(state.seq, state.chain, packb(body))


def fold_from_snapshot(call_id: str, snap: Snapshot) -> Folder:
    """A folder at ``snap.seq``; ValueError if the snapshot is not one of this call's."""
    try:
        body = msgpack.unpackb(snap.data, raw=False, use_list=True, strict_map_key=False)
        (
            version,
            sid,
            seq,
            tenant,
            owner,
            epoch,
            status,
            meta,
            ended_reason,
            ended_seq,
            turns,
            agent_ids,
            tools,
            slots,
            private,
            handoffs,
            notes,
            pending,
            fates,
            owner_handoff,
            views,
        ) = body
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"unreadable snapshot: {exc}") from exc
    if version != VERSION or sid != call_id or seq != snap.seq:
        raise ValueError("the snapshot is of another call, seq or version")
    f = Folder(call_id, snap.chain)
    f.seq, f.chain, f.tenant, f.owner, f.epoch, f.status = seq, snap.chain, tenant, owner, epoch, status
    f.meta = MappingProxyType(meta)
    f.ended_reason, f.ended_seq = ended_reason, ended_seq
    make_turn = Turn._make
    f.turns = [make_turn(t) for t in turns]
    for idx, tid in agent_ids:
        f._agent_turn_by_seq[f.turns[idx].seq] = idx
        f._agent_turn_by_id[tid] = idx
        f._last_agent_turn = idx
    for i, (tcid, name, args, status_, result, error, agent, tseq) in enumerate(tools):
        f.tools.append(ToolCall(tcid, name, MappingProxyType(args), status_, result, error, agent, tseq))
        f._tool_index[tcid] = i
    f._slots = {k: [(seq, v)] for k, v in slots.items()}
    f._private = {a: {k: [(seq, v)] for k, v in vals.items()} for a, vals in private.items()}
    f.handoffs = [decode_event(data, hseq, hchain) for hseq, hchain, data in handoffs]  # type: ignore[misc]
    f.notes = [decode_event(data, nseq, nchain) for nseq, nchain, data in notes]  # type: ignore[misc]
    f.pending_handoff = f.handoffs[pending] if pending >= 0 else None
    f.owner_handoff = f.handoffs[owner_handoff] if owner_handoff >= 0 else None
    f.handoff_views = [HandoffView(frozenset(tools_), MappingProxyType(slots_)) for tools_, slots_ in views]
    f.fates = dict(fates)
    return f
