"""A checkpoint as stored: its difference from an earlier checkpoint of the thread, its base.

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
- ``meta``: ``None`` when only ``step`` moved on by one; else ``{"+": set,
  "-": removed}`` (``step`` left out when it is the base's plus one), ``{"=":
  whole}``, or ``["serde", type, b64]`` when it is not JSON.
- ``blobs``: ``[[name, type, b64], ...]`` (``[name, type, b64, version]`` when
  the version is not the checkpoint's).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

KNOWN = ("v", "id", "ts", "channel_versions", "versions_seen", "updated_channels")
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
    if changed := [[names(k), v] for k, v in cv.items() if bcv.get(k, _MISSING) != v]:
        out["cv"] = changed
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
    out: dict[str, Any] = {}
    if plus:
        out["+"] = plus
    if minus:
        out["-"] = minus
    return out


def unpack_meta(packed: Any, base: Any) -> Any:
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
