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

import gc
from array import array
from collections.abc import Sequence
from functools import partial
from itertools import repeat
from types import MappingProxyType
from typing import Any

import msgpack

from ._backend import Snapshot
from ._codec import decode_event, encode_event, packb
from ._events import HandedOff
from ._state import Folder, HandoffView, ToolCall, Turn

VERSION = 4  # 4: plugin_state
_ROLE_CODE = {"user": ord("u"), "agent": ord("a")}
_ROLES = {ord("u"): "user", ord("a"): "agent"}


def _plain(value: Any) -> Any:
    """A top-level read-only mapping as a dict (the values inside are plain already)."""
    return dict(value) if isinstance(value, MappingProxyType) else value


def _index(handoffs: Sequence[HandedOff], which: HandedOff | None) -> int:
    return -1 if which is None else next(i for i, h in enumerate(handoffs) if h is which)


def snapshot_of(folder: Folder) -> Snapshot:
    """The folder's state, encoded, at its current seq (columns built by C-level loops)."""
    state = folder.snapshot()
    turns = folder.turns[:]
    for idx, changes in folder._turn_changes.items():  # interruptions: few, kept apart from the turns
        turns[idx] = changes[-1][1]
    cuts = [(idx, *turns[idx][4:7]) for idx in sorted(folder._turn_changes)]
    if turns:
        seqs, roles, agents, texts, _, _, _, ats = zip(*turns, strict=True)
    else:
        seqs = roles = agents = texts = ats = ()
    names = list(dict.fromkeys(agents))
    index = {name: i for i, name in enumerate(names)}
    by_idx = {idx: tid for tid, idx in folder._agent_turn_by_id.items()}
    agent_turns = sorted(by_idx)
    tools = [
        (t.call_id, t.name, _plain(t.arguments), t.status, t.result, t.error, t.agent, t.seq)
        for t in (folder._tool(i) for i in range(len(folder.tools)))
    ]
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
        # turns, by column: one object per turn (its text) instead of nine
        array("q", seqs).tobytes(),
        bytes(map(_ROLE_CODE.__getitem__, roles)),
        names,
        array("I", map(index.__getitem__, agents)).tobytes(),
        list(texts),
        array("d", ats).tobytes(),
        cuts,
        array("I", agent_turns).tobytes(),
        [by_idx[i] for i in agent_turns],
        tools,
        dict(state.slots),
        {a: dict(v) for a, v in state.private_slots.items()},
        [(h.seq, h.chain, encode_event(h, h.agent)) for h in state.handoffs],
        [(n.seq, n.chain, encode_event(n, n.agent)) for n in state.notes],
        _index(state.handoffs, state.pending_handoff),
        dict(folder.fates),
        _index(state.handoffs, folder.owner_handoff),
        [(sorted(v.pending_tools), dict(v.slots)) for v in folder.handoff_views],
        {ns: dict(v) for ns, v in state.plugin_state.items()},
    )
    return Snapshot(state.seq, state.chain, packb(body))


def fold_from_snapshot(call_id: str, snap: Snapshot) -> Folder:
    """A folder at ``snap.seq``; ValueError if the snapshot is not one of this call's."""
    collecting = gc.isenabled()
    gc.disable()  # thousands of small objects at once: no collection passes midway
    try:
        return _fold(call_id, snap)
    finally:
        if collecting:
            gc.enable()


def _fold(call_id: str, snap: Snapshot) -> Folder:
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
            seqs,
            roles,
            names,
            agent_idx,
            texts,
            ats,
            cuts,
            agent_turns,
            agent_turn_ids,
            tools,
            slots,
            private,
            handoffs,
            notes,
            pending,
            fates,
            owner_handoff,
            views,
            plugin,
        ) = body
        if version != VERSION or sid != call_id or seq != snap.seq:
            raise ValueError("the snapshot is of another call, seq or version")
        seq_col = array("q", seqs).tolist()
        at_col = array("d", ats).tolist()
        agent_col = list(map(names.__getitem__, array("I", agent_idx)))
        role_col = list(map(_ROLES.__getitem__, roles))
        agent_at = array("I", agent_turns).tolist()
    except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as exc:
        raise ValueError(f"unreadable snapshot: {exc}") from exc
    n = len(texts)
    if not len(seq_col) == len(at_col) == len(agent_col) == len(role_col) == n:
        raise ValueError("unreadable snapshot: its turn columns differ in length")
    f = Folder(call_id, snap.chain)
    f.seq, f.chain, f.tenant, f.owner, f.epoch, f.status = seq, snap.chain, tenant, owner, epoch, status
    f.meta = MappingProxyType(meta)
    f.ended_reason, f.ended_seq = ended_reason, ended_seq
    make = partial(tuple.__new__, Turn)
    f.turns = turns = list(
        map(
            make,
            zip(
                seq_col,
                role_col,
                agent_col,
                texts,
                repeat(None, n),
                repeat(False, n),
                repeat(None, n),
                at_col,
                strict=True,
            ),
        )
    )
    for i, heard, interrupted, heard_ms in cuts:  # kept as changes, as the folder keeps them
        f._turn_changes[i] = [(seq, turns[i]._replace(heard=heard, interrupted=interrupted, heard_ms=heard_ms))]
    if len(agent_turn_ids) != len(agent_at) or (agent_at and agent_at[-1] >= n):
        raise ValueError("unreadable snapshot: its agent turns do not match its turns")
    f._agent_turn_by_seq = dict(zip(map(seq_col.__getitem__, agent_at), agent_at, strict=True))
    f._agent_turn_by_id = dict(zip(agent_turn_ids, agent_at, strict=True))
    f._last_agent_turn = agent_at[-1] if agent_at else -1
    for i, (tcid, name, args, status_, result, error, agent, tseq) in enumerate(tools):
        f.tools.append(ToolCall(tcid, name, MappingProxyType(args), status_, result, error, agent, tseq))
        f._tool_index[tcid] = i
    f._slots = {k: [(seq, v)] for k, v in slots.items()}
    f._private = {a: {k: [(seq, v)] for k, v in vals.items()} for a, vals in private.items()}
    f._plugin = {ns: {k: [(seq, v)] for k, v in vals.items()} for ns, vals in plugin.items()}
    f.handoffs = [decode_event(data, hseq, hchain) for hseq, hchain, data in handoffs]  # type: ignore[misc]
    f.notes = [decode_event(data, nseq, nchain) for nseq, nchain, data in notes]  # type: ignore[misc]
    f.pending_handoff = f.handoffs[pending] if pending >= 0 else None
    f.owner_handoff = f.handoffs[owner_handoff] if owner_handoff >= 0 else None
    f.handoff_views = [HandoffView(frozenset(tools_), MappingProxyType(slots_)) for tools_, slots_ in views]
    f.fates = dict(fates)
    return f
