"""The DynamoDB backend: one partition per call, one ``TransactWriteItems`` per append.

Item layout (``pk`` = the URL's ``prefix`` + the call id, ``sk`` below); ``<inc>`` is the
call's incarnation, a random tag chosen when the call is created, so that a call created
again after it expired never meets the old one's leftovers (TTL deletes late):

- ``meta``: the call's metadata (``CallMeta``), its incarnation, the chain value of its
  first event, ``exp`` (the exact ``expires_at``) and ``expires_at`` (the TTL attribute);
- ``e#<inc>#<first seq, 12 digits>#<part, 3 digits>``: the events of one write, packed
  (several events per item) and split into parts of at most ``_PART`` bytes;
- ``i#<inc>#<bucket, 2 digits>``: event id guards, one attribute ``x:<event id>`` = its
  seq per event, spread over ``_BUCKETS`` items by a hash of the id;
- ``snap``: the snapshot's head (seq, chain, parts, incarnation), its bytes in
  ``s#<inc>#<seq, 12 digits>#<part, 3 digits>``;
- ``tomb``: the tombstone of a deleted call (the chain value of its first event).

Every method is written once, as a generator that yields DynamoDB requests
(``(operation, kwargs)``) and receives their responses; ``_run`` drives it with boto3,
``_arun`` with aiobotocore, so the sync and async paths cannot drift apart.
"""

from __future__ import annotations

import asyncio
import math
import random
import struct
import threading
import time
import uuid
import weakref
import zlib
from collections.abc import Generator, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlencode, urlsplit

import attrs

import voicestate as vs
import voicestate.backend as vsb

_PART = 350_000  # bytes of packed events (or snapshot) per item: under the 400 KB item limit
_TX_BYTES = 3_000_000  # event bytes per transaction: under the 4 MB request limit
_TX_EVENTS = 60  # events per write_at transaction (each may touch a guard bucket)
_BUCKETS = 32  # id guard items per call
_ATTEMPTS = 10  # retries of a throttled or conflicting request, and of a stale guess
_TOMBSTONE_TTL = 30 * 86400.0
_TTL_SLACK = 8 * 86400.0  # content items outlive the call's expires_at (as of their write) by this
_DEFAULT_TIMEOUT = 10.0
_RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "LimitExceededException",
}
_RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
_HEADER = struct.Struct(">QQBHBI")  # seq, epoch, final, len(id), len(chain), len(data)

Request = tuple[str, dict[str, Any]]
Gen = Generator[Request, Any, Any]


class _Failed(Exception):
    """A request the driver gave up on or that DynamoDB refused: ``code`` and the response."""

    def __init__(self, code: str, response: Mapping[str, Any], message: str) -> None:
        super().__init__(message)
        self.code = code
        self.response = response


# -- attribute values ------------------------------------------------------------------------


def _n(x: float | int) -> dict[str, str]:
    return {"N": repr(x) if isinstance(x, float) else str(x)}


def _s(x: str) -> dict[str, str]:
    return {"S": x}


def _b(x: bytes) -> dict[str, bytes]:
    return {"B": x}


def _num(item: Mapping[str, Any], name: str, default: float = 0.0) -> float:
    v = item.get(name)
    return default if v is None else float(v["N"])


def _str(item: Mapping[str, Any], name: str) -> str | None:
    v = item.get(name)
    return None if v is None else str(v["S"])


def _bytes(item: Mapping[str, Any], name: str) -> bytes:
    v = item.get(name)
    return b"" if v is None else bytes(v["B"])


@attrs.frozen
class _Call:
    """What the meta item says: the metadata, the incarnation, the first chain value."""

    meta: vsb.CallMeta
    inc: str
    first: bytes

    def live(self, now: float) -> bool:
        return self.meta.expires_at is None or self.meta.expires_at > now


def _call(item: Mapping[str, Any] | None) -> _Call | None:
    if not item or "seq" not in item:
        return None
    exp = item.get("exp")
    meta = vsb.CallMeta(
        seq=int(item["seq"]["N"]),
        epoch=int(item["epoch"]["N"]),
        head=_bytes(item, "head"),
        ended=bool(item["ended"]["BOOL"]),
        owner=_str(item, "owner"),
        pending_to=_str(item, "pending_to"),
        lease_until=_num(item, "lease_until"),
        started_at=_num(item, "started_at"),
        active_at=_num(item, "active_at"),
        expires_at=None if exp is None else float(exp["N"]),
        tenant=_str(item, "tenant"),
    )
    return _Call(meta, str(item["inc"]["S"]), _bytes(item, "first"))


def _next_meta(
    old: vsb.CallMeta | None, events: Sequence[vsb.StoredEvent], update: vsb.MetaUpdate | None
) -> vsb.CallMeta:
    """The metadata after ``events`` (which follow ``old``'s last event), as the protocol says."""
    base = old or vsb.CallMeta(seq=0, epoch=0, head=b"", ended=False)
    last = events[-1]
    ended = base.ended or any(e.final for e in events)
    up = update or vsb.MetaUpdate.keep(base, base.active_at)
    first = old is None
    lease = max(up.lease_until, base.lease_until) if base.epoch == last.epoch else up.lease_until
    return vsb.CallMeta(
        seq=last.seq,
        epoch=last.epoch,
        head=last.chain,
        ended=ended,
        owner=None if ended else up.owner,
        pending_to=None if ended else up.pending_to,
        lease_until=0.0 if ended else lease,
        started_at=up.at if first and update is not None else base.started_at,
        active_at=up.at if update is not None else base.active_at,
        expires_at=up.expires_at if update is not None else base.expires_at,
        tenant=up.tenant if first and update is not None else base.tenant,
    )


def _pack(events: Sequence[vsb.StoredEvent]) -> bytes:
    out = bytearray()
    for e in events:
        eid = e.id.encode()
        out += _HEADER.pack(e.seq, e.epoch, 1 if e.final else 0, len(eid), len(e.chain), len(e.data))
        out += eid
        out += e.chain
        out += e.data
    return bytes(out)


def _unpack(raw: bytes) -> list[vsb.StoredEvent]:
    out = []
    pos = 0
    while pos < len(raw):
        seq, epoch, final, n_id, n_chain, n_data = _HEADER.unpack_from(raw, pos)
        pos += _HEADER.size
        eid = raw[pos : pos + n_id].decode()
        pos += n_id
        chain = raw[pos : pos + n_chain]
        pos += n_chain
        data = raw[pos : pos + n_data]
        pos += n_data
        out.append(vsb.StoredEvent(seq, eid, data, chain, epoch, bool(final)))
    return out


def _parts(raw: bytes) -> list[bytes]:
    return [raw[i : i + _PART] for i in range(0, len(raw), _PART)] or [b""]


def _bucket(event_id: str) -> int:
    return zlib.crc32(event_id.encode()) % _BUCKETS


def _groups(events: Sequence[vsb.StoredEvent]) -> list[list[vsb.StoredEvent]]:
    """Split a write_at into transactions under the item and request limits."""
    groups: list[list[vsb.StoredEvent]] = []
    size = 0
    for e in events:
        n = len(e.data) + len(e.chain) + len(e.id) + _HEADER.size
        if not groups or len(groups[-1]) >= _TX_EVENTS or size + n > _TX_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(e)
        size += n
    return groups


def _backoff(attempt: int) -> float:
    return random.uniform(0, min(1.0, 0.01 * 2**attempt))  # full jitter, capped


class DynamoDBBackend:
    """A voicestate backend on one DynamoDB table, boto3 for the sync path, aiobotocore for async.

    Open it with :func:`voicestate.open_store` (``dynamodb://TABLE?region=...``); the URL
    parameters are in README.md. ``voicestate dynamodb create-table URL`` creates the table.
    """

    capabilities = vsb.Capabilities(shared_across_processes=True, threads=True, watch=False, snapshots=True)

    def __init__(
        self,
        table: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        prefix: str = "",
        timeout: float = _DEFAULT_TIMEOUT,
        tombstone_ttl: float = _TOMBSTONE_TTL,
        ttl_slack: float = _TTL_SLACK,
        reopen_url: str | None = None,
    ) -> None:
        import boto3  # type: ignore[import-untyped]
        import botocore.config  # type: ignore[import-untyped]

        self.table = table
        self.url = reopen_url or f"dynamodb://{table}"
        self._prefix = prefix
        self._tomb_ttl = tombstone_ttl
        self._slack = ttl_slack
        self._client_kwargs: dict[str, Any] = {"region_name": region or "us-east-1"}
        if endpoint_url:
            self._client_kwargs["endpoint_url"] = endpoint_url
        self._config = botocore.config.Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"mode": "standard", "max_attempts": 3}
        )
        self.client: Any = boto3.session.Session().client("dynamodb", config=self._config, **self._client_kwargs)
        self._known: dict[str, _Call | None] = {}  # what this process last saw of a call's meta item
        self._lock = threading.Lock()
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[AsyncExitStack, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"DynamoDBBackend({self.table!r}, prefix={self._prefix!r})"

    # -- keys and the cache --------------------------------------------------------------------

    def _key(self, call_id: str, sk: str) -> dict[str, Any]:
        return {"pk": _s(self._prefix + call_id), "sk": _s(sk)}

    def _remember(self, call_id: str, call: _Call | None) -> None:
        with self._lock:
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[call_id] = call

    def _ttl(self, exp: float | None, slack: float) -> dict[str, Any]:
        return {} if exp is None else {"expires_at": _n(math.ceil(exp + slack))}

    # -- the drivers ----------------------------------------------------------------------------

    def _run(self, what: str, gen: Gen) -> Any:
        import botocore.exceptions  # type: ignore[import-untyped]

        if self._closed:
            raise vs.BackendUnavailable(f"{self!r}: closed")
        try:
            request = next(gen)
            while True:
                op, kwargs = request
                if op == "sleep":
                    time.sleep(kwargs["seconds"])
                    request = gen.send(None)
                    continue
                response = None
                for attempt in range(_ATTEMPTS):
                    try:
                        response = getattr(self.client, op)(**kwargs)
                        break
                    except botocore.exceptions.ClientError as exc:
                        failed = _failed(exc)
                        if failed.code in _RETRYABLE and attempt + 1 < _ATTEMPTS:
                            time.sleep(_backoff(attempt))
                            continue
                        request = gen.throw(failed)
                        break
                if response is not None:
                    request = gen.send(response)
        except StopIteration as stop:
            return stop.value
        except _Failed as exc:
            raise vs.BackendUnavailable(f"{self!r}: {what}: {exc.code}: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise vs.BackendUnavailable(f"{self!r}: {what}: {type(exc).__name__}: {exc}") from exc

    async def _aclient(self) -> Any:
        if self._closed:
            raise vs.BackendUnavailable(f"{self!r}: closed")
        loop = asyncio.get_running_loop()
        entry = self._aclients.get(loop)
        if entry is None:
            from aiobotocore.session import get_session  # type: ignore[import-untyped]

            stack = AsyncExitStack()
            client = await stack.enter_async_context(
                get_session().create_client("dynamodb", config=self._config, **self._client_kwargs)
            )
            entry = (stack, client)
            self._aclients[loop] = entry
        return entry[1]

    async def _arun(self, what: str, gen: Gen) -> Any:
        import botocore.exceptions

        client = await self._aclient()
        try:
            request = next(gen)
            while True:
                op, kwargs = request
                if op == "sleep":
                    await asyncio.sleep(kwargs["seconds"])
                    request = gen.send(None)
                    continue
                response = None
                for attempt in range(_ATTEMPTS):
                    try:
                        response = await getattr(client, op)(**kwargs)
                        break
                    except botocore.exceptions.ClientError as exc:
                        failed = _failed(exc)
                        if failed.code in _RETRYABLE and attempt + 1 < _ATTEMPTS:
                            await asyncio.sleep(_backoff(attempt))
                            continue
                        request = gen.throw(failed)
                        break
                if response is not None:
                    request = gen.send(response)
        except StopIteration as stop:
            return stop.value
        except _Failed as exc:
            raise vs.BackendUnavailable(f"{self!r}: {what}: {exc.code}: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise vs.BackendUnavailable(f"{self!r}: {what}: {type(exc).__name__}: {exc}") from exc

    # -- the generators: reads -------------------------------------------------------------------

    def _read_g(self, call_id: str) -> Generator[Request, Any, _Call | None]:
        r = yield ("get_item", {"TableName": self.table, "Key": self._key(call_id, "meta"), "ConsistentRead": True})
        call = _call(r.get("Item"))
        self._remember(call_id, call)
        return call

    def _live_g(self, call_id: str) -> Generator[Request, Any, _Call | None]:
        call = yield from self._read_g(call_id)
        return call if call is not None and call.live(time.time()) else None

    def _query_g(self, call_id: str, low: str, high: str, **extra: Any) -> Generator[Request, Any, list[Any]]:
        items: list[Any] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":pk": _s(self._prefix + call_id), ":lo": _s(low), ":hi": _s(high)},
            "ConsistentRead": True,
            **extra,
        }
        while True:
            r = yield ("query", kwargs)
            items += r.get("Items", [])
            if not r.get("LastEvaluatedKey"):
                return items
            kwargs = {**kwargs, "ExclusiveStartKey": r["LastEvaluatedKey"]}

    def _events_g(
        self, call_id: str, call: _Call, from_seq: int, to_seq: int | None
    ) -> Generator[Request, Any, list[vsb.StoredEvent]]:
        stop = call.meta.seq if to_seq is None else min(to_seq, call.meta.seq)
        start = max(from_seq, 1)
        if stop < start:
            return []
        items = yield from self._query_g(
            call_id,
            f"e#{call.inc}#",
            f"e#{call.inc}#{stop:012d}#~",
            FilterExpression="#last >= :from",
            ExpressionAttributeNames={"#last": "last"},
            ExpressionAttributeValues={
                ":pk": _s(self._prefix + call_id),
                ":lo": _s(f"e#{call.inc}#"),
                ":hi": _s(f"e#{call.inc}#{stop:012d}#~"),
                ":from": _n(start),
            },
        )
        raw: dict[str, list[bytes]] = {}
        for item in items:  # in sort key order: writes by first seq, then their parts
            first = item["sk"]["S"].rsplit("#", 1)[0]
            raw.setdefault(first, []).append(_bytes(item, "d"))
        out: list[vsb.StoredEvent] = []
        for parts in raw.values():
            for e in _unpack(b"".join(parts)):
                if start <= e.seq <= stop and e.seq == (out[-1].seq + 1 if out else start):
                    out.append(e)
        return out

    def _dups_g(self, call_id: str, call: _Call, ids: Sequence[str]) -> Generator[Request, Any, dict[str, int]]:
        buckets = sorted({_bucket(i) for i in ids})
        keys = [self._key(call_id, f"i#{call.inc}#{b:02d}") for b in buckets]
        found: dict[str, int] = {}
        request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        while request:
            r = yield ("batch_get_item", {"RequestItems": request})
            for item in r.get("Responses", {}).get(self.table, []):
                for i in ids:
                    if f"x:{i}" in item:
                        found[i] = int(item[f"x:{i}"]["N"])
            request = r.get("UnprocessedKeys") or {}
        return found

    # -- the generators: writes ------------------------------------------------------------------

    def _meta_put(
        self, call_id: str, new: vsb.CallMeta, inc: str, first: bytes, old: _Call | None, now: float
    ) -> dict[str, Any]:
        """The Put of the meta item, conditional on ``old`` being what is stored (pinned)."""
        item: dict[str, Any] = {
            **self._key(call_id, "meta"),
            "cid": _s(call_id),
            "inc": _s(inc),
            "first": _b(first),
            "seq": _n(new.seq),
            "epoch": _n(new.epoch),
            "head": _b(new.head),
            "ended": {"BOOL": new.ended},
            "lease_until": _n(float(new.lease_until)),
            "started_at": _n(float(new.started_at)),
            "active_at": _n(float(new.active_at)),
            **self._ttl(new.expires_at, 0.0),
        }
        if new.expires_at is not None:
            item["exp"] = _n(float(new.expires_at))
        for name in ("owner", "pending_to", "tenant"):
            value = getattr(new, name)
            if value is not None:
                item[name] = _s(value)
        put: dict[str, Any] = {"TableName": self.table, "Item": item, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        if old is None or not old.live(now):  # create: nothing there, or an expired call
            put["ConditionExpression"] = "attribute_not_exists(seq) OR exp <= :now"
            put["ExpressionAttributeValues"] = {":now": _n(now)}
        else:  # pinned: every field a write can change without a seq change is compared
            put["ConditionExpression"] = "inc = :inc AND seq = :seq AND head = :head AND lease_until = :lease"
            put["ExpressionAttributeValues"] = {
                ":inc": _s(old.inc),
                ":seq": _n(old.meta.seq),
                ":head": _b(old.meta.head),
                ":lease": _n(float(old.meta.lease_until)),
            }
        return put

    def _write_items(
        self,
        call_id: str,
        inc: str,
        events: Sequence[vsb.StoredEvent],
        exp: float | None,
        guard: bool,
    ) -> list[dict[str, Any]]:
        """The chunk Puts and guard Updates of one write (after the meta Put)."""
        ttl = self._ttl(exp, self._slack)
        items: list[dict[str, Any]] = []
        by_bucket: dict[int, list[vsb.StoredEvent]] = {}
        for e in events:
            by_bucket.setdefault(_bucket(e.id), []).append(e)
        for b, evs in sorted(by_bucket.items()):
            names = {f"#a{j}": f"x:{e.id}" for j, e in enumerate(evs)}
            values = {f":s{j}": _n(e.seq) for j, e in enumerate(evs)}
            sets = [f"#a{j} = :s{j}" for j in range(len(evs))]
            if ttl:
                names["#ttl"] = "expires_at"
                values[":ttl"] = ttl["expires_at"]
                sets.append("#ttl = :ttl")
            update: dict[str, Any] = {
                "TableName": self.table,
                "Key": self._key(call_id, f"i#{inc}#{b:02d}"),
                "UpdateExpression": "SET " + ", ".join(sets),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
            if guard:
                update["ConditionExpression"] = " AND ".join(f"attribute_not_exists(#a{j})" for j in range(len(evs)))
                update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            items.append({"Update": update})
        first, last = events[0].seq, events[-1].seq
        for p, part in enumerate(_parts(_pack(events))):
            item = {**self._key(call_id, f"e#{inc}#{first:012d}#{p:03d}"), "d": _b(part), "last": _n(last), **ttl}
            items.append({"Put": {"TableName": self.table, "Item": item}})
        return items

    def _append_g(
        self,
        call_id: str,
        events: Sequence[vsb.StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None,
        update: vsb.MetaUpdate | None,
    ) -> Generator[Request, Any, vsb.AppendResult]:
        if not events:
            raise vs.ConfigError("append: no events")
        with self._lock:
            known, call = call_id in self._known, self._known.get(call_id)
        fresh = False
        if not known and expected_seq > 0:
            call, fresh = (yield from self._read_g(call_id)), True
        for attempt in range(_ATTEMPTS):
            now = time.time()
            live = call if call is not None and call.live(now) else None
            if live is None and expected_seq > 0:
                if not fresh:
                    call, fresh = (yield from self._read_g(call_id)), True
                    continue
                return vsb.AppendResult("conflict", None)
            if live is not None and not _holds(live.meta, expected_seq, expected_epoch, expected_head, update):
                if not fresh:
                    call, fresh = (yield from self._read_g(call_id)), True
                    continue
                dups = yield from self._dups_g(call_id, live, [e.id for e in events])
                if dups:
                    return vsb.AppendResult("duplicate", None, dups)
                return vsb.AppendResult("conflict", live.meta)
            new = _next_meta(None if live is None else live.meta, events, update)
            inc = uuid.uuid4().hex[:12] if live is None else live.inc
            first = events[0].chain if live is None else live.first
            items: list[dict[str, Any]] = [{"Put": self._meta_put(call_id, new, inc, first, call, now)}]
            items += self._write_items(call_id, inc, events, new.expires_at, guard=True)
            if live is None:
                items.append({"Delete": {"TableName": self.table, "Key": self._key(call_id, "tomb")}})
            try:
                yield ("transact_write_items", {"TransactItems": items, "ClientRequestToken": uuid.uuid4().hex})
            except _Failed as exc:
                reasons = exc.response.get("CancellationReasons") or []
                if exc.code != "TransactionCanceledException" or not reasons:
                    raise
                codes = [r.get("Code") for r in reasons]
                if codes[0] == "ConditionalCheckFailed":  # the meta item is not what we thought
                    old = reasons[0].get("Item")
                    if old is not None:
                        call = _call(old)
                        self._remember(call_id, call)
                    else:
                        call = yield from self._read_g(call_id)
                    fresh = True
                    continue
                if "ConditionalCheckFailed" in codes:  # an id guard: some ids are stored already
                    dups = {}
                    for r in reasons[1:]:
                        for e in events:
                            if f"x:{e.id}" in (r.get("Item") or {}):
                                dups[e.id] = int(r["Item"][f"x:{e.id}"]["N"])
                    if not dups and live is not None:
                        dups = yield from self._dups_g(call_id, live, [e.id for e in events])
                    if dups:
                        return vsb.AppendResult("duplicate", None, dups)
                    call, fresh = (yield from self._read_g(call_id)), True
                    continue
                if set(codes) & _RETRYABLE_REASONS:
                    yield ("sleep", {"seconds": _backoff(attempt)})
                    continue
                raise
            self._remember(call_id, _Call(new, inc, first))
            if call is not None and live is None:  # created over an expired call: its leftovers go
                yield from self._purge_g(call_id, keep=inc)
            return vsb.OK
        raise _Failed("TooManyAttempts", {}, f"append to {call_id!r}: the call kept changing")

    def _renew_g(self, call_id: str, epoch: int, lease_until: float) -> Generator[Request, Any, vsb.CallMeta | None]:
        now = time.time()
        try:
            r = yield (
                "update_item",
                {
                    "TableName": self.table,
                    "Key": self._key(call_id, "meta"),
                    "UpdateExpression": "SET lease_until = :lease",
                    "ConditionExpression": "epoch = :e AND ended = :f AND (attribute_not_exists(exp) OR exp > :now)",
                    "ExpressionAttributeValues": {
                        ":lease": _n(float(lease_until)),
                        ":e": _n(epoch),
                        ":f": {"BOOL": False},
                        ":now": _n(now),
                    },
                    "ReturnValues": "ALL_NEW",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                },
            )
            call = _call(r.get("Attributes"))
        except _Failed as exc:
            if exc.code != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            call = _call(old) if old is not None else (yield from self._read_g(call_id))
        self._remember(call_id, call)
        return call.meta if call is not None and call.live(now) else None

    def _write_at_g(
        self, call_id: str, events: Sequence[vsb.StoredEvent], update: vsb.MetaUpdate | None
    ) -> Generator[Request, Any, int]:
        for _attempt in range(_ATTEMPTS):
            call = yield from self._read_g(call_id)
            now = time.time()
            live = call if call is not None and call.live(now) else None
            if not events:
                return 0 if live is None else live.meta.seq
            head = events[0]
            if live is not None and head.seq <= live.meta.seq:
                mine = yield from self._events_g(call_id, live, head.seq, head.seq)
                if mine and mine[0].chain != head.chain:  # a stale copy: the call was deleted and created anew
                    yield from self._drop_g(call_id, live)
                    call = live = None
            if live is None:
                if head.seq != 1:
                    return 0
                r = yield (
                    "get_item",
                    {"TableName": self.table, "Key": self._key(call_id, "tomb"), "ConsistentRead": True},
                )
                tomb = r.get("Item")
                if tomb and _num(tomb, "expires_at", math.inf) > now and _bytes(tomb, "chain") == head.chain:
                    return 0  # a late write of a deleted call
            hw = 0 if live is None else live.meta.seq
            todo: list[vsb.StoredEvent] = []
            for e in events:
                if e.seq > hw + len(todo) + 1:
                    break  # a gap
                if e.seq == hw + len(todo) + 1:
                    todo.append(e)
            if not todo:
                return hw
            retry = False
            for group in _groups(todo):
                new = _next_meta(None if live is None else live.meta, group, update)
                inc = uuid.uuid4().hex[:12] if live is None else live.inc
                first = group[0].chain if live is None else live.first
                items: list[dict[str, Any]] = [{"Put": self._meta_put(call_id, new, inc, first, call, now)}]
                items += self._write_items(call_id, inc, group, new.expires_at, guard=False)
                if live is None:
                    items.append({"Delete": {"TableName": self.table, "Key": self._key(call_id, "tomb")}})
                try:
                    yield ("transact_write_items", {"TransactItems": items, "ClientRequestToken": uuid.uuid4().hex})
                except _Failed as exc:
                    if exc.code != "TransactionCanceledException":
                        raise
                    retry = True  # someone else wrote: read again and carry on from there
                    break
                expired = call is not None and live is None
                call = live = _Call(new, inc, first)
                self._remember(call_id, call)
                if expired:
                    yield from self._purge_g(call_id, keep=inc)
            if not retry:
                return 0 if live is None else live.meta.seq
            yield ("sleep", {"seconds": _backoff(_attempt)})
        raise _Failed("TooManyAttempts", {}, f"write_at to {call_id!r}: the call kept changing")

    def _keys_g(self, call_id: str) -> Generator[Request, Any, list[Any]]:
        items = yield from self._query_g(call_id, "\x00", "\U0010ffff", ProjectionExpression="pk, sk")
        return items

    def _batch_delete_g(self, keys: Sequence[Any]) -> Gen:
        for i in range(0, len(keys), 25):
            request: dict[str, Any] = {self.table: [{"DeleteRequest": {"Key": k}} for k in keys[i : i + 25]]}
            attempt = 0
            while request:
                r = yield ("batch_write_item", {"RequestItems": request})
                request = r.get("UnprocessedItems") or {}
                if request:
                    yield ("sleep", {"seconds": _backoff(attempt)})
                    attempt += 1

    def _purge_g(self, call_id: str, keep: str) -> Gen:
        """Remove what an expired incarnation left (everything but the meta item and ``keep``'s)."""
        keys = yield from self._keys_g(call_id)
        old = [k for k in keys if k["sk"]["S"] not in ("meta", "tomb", "snap") and f"#{keep}#" not in k["sk"]["S"]]
        yield from self._batch_delete_g(old)

    def _drop_g(self, call_id: str, call: _Call) -> Gen:
        """Delete the call, leaving a tombstone first (so no late write_at brings it back)."""
        now = time.time()
        tomb = {
            **self._key(call_id, "tomb"),
            "chain": _b(call.first),
            "at": _n(now),
            "expires_at": _n(math.ceil(now + self._tomb_ttl)),
        }
        yield ("put_item", {"TableName": self.table, "Item": tomb})
        keys = yield from self._keys_g(call_id)
        meta = [k for k in keys if k["sk"]["S"] == "meta"]
        rest = [k for k in keys if k["sk"]["S"] not in ("meta", "tomb")]
        yield from self._batch_delete_g(meta)  # the call is gone once its meta item is
        yield from self._batch_delete_g(rest)
        self._remember(call_id, None)

    def _delete_g(self, call_id: str) -> Generator[Request, Any, bool]:
        call = yield from self._read_g(call_id)
        if call is None:
            return False
        yield from self._drop_g(call_id, call)
        return call.live(time.time())

    def _list_g(
        self, tenant: str | None, after: str | None, limit: int
    ) -> Generator[Request, Any, list[tuple[str, vsb.CallMeta]]]:
        # O(table): a consistent Scan of the meta items of this prefix, sorted here
        now = time.time()
        cond = "sk = :meta AND begins_with(pk, :prefix) AND (attribute_not_exists(exp) OR exp > :now)"
        values: dict[str, Any] = {":meta": _s("meta"), ":prefix": _s(self._prefix), ":now": _n(now)}
        if tenant is not None:
            cond += " AND tenant = :tenant"
            values[":tenant"] = _s(tenant)
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": cond,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        found: list[tuple[str, vsb.CallMeta]] = []
        while True:
            r = yield ("scan", kwargs)
            for item in r.get("Items", []):
                call = _call(item)
                cid = _str(item, "cid")
                if call is not None and cid is not None and (after is None or cid > after) and call.live(now):
                    found.append((cid, call.meta))
            if not r.get("LastEvaluatedKey"):
                break
            kwargs = {**kwargs, "ExclusiveStartKey": r["LastEvaluatedKey"]}
        found.sort(key=lambda x: x[0])
        return found[:limit]

    def _put_snapshot_g(self, call_id: str, snapshot: vsb.Snapshot) -> Gen:
        call = yield from self._live_g(call_id)
        if call is None:
            return None
        parts = _parts(snapshot.data)
        if len(snapshot.data) > _TX_BYTES:
            raise vs.BackendUnavailable(f"{self!r}: a snapshot of {len(snapshot.data)} bytes is over {_TX_BYTES}")
        base = f"s#{call.inc}#{snapshot.seq:012d}#"
        items: list[dict[str, Any]] = [
            {
                "ConditionCheck": {
                    "TableName": self.table,
                    "Key": self._key(call_id, "meta"),
                    "ConditionExpression": "inc = :inc",
                    "ExpressionAttributeValues": {":inc": _s(call.inc)},
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        **self._key(call_id, "snap"),
                        "inc": _s(call.inc),
                        "seq": _n(snapshot.seq),
                        "chain": _b(snapshot.chain),
                        "parts": _n(len(parts)),
                        **self._ttl(call.meta.expires_at, self._slack),
                    },
                    "ConditionExpression": "attribute_not_exists(seq) OR inc <> :inc OR seq < :seq",
                    "ExpressionAttributeValues": {":inc": _s(call.inc), ":seq": _n(snapshot.seq)},
                }
            },
        ]
        ttl = self._ttl(call.meta.expires_at, self._slack)
        for p, part in enumerate(parts):
            items.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {**self._key(call_id, f"{base}{p:03d}"), "d": _b(part), **ttl},
                    }
                }
            )
        try:
            yield ("transact_write_items", {"TransactItems": items, "ClientRequestToken": uuid.uuid4().hex})
        except _Failed as exc:
            if exc.code == "TransactionCanceledException":
                return None  # a newer snapshot is there, or the call went
            raise
        old = yield from self._query_g(call_id, "s#", "s#~", ProjectionExpression="pk, sk")
        yield from self._batch_delete_g([k for k in old if not k["sk"]["S"].startswith(base)])
        return None

    def _get_snapshot_g(self, call_id: str) -> Generator[Request, Any, vsb.Snapshot | None]:
        call = yield from self._live_g(call_id)
        if call is None:
            return None
        r = yield ("get_item", {"TableName": self.table, "Key": self._key(call_id, "snap"), "ConsistentRead": True})
        head = r.get("Item")
        if not head or _str(head, "inc") != call.inc:
            return None
        seq = int(_num(head, "seq"))
        base = f"s#{call.inc}#{seq:012d}#"
        items = yield from self._query_g(call_id, base, base + "~")
        if len(items) != int(_num(head, "parts")):
            return None
        return vsb.Snapshot(seq, _bytes(head, "chain"), b"".join(_bytes(i, "d") for i in items))

    # -- the protocol ---------------------------------------------------------------------------

    def get_meta(self, call_id: str) -> vsb.CallMeta | None:
        call = self._run("get_meta", self._live_g(call_id))
        return None if call is None else call.meta

    def append(
        self,
        call_id: str,
        events: Sequence[vsb.StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
        update: vsb.MetaUpdate | None = None,
    ) -> vsb.AppendResult:
        gen = self._append_g(call_id, events, expected_seq, expected_epoch, expected_head, update)
        result: vsb.AppendResult = self._run("append", gen)
        return result

    def renew(self, call_id: str, epoch: int, lease_until: float) -> vsb.CallMeta | None:
        result: vsb.CallMeta | None = self._run("renew", self._renew_g(call_id, epoch, lease_until))
        return result

    def load(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[vsb.StoredEvent]:
        result: list[vsb.StoredEvent] = self._run("load", self._load_g(call_id, from_seq, to_seq))
        return result

    def _load_g(
        self, call_id: str, from_seq: int, to_seq: int | None
    ) -> Generator[Request, Any, list[vsb.StoredEvent]]:
        call = yield from self._live_g(call_id)
        if call is None:
            return []
        events = yield from self._events_g(call_id, call, from_seq, to_seq)
        return events

    def write_at(self, call_id: str, events: Sequence[vsb.StoredEvent], update: vsb.MetaUpdate | None = None) -> int:
        result: int = self._run("write_at", self._write_at_g(call_id, events, update))
        return result

    def high_water(self, call_id: str) -> int:
        meta = self.get_meta(call_id)
        return 0 if meta is None else meta.seq

    def delete(self, call_id: str) -> bool:
        result: bool = self._run("delete", self._delete_g(call_id))
        return result

    def list_calls(self, tenant: str | None, after: str | None, limit: int) -> list[tuple[str, vsb.CallMeta]]:
        result: list[tuple[str, vsb.CallMeta]] = self._run("list_calls", self._list_g(tenant, after, limit))
        return result

    def put_snapshot(self, call_id: str, snapshot: vsb.Snapshot) -> None:
        self._run("put_snapshot", self._put_snapshot_g(call_id, snapshot))

    def get_snapshot(self, call_id: str) -> vsb.Snapshot | None:
        result: vsb.Snapshot | None = self._run("get_snapshot", self._get_snapshot_g(call_id))
        return result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.client.close()

    # -- the async twins: the same generators, driven by aiobotocore --------------------------------

    async def aget_meta(self, call_id: str) -> vsb.CallMeta | None:
        call: _Call | None = await self._arun("get_meta", self._live_g(call_id))
        return None if call is None else call.meta

    async def aappend(
        self,
        call_id: str,
        events: Sequence[vsb.StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
        update: vsb.MetaUpdate | None = None,
    ) -> vsb.AppendResult:
        gen = self._append_g(call_id, events, expected_seq, expected_epoch, expected_head, update)
        result: vsb.AppendResult = await self._arun("append", gen)
        return result

    async def arenew(self, call_id: str, epoch: int, lease_until: float) -> vsb.CallMeta | None:
        result: vsb.CallMeta | None = await self._arun("renew", self._renew_g(call_id, epoch, lease_until))
        return result

    async def aload(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[vsb.StoredEvent]:
        result: list[vsb.StoredEvent] = await self._arun("load", self._load_g(call_id, from_seq, to_seq))
        return result

    async def awrite_at(
        self, call_id: str, events: Sequence[vsb.StoredEvent], update: vsb.MetaUpdate | None = None
    ) -> int:
        result: int = await self._arun("write_at", self._write_at_g(call_id, events, update))
        return result

    async def ahigh_water(self, call_id: str) -> int:
        meta = await self.aget_meta(call_id)
        return 0 if meta is None else meta.seq

    async def adelete(self, call_id: str) -> bool:
        result: bool = await self._arun("delete", self._delete_g(call_id))
        return result

    async def alist_calls(self, tenant: str | None, after: str | None, limit: int) -> list[tuple[str, vsb.CallMeta]]:
        result: list[tuple[str, vsb.CallMeta]] = await self._arun("list_calls", self._list_g(tenant, after, limit))
        return result

    async def aput_snapshot(self, call_id: str, snapshot: vsb.Snapshot) -> None:
        await self._arun("put_snapshot", self._put_snapshot_g(call_id, snapshot))

    async def aget_snapshot(self, call_id: str) -> vsb.Snapshot | None:
        result: vsb.Snapshot | None = await self._arun("get_snapshot", self._get_snapshot_g(call_id))
        return result

    async def aclose(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            entry = self._aclients.pop(loop, None)
            if entry is not None:
                await entry[0].aclose()
        finally:
            self.close()


def _holds(
    meta: vsb.CallMeta,
    expected_seq: int,
    expected_epoch: int | None,
    expected_head: bytes | None,
    update: vsb.MetaUpdate | None,
) -> bool:
    """The append's conditions 2-5 against a live call's metadata."""
    return (
        meta.seq == expected_seq
        and (expected_head is None or meta.head == expected_head)
        and (expected_epoch is None or (meta.epoch == expected_epoch and not meta.ended))
        and (update is None or update.lapsed_by is None or meta.lease_until <= update.lapsed_by)
    )


def _failed(exc: Any) -> _Failed:
    response = getattr(exc, "response", {}) or {}
    error = response.get("Error", {})
    failed = _Failed(str(error.get("Code", "")), response, str(error.get("Message", exc)))
    if "Item" not in response and isinstance(error.get("Item"), dict):  # botocore puts ALL_OLD here
        failed.response = {**response, "Item": error["Item"]}
    return failed


# -- the factory and create-table ---------------------------------------------------------------------

_FLOATS = {"timeout": _DEFAULT_TIMEOUT, "tombstone_ttl": _TOMBSTONE_TTL, "ttl_slack": _TTL_SLACK}


def _parse(url: str, params: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    parts = urlsplit(url)
    table = parts.netloc or parts.path.lstrip("/")
    if not table or "/" in table:
        raise vs.ConfigError(f"{url}: name the table, e.g. dynamodb://calls?region=eu-west-1")
    kwargs: dict[str, Any] = {}
    for name, value in params.items():
        if name in ("region", "endpoint_url", "prefix"):
            kwargs[name] = value
        elif name in _FLOATS:
            try:
                kwargs[name] = float(value)
            except ValueError:
                raise vs.ConfigError(f"{url}: {name}= must be a number of seconds, got {value!r}") from None
            if not math.isfinite(kwargs[name]):
                raise vs.ConfigError(f"{url}: {name}= must be a finite number of seconds, got {value!r}")
            if not kwargs[name] > 0 and not (name == "ttl_slack" and kwargs[name] == 0):
                raise vs.ConfigError(f"{url}: {name}= must be > 0, got {value!r}")
        else:
            known = sorted(["region", "endpoint_url", "prefix", *_FLOATS])
            raise vs.ConfigError(f"{url}: unknown parameter {name!r} (known: {', '.join(known)})")
    return table, kwargs


def open_dynamodb(url: str, params: Mapping[str, str]) -> DynamoDBBackend:
    """The factory for ``dynamodb://TABLE`` (``url`` without its query, ``params`` its parameters)."""
    table, kwargs = _parse(url, params)
    query = urlencode(dict(params))
    return DynamoDBBackend(table, reopen_url=f"dynamodb://{table}" + (f"?{query}" if query else ""), **kwargs)


def create_table(url: str) -> str:
    """Create the table a ``dynamodb://`` URL names (on-demand billing, TTL on ``expires_at``)."""
    from urllib.parse import parse_qsl

    base, _, query = url.partition("?")
    table, kwargs = _parse(base, dict(parse_qsl(query, keep_blank_values=True)))
    backend = DynamoDBBackend(table, **kwargs)
    client = backend.client
    try:
        client.create_table(
            TableName=table,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
        )
        # TTL can only be turned on once the table is active
        client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        client.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
    finally:
        backend.close()
    return table
