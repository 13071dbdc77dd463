"""A checkpoint as stored: its difference from an earlier checkpoint of the thread, its base.

A call thread stores three checkpoints a graph step, so each byte counts (DESIGN.md: a
LangGraph agent on a voice call stores at most twice the raw JSON of its messages).

A graph step changes a few channel versions, one node's seen versions, the
step and the ids; the rest repeats. A ``Checkpointed`` event names its base
(the seq of an earlier ``Checkpointed`` of the same writer and namespace) and
stores what differs; a name the base knows (a channel or node name) is written
as its index in the base's sorted names. With no base, everything is whole and
names are written out.

- ``cp``: ``iu`` the id as 22 characters (``id`` when it is not a UUID); ``ts``
  as microseconds since the epoch when that gives back the same text;
  ``cv``/``cv-`` channel versions set (``[[name, version], ...]``)/removed;
  ``vs``/``vs-`` the nodes whose seen versions changed (``[[node, [[name,
  version], ...]], ...]``)/went; ``v`` and ``uc`` (``updated_channels``) when
  they differ; ``x`` any key LangGraph adds later, whole.
- ``meta``: ``None`` when only ``step`` moved on by one; the new ``source`` alone
  when that is all that changed besides; else ``{"+": set, "-": removed}``
  (``step`` left out when it is the base's plus one), ``{"=": whole}``, or
  ``["serde", type, b64]`` when it is not JSON.
- ``blobs``: one entry a channel the checkpoint stores, at the checkpoint's
  version of it: ``[name]`` the voice call's conversation (not stored here),
  ``[name, 0]`` empty, ``[name, 1]`` null, ``[name, 2]`` an input whose messages
  were recorded in the call, ``[name, type, b64]`` a serde value; at another
  version, ``[name, kind, data, version]`` with the kind spelled out.
- the event: ``base`` 0 is the writer's previous checkpoint in the namespace
  (a voice call's owner is its one writer), -1 none, else that event's seq; on
  a voice call's root namespace the event's id is the checkpoint's id (22
  characters: a retried put is stored once) and its ``at`` the checkpoint's
  ``ts`` when that gives the same text back.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ._events import Checkpointed

KNOWN = ("v", "id", "ts", "channel_versions", "versions_seen", "updated_channels")
CALL_VALUE = "vs"  # the kind of a voice call's conversation, which a checkpoint does not store
INPUT_VALUE = "vsin"  # the kind of a graph input whose messages were recorded in the call
_SHORT = {CALL_VALUE: None, "empty": 0, "null": 1, INPUT_VALUE: 2}
_LONG = {0: "empty", 1: "null", 2: INPUT_VALUE}

# A channel's stored value: (version, kind, data); data is base64 for a serde kind, else text.
Value = tuple[Any, str, str]


class Base(Protocol):
    """What a checkpoint is stored against (``_threads.Stored``)."""

    id: str
    seq: int
    cp: Mapping[str, Any]
    meta: Any

    @property
    def names(self) -> list[str]: ...


def short(text: str) -> str:
    """12 characters that stand for ``text`` (a message or checkpoint id) in event ids."""
    return base64.urlsafe_b64encode(hashlib.blake2b(text.encode(), digest_size=9).digest()).decode("ascii")


def pack_event(
    *,
    ns: str,
    checkpoint: Mapping[str, Any],
    meta: Any,
    parent: str | None,
    values: Mapping[str, Value],
    base: Base | None,
    implicit: bool,
    id_in_event: bool,
) -> Checkpointed:
    """The event that stores ``checkpoint`` against ``base`` (``implicit``: it is the writer's previous one)."""
    names = Names(base.names if base is not None else ())
    cp = pack_cp(checkpoint, base.cp if base is not None else None, names)
    versions = checkpoint.get("channel_versions") or {}
    blobs: list[Any] = []
    for channel, (version, kind, data) in values.items():
        ref = names(channel)
        if versions.get(channel) != version:
            blobs.append([ref, kind, data, version])
        elif kind in _SHORT:
            code = _SHORT[kind]
            blobs.append([ref] if code is None else [ref, code])
        else:
            blobs.append([ref, kind, data])
    fields: dict[str, Any] = {"ns": ns, "cp": cp, "blobs": blobs}
    if id_in_event and "iu" in cp:
        fields["id"] = cp.pop("iu")
    at = _ts_as_at(checkpoint.get("ts"))
    if at is not None:
        fields["at"] = at
        cp.pop("ts", None)
    if base is None:
        fields.update(base=-1, meta=meta, parent=parent)
    else:
        fields.update(
            base=0 if implicit else base.seq,
            meta=pack_meta(meta, base.meta),
            parent=None if parent == base.id else parent,
            orphan=parent is None,
        )
    return Checkpointed(**fields)


def unpack_event(ev: Checkpointed, base: Base | None) -> tuple[dict[str, Any], Any, str | None, dict[str, Value]]:
    """(checkpoint without values, metadata, parent id, the values it stores) of ``ev`` against ``base``."""
    packed = dict(ev.cp)
    if "iu" not in packed and "id" not in packed:
        packed["iu"] = ev.id
    if "ts" not in packed:
        packed["ts"] = _at_as_ts(ev.at)
    if base is None:
        known: Sequence[str] = ()
        cp, meta = unpack_cp(packed, None, known), ev.meta
    else:
        known = base.names
        cp, meta = unpack_cp(packed, base.cp, known), unpack_meta(ev.meta, base.meta)
    parent = None if ev.orphan else (ev.parent or (base.id if base is not None else None))
    versions = cp["channel_versions"]
    values: dict[str, Value] = {}
    for entry in ev.blobs:
        channel = _name(known, entry[0])
        if len(entry) > 3:
            values[channel] = (entry[3], entry[1], entry[2])
        elif len(entry) == 3:
            values[channel] = (versions.get(channel), entry[1], entry[2])
        elif len(entry) == 2:
            kind = _LONG[entry[1]]
            values[channel] = (versions.get(channel), kind, short(cp["id"]) if kind == INPUT_VALUE else "")
        else:
            values[channel] = (versions.get(channel), CALL_VALUE, "")
    return cp, meta, parent, values


def _ts_as_at(ts: Any) -> float | None:
    """``ts`` as the event's clock, when it gives the same text back."""
    micros = _pack_ts(ts)
    if type(micros) is not int:
        return None
    at = micros / 1_000_000
    return at if _at_as_ts(at) == ts else None


def _at_as_ts(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MISSING = object()
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def names_of(cp: Mapping[str, Any]) -> list[str]:
    """The names a checkpoint knows, sorted: what its successors refer to by index."""
    found = set(cp.get("channel_versions") or ())
    for node, seen in (cp.get("versions_seen") or {}).items():
        found.add(node)
        found.update(seen)
    return sorted(found)


class Names:
    """Names to write: an index into the base's names where it has them."""

    def __init__(self, known: Sequence[str]) -> None:
        self.index = {n: i for i, n in enumerate(known)}

    def __call__(self, name: str) -> Any:
        return self.index.get(name, name)


def _name(known: Sequence[str], ref: Any) -> str:
    return known[ref] if type(ref) is int else ref


def pack_cp(cp: Mapping[str, Any], base: Mapping[str, Any] | None, names: Names) -> dict[str, Any]:
    cid = cp["id"]
    out: dict[str, Any] = {"iu": _pack_uuid(cid)} if _UUID.match(cid) else {"id": cid}
    out["ts"] = _pack_ts(cp.get("ts"))
    cv, seen = cp.get("channel_versions") or {}, cp.get("versions_seen") or {}
    bcv = (base.get("channel_versions") or {}) if base is not None else {}
    bvs = (base.get("versions_seen") or {}) if base is not None else {}
    if base is None or cp.get("v") != base.get("v"):
        out["v"] = cp.get("v")
    changed = {k: v for k, v in cv.items() if bcv.get(k, _MISSING) != v}
    shared = _most_shared(changed)
    if shared is not None:  # a step sets the channels it updates to one new version
        out["cw"] = [shared, *(names(k) for k, v in changed.items() if v == shared and type(v) is type(shared))]
        changed = {k: v for k, v in changed.items() if not (v == shared and type(v) is type(shared))}
    if changed:
        out["cv"] = [[names(k), v] for k, v in changed.items()]
    if gone := [names(k) for k in bcv if k not in cv]:
        out["cv-"] = gone
    nodes = [[names(k), [[names(c), x] for c, x in v.items()]] for k, v in seen.items() if bvs.get(k, _MISSING) != v]
    if nodes:
        out["vs"] = nodes
    if unseen := [names(k) for k in bvs if k not in seen]:
        out["vs-"] = unseen
    uc = cp.get("updated_channels")
    if base is None or uc != base.get("updated_channels"):
        out["uc"] = None if uc is None else [names(c) for c in uc]
    if extra := {k: v for k, v in cp.items() if k not in KNOWN and k != "channel_values"}:
        out["x"] = extra
    return out


def unpack_cp(packed: Mapping[str, Any], base: Mapping[str, Any] | None, known: Sequence[str]) -> dict[str, Any]:
    cid = _unpack_uuid(packed["iu"]) if "iu" in packed else packed["id"]
    if base is None:
        cv: dict[str, Any] = {}
        seen: dict[str, Any] = {}
        v, uc = packed.get("v"), packed.get("uc")
    else:
        gone = {_name(known, n) for n in packed.get("cv-") or ()}
        cv = {k: x for k, x in (base.get("channel_versions") or {}).items() if k not in gone}
        unseen = {_name(known, n) for n in packed.get("vs-") or ()}
        seen = {k: x for k, x in (base.get("versions_seen") or {}).items() if k not in unseen}
        v = packed["v"] if "v" in packed else base.get("v")
        uc = packed["uc"] if "uc" in packed else base.get("updated_channels")
    if "cw" in packed:
        version, *shared = packed["cw"]
        for n in shared:
            cv[_name(known, n)] = version
    for n, version in packed.get("cv") or ():
        cv[_name(known, n)] = version
    for n, pairs in packed.get("vs") or ():
        seen[_name(known, n)] = {_name(known, c): x for c, x in pairs}
    if "uc" in packed and uc is not None:
        uc = [_name(known, c) for c in uc]
    out = {
        "v": v,
        "id": cid,
        "ts": _unpack_ts(packed.get("ts")),
        "channel_versions": cv,
        "versions_seen": seen,
        "updated_channels": uc,
    }
    out.update(packed.get("x") or {})
    return out


def _most_shared(changed: Mapping[str, Any]) -> Any:
    """The version at least two changed channels share (the most shared), or None."""
    counts: dict[tuple[type, Any], int] = {}
    for v in changed.values():
        if isinstance(v, int | str | float) and not isinstance(v, bool):
            counts[(type(v), v)] = counts.get((type(v), v), 0) + 1
    best = max(counts.items(), key=lambda kv: kv[1], default=None)
    return best[0][1] if best is not None and best[1] >= 2 else None


def pack_meta(meta: Any, base: Any) -> Any:
    """``meta`` (JSON, or already ``["serde", ...]``) against the base's metadata."""
    if not isinstance(meta, dict):
        return meta
    if not isinstance(base, dict):
        return {"=": meta}
    plus = {k: v for k, v in meta.items() if k != "step" and base.get(k, _MISSING) != v}
    minus = [k for k in base if k not in meta]
    if "step" in meta and not _next_step(base, meta["step"]):
        plus["step"] = meta["step"]
    if not plus and not minus:
        return None
    if not minus and list(plus) == ["source"] and isinstance(plus["source"], str):
        return plus["source"]  # a step's usual change: "input", "loop"
    out: dict[str, Any] = {}
    if plus:
        out["+"] = plus
    if minus:
        out["-"] = minus
    return out


def unpack_meta(packed: Any, base: Any) -> Any:
    if isinstance(packed, str):
        packed = {"+": {"source": packed}}
    if not isinstance(packed, dict | None):
        return packed  # ["serde", type, b64]
    if packed is not None and "=" in packed:
        return packed["="]
    if not isinstance(base, dict):
        raise ValueError("checkpoint metadata stored as a difference from a base that has none")
    plus = (packed or {}).get("+") or {}
    minus = set((packed or {}).get("-") or ())
    out = {k: v for k, v in base.items() if k not in minus}
    out.update(plus)
    if "step" not in plus and "step" not in minus and type(base.get("step")) is int:
        out["step"] = base["step"] + 1
    return out


def _next_step(base: Mapping[str, Any], step: Any) -> bool:
    before = base.get("step")
    return type(before) is int and type(step) is int and step == before + 1


def _pack_uuid(text: str) -> str:
    return base64.urlsafe_b64encode(uuid.UUID(text).bytes).decode("ascii")[:22]


def _unpack_uuid(packed: str) -> str:
    return str(uuid.UUID(bytes=base64.urlsafe_b64decode(packed + "==")))


def _pack_ts(ts: Any) -> Any:
    if not isinstance(ts, str):
        return ts
    try:
        at = datetime.fromisoformat(ts)
    except ValueError:
        return ts
    if at.tzinfo is None:
        return ts
    delta = at - _EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros if _unpack_ts(micros) == ts else ts


def _unpack_ts(ts: Any) -> Any:
    if type(ts) is not int:
        return ts
    return (_EPOCH + timedelta(microseconds=ts)).isoformat()
