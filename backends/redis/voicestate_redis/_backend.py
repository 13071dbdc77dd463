"""``redis://``, ``rediss://`` and their ``+cluster`` twins: the networked deciding tier
(redis-py, sync and asyncio; ``RedisCluster`` for a Redis Cluster).

Every write of a call is one Lua script (EVALSHA, loaded again after a NOSCRIPT), so its
checks and its writes are atomic and an append is one round trip. On one server the keys of
a call share the hash tag ``{call id}``; on a Cluster they share the tag of the call's index
bucket, ``{b<n>}``, with the bucket's listing index, so a script never leaves its slot.
README.md documents both layouts.
"""

from __future__ import annotations

import asyncio
import math
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgpack
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

import voicestate as vs
import voicestate.backend as vsb

from . import _scripts
from ._direct import PIPELINED, Direct, Lane, Pipe
from ._subscriber import Subscriber

_TOMBSTONE_TTL = 30 * 86400.0  # seconds a deleted or expired call's tombstone stops late writes
_DEFAULT_TIMEOUT = 2.0  # seconds: connect and command timeout, the bound on a lost connection
_LIST_BATCH = 64
_MAX_CONNECTIONS = 100  # per pool (redis-py's default); past it a caller waits for a free one
_KEY_CACHE = 4096  # calls whose encoded keys an append remembers
_NO_UPDATE = (False, False, False, False, False, False, False)
_HEADER = struct.Struct(">BIH")  # final, epoch, len(id), after the chain value

# URL parameters: name -> parser. Anything else is refused.
_FLOAT = ("timeout", "socket_timeout", "socket_connect_timeout", "health_check_interval", "tombstone_ttl")
_INT = ("retries", "max_connections", "buckets")
# RedisClusterException (no seed reachable, no slot map) is not a RedisError
_REDIS_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)
_DEFAULT_BUCKETS = 256  # Cluster: index buckets, each one hash tag (one slot); fixed for a store's life
_STR = ("prefix", "client_name", "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path")
_BOOL = ("ssl_check_hostname",)
_SSL = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path", "ssl_check_hostname")


def _escape(call_id: str) -> str:
    """The call id inside a hash tag: ``}`` would end the tag early, ``%`` keeps it reversible."""
    return call_id.replace("%", "%25").replace("}", "%7D")


def _opt(value: str | None) -> str:
    """An optional string as a script argument: '' for None, '=' + value otherwise."""
    return "" if value is None else "=" + value


def _num(value: float) -> str:
    return repr(float(value))


def _element(e: vsb.StoredEvent) -> bytes:
    """An event as one list element: len(chain), chain, final, epoch, len(id), id, data."""
    ident = e.id.encode()
    return b"".join((bytes((len(e.chain),)), e.chain, _HEADER.pack(int(e.final), e.epoch, len(ident)), ident, e.data))


def _event(seq: int, raw: bytes) -> vsb.StoredEvent:
    n = raw[0]
    chain = raw[1 : 1 + n]
    final, epoch, idlen = _HEADER.unpack_from(raw, 1 + n)
    start = 1 + n + _HEADER.size
    return vsb.StoredEvent(seq, raw[start : start + idlen].decode(), raw[start + idlen :], chain, epoch, bool(final))


def _pack(values: list[Any]) -> bytes:
    """A msgpack array for a script's ``cmsgpack.unpack``: Redis's cmsgpack reads raw strings, not bin."""
    return cast(bytes, msgpack.packb(values, use_bin_type=False))


def _str(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _meta(h: Mapping[bytes, bytes]) -> vsb.CallMeta:
    expires = h.get(b"expires_at")
    return vsb.CallMeta(
        seq=int(h[b"seq"]),
        epoch=int(h[b"epoch"]),
        head=bytes(h[b"head"]),
        ended=h.get(b"ended") == b"1",
        owner=_str(h.get(b"owner")),
        pending_to=_str(h.get(b"pending_to")),
        lease_until=float(h.get(b"lease_until", b"0")),
        started_at=float(h.get(b"started_at", b"0")),
        active_at=float(h.get(b"active_at", b"0")),
        expires_at=None if expires is None else float(expires),
        tenant=_str(h.get(b"tenant")),
    )


def _lanes(client: Any) -> list[Lane]:
    """The direct lanes hung on an event loop's client (its pipe, its subscriber)."""
    found = (getattr(client, "_voicestate_pipe", None), getattr(client, "_voicestate_subscriber", None))
    return [lane for lane in found if lane is not None]


def _from_note(note: bytes, last: vsb.CallMeta | None) -> vsb.CallMeta | None:
    """The metadata a writer published (see ``store_meta``), with the two fields that never
    change from the last one read; None for another message (a delete publishes ``0``)."""
    if last is None or note[:1] != b"\x99":  # a msgpack array of 9
        return None
    try:
        seq, epoch, head, ended, lease, active, owner, pending, expires = msgpack.unpackb(note, raw=True)
        meta = vsb.CallMeta(
            seq=int(seq),
            epoch=int(epoch),
            head=bytes(head),
            ended=ended == b"1",
            owner=owner.decode() if owner else None,
            pending_to=pending.decode() if pending else None,
            lease_until=float(lease),
            started_at=last.started_at,
            active_at=float(active),
            expires_at=float(expires) if expires else None,
            tenant=last.tenant,
        )
    except (ValueError, TypeError):
        return None
    if meta.expires_at is not None and meta.expires_at <= time.time():
        return None  # expired by the clock: read, as get_meta would
    return meta


def _mapping(reply: Any) -> Mapping[bytes, bytes]:
    """A raw HGETALL reply: a flat list (RESP2) or a map (RESP3)."""
    return reply if isinstance(reply, dict) else _pairs(reply)


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _live(h: Mapping[bytes, bytes] | None, now: float) -> vsb.CallMeta | None:
    if not h or b"seq" not in h:
        return None
    meta = _meta(h)
    if meta.expires_at is not None and meta.expires_at <= now:
        return None  # expired by the clock; Redis purges it at its key expiry, a script sooner
    return meta


def _update_args(update: vsb.MetaUpdate | None) -> list[str]:
    if update is None:
        return ["0", "", "", "0", "", "0", ""]
    return [
        "1",
        _opt(update.owner),
        _opt(update.pending_to),
        _num(update.lease_until),
        "" if update.expires_at is None else "=" + _num(update.expires_at),
        _num(update.at),
        _opt(update.tenant),
    ]


class _Scripts:
    """The registered scripts, for one client (sync) or one event loop's client (async).

    On a Cluster the writers notify with SPUBLISH (sharded pub/sub: the channel shares the
    call's slot, so the message stays on the node that owns it)."""

    def __init__(self, client: Any, cluster: bool = False) -> None:
        def text(script: str) -> str:
            return script.replace("'PUBLISH'", "'SPUBLISH'") if cluster else script

        self.append = client.register_script(text(_scripts.APPEND))
        self.write_at = client.register_script(text(_scripts.WRITE_AT))
        self.renew = client.register_script(_scripts.RENEW)
        self.load = client.register_script(_scripts.LOAD)
        self.delete = client.register_script(text(_scripts.DELETE))
        self.put_snapshot = client.register_script(_scripts.PUT_SNAPSHOT)
        self.get_snapshot = client.register_script(_scripts.GET_SNAPSHOT)
        self.prune = client.register_script(_scripts.PRUNE)


class RedisBackend:
    """A voicestate backend on one Redis server (or a primary), through redis-py's pooled clients.

    Open it with :func:`voicestate.open_store` (``redis://[user:password@]host:port/db``,
    ``rediss://`` for TLS); the URL parameters are in README.md.
    """

    capabilities = vsb.Capabilities(shared_across_processes=True, threads=True, watch=True, snapshots=True)

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "vs",
        timeout: float = _DEFAULT_TIMEOUT,
        socket_connect_timeout: float | None = None,
        retries: int = 0,
        tombstone_ttl: float = _TOMBSTONE_TTL,
        options: Mapping[str, Any] | None = None,
        reopen_url: str | None = None,
        cluster: bool = False,
        buckets: int = _DEFAULT_BUCKETS,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise vs.ConfigError(f"redis: prefix= may not hold '{{' or '}}' (it would become the hash tag): {prefix!r}")
        if timeout <= 0 or retries < 0 or tombstone_ttl <= 0:
            raise vs.ConfigError("redis: timeout and tombstone_ttl must be > 0, retries >= 0")
        if not 1 <= buckets <= 16384:
            raise vs.ConfigError(f"redis: buckets= must be in 1..16384, got {buckets}")
        self._cluster = cluster
        self._buckets = buckets
        self.url = reopen_url or url
        self._shown = _redact(reopen_url.split("?", 1)[0] if cluster and reopen_url else url)
        self._prefix = prefix
        self._tomb_ms = str(int(tombstone_ttl * 1000))
        self._kwargs: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout if socket_connect_timeout is None else socket_connect_timeout,
            **(options or {}),
        }
        self._retries = retries
        self._redis_url = url
        self._client: Any
        self._direct: Direct | None = None  # one server: appends skip redis-py's command path
        try:
            if cluster:
                # any node is the seed; redirections (MOVED, ASK) are followed by the client
                self._client = redis.cluster.RedisCluster.from_url(
                    url, retry=Retry(NoBackoff(), retries), **self._kwargs
                )
            else:
                # blocking: past max_connections a caller waits (up to the timeout) for a free one
                pool = redis.BlockingConnectionPool.from_url(
                    url, retry=Retry(NoBackoff(), retries), timeout=timeout, **self._pool_kwargs()
                )
                self._client = redis.Redis(connection_pool=pool)
                self._direct = Direct(pool, retries)
        except (ValueError, TypeError) as exc:
            raise vs.ConfigError(f"{self._shown}: {exc}") from exc
        except _REDIS_ERRORS as exc:
            raise vs.BackendUnavailable(
                f"{self._shown}: cannot reach the cluster: {type(exc).__name__}: {exc}"
            ) from exc
        if cluster:
            self._client.RedisClusterRequestTTL = _cluster_ttl(timeout)
        self._scripts = _Scripts(self._client, cluster)
        self._lock = threading.Lock()
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, _Scripts]] = (
            weakref.WeakKeyDictionary()
        )
        self._key_cache: dict[tuple[str, str | None], tuple[list[bytes], bytes]] = {}
        self._closed = False

    def _pool_kwargs(self) -> dict[str, Any]:
        return {"max_connections": _MAX_CONNECTIONS, **self._kwargs}

    def __repr__(self) -> str:
        return f"RedisBackend({self._shown!r}, prefix={self._prefix!r})"

    # -- keys -------------------------------------------------------------------------
    # One server: {prefix}:{<call id>}:m|e|i|s|x|w and one index, {prefix}:calls[:t:<tenant>].
    # A Cluster: {prefix}:{b<n>}:<call id>:m|e|i|s|x|w, n = crc32(call id) % buckets, and one
    # index per bucket, {prefix}:{b<n>}:calls[:t:<tenant>]: the same slot as its calls, so the
    # scripts keep the index exact atomically, as on one server.

    def _bucket(self, call_id: str) -> int:
        return zlib.crc32(call_id.encode()) % self._buckets

    def _base(self, call_id: str) -> str:
        if self._cluster:
            return f"{self._prefix}:{{b{self._bucket(call_id)}}}:{_escape(call_id)}"
        return f"{self._prefix}:{{{_escape(call_id)}}}"

    def _keys(self, call_id: str, tenant: str | None = None) -> list[str]:
        base = self._base(call_id)
        bucket = self._bucket(call_id) if self._cluster else None
        keys = [f"{base}:m", f"{base}:e", f"{base}:i", f"{base}:s", f"{base}:x", self._index(None, bucket)]
        if tenant is not None:
            keys.append(self._index(tenant, bucket))
        return keys

    def _channel(self, call_id: str) -> str:
        return f"{self._base(call_id)}:w"

    def _index(self, tenant: str | None, bucket: int | None = None) -> str:
        root = self._prefix if bucket is None else f"{self._prefix}:{{b{bucket}}}"
        return f"{root}:calls" if tenant is None else f"{root}:calls:t:{tenant}"

    def _indexes(self, tenant: str | None) -> list[str]:
        """The index keys listing merges: one, or one per bucket on a Cluster."""
        if not self._cluster:
            return [self._index(tenant)]
        return [self._index(tenant, n) for n in range(self._buckets)]

    # -- errors and clients --------------------------------------------------------------

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        if self._closed:
            raise vs.BackendUnavailable(f"{self._shown}: the backend is closed")
        try:
            yield
        except (*_REDIS_ERRORS, OSError) as exc:
            raise self._unavailable(what, exc) from exc

    def _unavailable(self, what: str, exc: BaseException) -> vs.BackendUnavailable:
        if isinstance(exc, _REDIS_ERRORS):
            return vs.BackendUnavailable(f"{self._shown}: {what} failed: {type(exc).__name__}: {exc}")
        return vs.BackendUnavailable(f"{self._shown}: {what} failed: {exc}")

    def _pipe(self) -> Pipe | None:
        """The running loop's pipelined append lane (one server only; None on a Cluster)."""
        if self._cluster or not PIPELINED:
            return None
        client, _ = self._async()
        pipe: Pipe | None = getattr(client, "_voicestate_pipe", None)
        if pipe is None:
            pipe = Pipe(client.connection_pool, self._retries, float(self._kwargs["socket_timeout"]))
            client._voicestate_pipe = pipe
        return pipe

    def _async(self) -> tuple[Any, _Scripts]:
        """The asyncio client of the running event loop (a redis.asyncio connection belongs to one loop)."""
        loop = asyncio.get_running_loop()
        found = self._aclients.get(loop)  # the usual case, without the lock
        if found is not None:
            return found
        with self._lock:
            found = self._aclients.get(loop)
            if found is None:
                client: Any
                if self._cluster:
                    client = aiocluster.RedisCluster.from_url(
                        self._redis_url, retry=AsyncRetry(NoBackoff(), self._retries), **self._kwargs
                    )
                    client.RedisClusterRequestTTL = _cluster_ttl(float(self._kwargs["socket_timeout"]))
                else:
                    pool = aioredis.BlockingConnectionPool.from_url(
                        self._redis_url,
                        retry=AsyncRetry(NoBackoff(), self._retries),
                        timeout=float(self._kwargs["socket_timeout"]),
                        **self._pool_kwargs(),
                    )
                    client = aioredis.Redis(connection_pool=pool)
                found = (client, _Scripts(client, self._cluster))
                self._aclients[loop] = found
            return found

    # -- commands: the direct lanes on one server, redis-py's clients on a Cluster --------------

    def _eval(self, name: str, *, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        script = getattr(self._scripts, name)
        if self._direct is not None:
            return self._direct.evalsha(script, keys, args)
        return _run(self._client, script, list(keys), list(args))

    async def _aeval(self, name: str, *, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        client, scripts = self._async_checked()
        script = getattr(scripts, name)
        pipe = self._pipe()
        if pipe is not None:
            return await pipe.evalsha(script, keys, args)
        return await _arun(client, script, list(keys), list(args))

    def _hgetall(self, key: str) -> Mapping[bytes, bytes]:
        if self._direct is not None:
            return _mapping(self._direct.execute("HGETALL", key))
        return cast("dict[bytes, bytes]", self._client.hgetall(key))

    async def _ahgetall(self, key: str) -> Mapping[bytes, bytes]:
        pipe = self._pipe()
        if pipe is not None:
            return _mapping(await pipe.execute("HGETALL", key))
        client, _ = self._async_checked()
        return cast("dict[bytes, bytes]", await client.hgetall(key))

    # -- arguments ------------------------------------------------------------------------

    def _append_args(
        self,
        call_id: str,
        events: Sequence[vsb.StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None,
        update: vsb.MetaUpdate | None,
    ) -> tuple[list[bytes], list[bytes]]:
        """APPEND's keys and arguments: one msgpack array of the scalars and the event ids,
        then one list element per event (few arguments: redis-py encodes each one in Python)."""
        tenant = None if update is None else update.tenant
        keys, channel = self._append_keys(call_id, tenant)
        last = events[-1]
        header: list[Any] = [
            call_id,
            channel,
            time.time(),
            self._tomb_ms,
            expected_seq,
            False if expected_epoch is None else expected_epoch,
            False if expected_head is None else expected_head,
            False if update is None or update.lapsed_by is None else repr(float(update.lapsed_by)),
            last.epoch,
            last.chain,
            any(e.final for e in events),
            events[0].chain,
        ]
        if update is None:
            header += _NO_UPDATE
        else:
            header += (
                True,
                False if update.owner is None else update.owner,
                False if update.pending_to is None else update.pending_to,
                repr(float(update.lease_until)),
                False if update.expires_at is None else repr(float(update.expires_at)),
                repr(float(update.at)),
                False if tenant is None else tenant,
            )
        header += [e.id for e in events]
        args = [_pack(header)]
        args += [_element(e) for e in events]
        return keys, args

    def _append_keys(self, call_id: str, tenant: str | None) -> tuple[list[bytes], bytes]:
        """A call's keys and channel as bytes, remembered for the calls appended to lately."""
        found = self._key_cache.get((call_id, tenant))
        if found is None:
            if len(self._key_cache) >= _KEY_CACHE:
                self._key_cache.clear()
            found = ([k.encode() for k in self._keys(call_id, tenant)], self._channel(call_id).encode())
            self._key_cache[(call_id, tenant)] = found
        return found

    def _write_args(
        self, call_id: str, events: Sequence[vsb.StoredEvent], update: vsb.MetaUpdate | None
    ) -> tuple[list[str], list[Any]]:
        args: list[Any] = [
            call_id,
            self._channel(call_id),
            _num(time.time()),
            self._tomb_ms,
            *_update_args(update),
            str(len(events)),
        ]
        for e in events:
            args += [str(e.seq), e.id, e.chain, str(e.epoch), "1" if e.final else "0", _element(e)]
        return self._keys(call_id, update.tenant if update is not None else None), args

    @staticmethod
    def _append_result(reply: Any) -> vsb.AppendResult:
        if isinstance(reply, int):
            return vsb.OK
        status = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if status == "duplicate":
            flat = reply[1]
            return vsb.AppendResult(
                "duplicate", None, {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}
            )
        meta = None if len(reply) < 2 or not reply[1] else _meta(_pairs(reply[1]))
        return vsb.AppendResult("conflict", meta)

    # -- the protocol, sync ------------------------------------------------------------------

    def get_meta(self, call_id: str) -> vsb.CallMeta | None:
        with self._errors("get_meta"):
            h = self._hgetall(self._keys(call_id)[0])
        return _live(h, time.time())

    def append(
        self,
        call_id: str,
        events: Sequence[vsb.StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
        update: vsb.MetaUpdate | None = None,
    ) -> vsb.AppendResult:
        if not events:
            return vsb.OK
        if self._closed:
            raise vs.BackendUnavailable(f"{self._shown}: the backend is closed")
        keys, args = self._append_args(call_id, events, expected_seq, expected_epoch, expected_head, update)
        try:  # what _errors() does, inline on the hot path
            reply = self._eval("append", keys=keys, args=args)
        except (*_REDIS_ERRORS, OSError) as exc:
            raise self._unavailable("append", exc) from exc
        return self._append_result(reply)

    def renew(self, call_id: str, epoch: int, lease_until: float) -> vsb.CallMeta | None:
        with self._errors("renew"):
            reply = self._eval(
                "renew", keys=self._keys(call_id)[:5], args=[_num(time.time()), str(epoch), _num(lease_until)]
            )
        return _live(_pairs(reply), 0.0) if reply else None

    def load(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[vsb.StoredEvent]:
        start = max(from_seq, 1)
        if to_seq is not None and to_seq < start:
            return []
        stop = -1 if to_seq is None else to_seq - 1
        with self._errors("load"):
            raw = self._eval("load", keys=self._keys(call_id)[:5], args=[_num(time.time()), start - 1, stop])
        return [_event(start + i, r) for i, r in enumerate(raw)]

    def write_at(self, call_id: str, events: Sequence[vsb.StoredEvent], update: vsb.MetaUpdate | None = None) -> int:
        keys, args = self._write_args(call_id, events, update)
        with self._errors("write_at"):
            return int(self._eval("write_at", keys=keys, args=args))

    def high_water(self, call_id: str) -> int:
        meta = self.get_meta(call_id)
        return 0 if meta is None else meta.seq

    def delete(self, call_id: str) -> bool:
        with self._errors("delete"):
            n = self._eval(
                "delete", keys=self._keys(call_id)[:5], args=[_num(time.time()), self._tomb_ms, self._channel(call_id)]
            )
        return bool(n)

    def list_calls(self, tenant: str | None, after: str | None, limit: int) -> list[tuple[str, vsb.CallMeta]]:
        out: list[tuple[str, vsb.CallMeta]] = []
        gone: list[str] = []
        indexes = self._indexes(tenant)
        cursor = b"-" if after is None else b"(" + after.encode()
        with self._errors("list_calls"):
            while len(out) < limit:
                batch = max(limit - len(out), _LIST_BATCH)
                per = self._per_bucket(batch)
                pipe = self._client.pipeline(transaction=False)
                for index in indexes:
                    pipe.zrangebylex(index, cursor, b"+", 0, per)
                ids, done = _merge(pipe.execute(), per, batch)
                if not ids:
                    break
                pipe = self._client.pipeline(transaction=False)
                for raw in ids:
                    pipe.hgetall(self._keys(raw.decode())[0])
                rows = pipe.execute()
                if self._collect(tenant, ids, rows, out, gone, limit):
                    break
                cursor = b"(" + ids[-1]
                if done:
                    break
            if gone:
                for keys, args in self._prune_args(tenant, gone):
                    self._eval("prune", keys=keys, args=args)
        return out

    def _per_bucket(self, batch: int) -> int:
        """Ids read from each index per pass: all of ``batch`` from one index, a share from many."""
        return batch if len(self._indexes(None)) == 1 else max(4, -(-2 * batch // self._buckets))

    @staticmethod
    def _collect(
        tenant: str | None,
        ids: list[bytes],
        rows: Sequence[Any],
        out: list[tuple[str, vsb.CallMeta]],
        gone: list[str],
        limit: int,
    ) -> bool:
        """Add the live calls of ``ids`` to ``out``; True once ``out`` holds ``limit``."""
        now = time.time()
        for raw, h in zip(ids, rows, strict=True):
            call_id = raw.decode()
            if not h:
                gone.append(call_id)
                continue
            meta = _live(h, now)
            if meta is None or (tenant is not None and meta.tenant != tenant):
                continue
            out.append((call_id, meta))
            if len(out) >= limit:
                return True
        return False

    def _prune_args(self, tenant: str | None, gone: list[str]) -> list[tuple[list[str], list[str]]]:
        """PRUNE calls, one per index (per bucket on a Cluster: a script stays in one slot)."""
        groups: dict[int | None, tuple[list[str], list[str]]] = {}
        for call_id in gone:
            bucket = self._bucket(call_id) if self._cluster else None
            keys, args = groups.setdefault(bucket, ([], []))
            keys += [self._index(tenant, bucket), self._keys(call_id)[0]]
            args.append(call_id)
        return list(groups.values())

    # watching: a publish from every write script on the call's channel
    def wait_for(self, call_id: str, after: int, timeout: float) -> vsb.CallMeta | None:
        deadline = time.monotonic() + timeout
        if self._cluster:
            return self._wait_sharded(call_id, after, deadline)
        with self._errors("wait_for"):
            ps = self._client.pubsub()
            try:
                ps.subscribe(self._channel(call_id))
                self._confirmed(ps, deadline)
                while True:
                    meta = self.get_meta(call_id)  # after subscribing: nothing in between is missed
                    if meta is None or meta.seq > after:
                        return meta
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return meta
                    ps.get_message(ignore_subscribe_messages=True, timeout=remaining)
            finally:
                ps.close()

    def _wait_sharded(self, call_id: str, after: int, deadline: float) -> vsb.CallMeta | None:
        """wait_for on a Cluster: SSUBSCRIBE on the node that owns the call's slot."""
        with self._errors("wait_for"):
            ps = self._client.pubsub()
            try:
                ps.ssubscribe(self._channel(call_id))
                end = time.monotonic() + max(deadline - time.monotonic(), 0.0) + float(self._kwargs["socket_timeout"])
                while time.monotonic() < end:  # the server's confirmation: the subscription is live
                    msg = ps.get_sharded_message(timeout=end - time.monotonic())
                    if msg is not None and msg.get("type") == "ssubscribe":
                        break
                while True:
                    meta = self.get_meta(call_id)  # after subscribing: nothing in between is missed
                    if meta is None or meta.seq > after:
                        return meta
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return meta
                    ps.get_sharded_message(ignore_subscribe_messages=True, timeout=remaining)
            finally:
                ps.close()

    def _confirmed(self, ps: Any, deadline: float) -> None:
        """Wait for the server's SUBSCRIBE confirmation: the subscription is live from then on."""
        limit = max(deadline - time.monotonic(), 0.0) + float(self._kwargs["socket_timeout"])
        end = time.monotonic() + limit
        while time.monotonic() < end:
            msg = ps.get_message(timeout=end - time.monotonic())
            if msg is not None and msg.get("type") == "subscribe":
                return

    def put_snapshot(self, call_id: str, snapshot: vsb.Snapshot) -> None:
        with self._errors("put_snapshot"):
            self._eval(
                "put_snapshot",
                keys=self._keys(call_id)[:5],
                args=[_num(time.time()), str(snapshot.seq), snapshot.chain, snapshot.data],
            )

    def get_snapshot(self, call_id: str) -> vsb.Snapshot | None:
        with self._errors("get_snapshot"):
            reply = self._eval("get_snapshot", keys=self._keys(call_id)[:5], args=[_num(time.time())])
        return None if not reply else vsb.Snapshot(int(reply[0]), bytes(reply[1]), bytes(reply[2]))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._cluster:
            self._client.close()
        else:
            self._client.connection_pool.disconnect()
        if self._direct is not None:
            self._direct.close()
        with self._lock:
            clients, self._aclients = list(self._aclients.values()), weakref.WeakKeyDictionary()
        for client, _ in clients:  # other loops' lanes: no new connection (aclose() closes its own loop's)
            for lane in _lanes(client):
                lane.closed = True

    # -- the async twins: the same scripts through redis.asyncio ----------------------------------

    async def aget_meta(self, call_id: str) -> vsb.CallMeta | None:
        self._async_checked()  # refuses a closed backend
        with self._errors("get_meta"):
            h = await self._ahgetall(self._keys(call_id)[0])
        return _live(h, time.time())

    async def aappend(
        self,
        call_id: str,
        events: Sequence[vsb.StoredEvent],
        expected_seq: int,
        expected_epoch: int | None,
        expected_head: bytes | None = None,
        update: vsb.MetaUpdate | None = None,
    ) -> vsb.AppendResult:
        if not events:
            return vsb.OK
        keys, args = self._append_args(call_id, events, expected_seq, expected_epoch, expected_head, update)
        try:
            reply = await self._aeval("append", keys=keys, args=args)  # refuses a closed backend
        except (*_REDIS_ERRORS, OSError) as exc:
            raise self._unavailable("append", exc) from exc
        return self._append_result(reply)

    async def arenew(self, call_id: str, epoch: int, lease_until: float) -> vsb.CallMeta | None:
        self._async_checked()  # refuses a closed backend
        with self._errors("renew"):
            reply = await self._aeval(
                "renew", keys=self._keys(call_id)[:5], args=[_num(time.time()), str(epoch), _num(lease_until)]
            )
        return _live(_pairs(reply), 0.0) if reply else None

    async def aload(self, call_id: str, from_seq: int = 1, to_seq: int | None = None) -> list[vsb.StoredEvent]:
        start = max(from_seq, 1)
        if to_seq is not None and to_seq < start:
            return []
        stop = -1 if to_seq is None else to_seq - 1
        self._async_checked()  # refuses a closed backend
        with self._errors("load"):
            raw = await self._aeval("load", keys=self._keys(call_id)[:5], args=[_num(time.time()), start - 1, stop])
        return [_event(start + i, r) for i, r in enumerate(raw)]

    async def awrite_at(
        self, call_id: str, events: Sequence[vsb.StoredEvent], update: vsb.MetaUpdate | None = None
    ) -> int:
        self._async_checked()  # refuses a closed backend
        keys, args = self._write_args(call_id, events, update)
        with self._errors("write_at"):
            return int(await self._aeval("write_at", keys=keys, args=args))

    async def ahigh_water(self, call_id: str) -> int:
        meta = await self.aget_meta(call_id)
        return 0 if meta is None else meta.seq

    async def adelete(self, call_id: str) -> bool:
        self._async_checked()  # refuses a closed backend
        with self._errors("delete"):
            n = await self._aeval(
                "delete", keys=self._keys(call_id)[:5], args=[_num(time.time()), self._tomb_ms, self._channel(call_id)]
            )
        return bool(n)

    async def alist_calls(self, tenant: str | None, after: str | None, limit: int) -> list[tuple[str, vsb.CallMeta]]:
        client, _ = self._async_checked()
        out: list[tuple[str, vsb.CallMeta]] = []
        gone: list[str] = []
        indexes = self._indexes(tenant)
        cursor = b"-" if after is None else b"(" + after.encode()
        with self._errors("list_calls"):
            while len(out) < limit:
                batch = max(limit - len(out), _LIST_BATCH)
                per = self._per_bucket(batch)
                pipe = client.pipeline(transaction=False)
                for index in indexes:
                    pipe.zrangebylex(index, cursor, b"+", 0, per)
                ids, done = _merge(await pipe.execute(), per, batch)
                if not ids:
                    break
                pipe = client.pipeline(transaction=False)
                for raw in ids:
                    pipe.hgetall(self._keys(raw.decode())[0])
                rows = await pipe.execute()
                if self._collect(tenant, ids, rows, out, gone, limit):
                    break
                cursor = b"(" + ids[-1]
                if done:
                    break
            if gone:
                for keys, args in self._prune_args(tenant, gone):
                    await self._aeval("prune", keys=keys, args=args)
        return out

    async def await_for(self, call_id: str, after: int, timeout: float) -> vsb.CallMeta | None:
        client, _ = self._async_checked()
        if not self._cluster and PIPELINED:  # one subscriber connection per event loop
            subscriber: Subscriber | None = getattr(client, "_voicestate_subscriber", None)
            if subscriber is None:
                subscriber = Subscriber(client.connection_pool, float(self._kwargs["socket_timeout"]))
                client._voicestate_subscriber = subscriber
            with self._errors("await_for"):
                found: vsb.CallMeta | None = await subscriber.wait(
                    self._channel(call_id).encode(),
                    lambda: self.aget_meta(call_id),
                    lambda meta: meta is None or meta.seq > after,
                    timeout,
                    _from_note,
                )
            return found
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sharded = self._cluster
        with self._errors("await_for"):
            ps = client.pubsub()
            get = ps.get_sharded_message if sharded else ps.get_message
            try:
                if sharded:
                    await ps.ssubscribe(self._channel(call_id))
                else:
                    await ps.subscribe(self._channel(call_id))
                end = deadline + float(self._kwargs["socket_timeout"])
                while loop.time() < end:  # the server's confirmation: the subscription is live
                    msg = await get(timeout=end - loop.time())
                    if msg is not None and msg.get("type") in ("subscribe", "ssubscribe"):
                        break
                while True:
                    meta = await self.aget_meta(call_id)
                    if meta is None or meta.seq > after:
                        return meta
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return meta
                    await get(ignore_subscribe_messages=True, timeout=remaining)
            finally:
                await ps.aclose()

    async def aput_snapshot(self, call_id: str, snapshot: vsb.Snapshot) -> None:
        self._async_checked()  # refuses a closed backend
        with self._errors("put_snapshot"):
            await self._aeval(
                "put_snapshot",
                keys=self._keys(call_id)[:5],
                args=[_num(time.time()), str(snapshot.seq), snapshot.chain, snapshot.data],
            )

    async def aget_snapshot(self, call_id: str) -> vsb.Snapshot | None:
        self._async_checked()  # refuses a closed backend
        with self._errors("get_snapshot"):
            reply = await self._aeval("get_snapshot", keys=self._keys(call_id)[:5], args=[_num(time.time())])
        return None if not reply else vsb.Snapshot(int(reply[0]), bytes(reply[1]), bytes(reply[2]))

    async def aclose(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - always called from a coroutine
            loop = None
        found = self._aclients.get(loop) if loop is not None else None
        self.close()
        if found is not None:
            for lane in _lanes(found[0]):
                await lane.close()
            await found[0].aclose()

    def _async_checked(self) -> tuple[Any, _Scripts]:
        if self._closed:
            raise vs.BackendUnavailable(f"{self._shown}: the backend is closed")
        return self._async()


def _run(client: Any, script: Any, keys: list[bytes], args: list[bytes]) -> Any:
    """``script(keys, args)`` without redis-py's per-call checks of ``Script.__call__`` (the hot path)."""
    try:
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:  # a restarted or another server: load it, once
        script.sha = client.script_load(script.script)
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


async def _arun(client: Any, script: Any, keys: list[bytes], args: list[bytes]) -> Any:
    """The async twin of :func:`_run`."""
    try:
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        script.sha = await client.script_load(script.script)
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


def _cluster_ttl(timeout: float) -> int:
    """redis-py's redirection budget for one command on a Cluster. While a call's slot moves
    the server answers TRYAGAIN (the script did not run); redis-py retries, sleeping 50 ms per
    attempt in the second half of the budget. The default (16: 0.4 s) is shorter than a
    MIGRATE of a big slot: give it about ``timeout`` of sleeping instead."""
    return 16 + 2 * math.ceil(timeout / 0.05)


def _merge(rows: Sequence[Sequence[bytes]], per: int, batch: int) -> tuple[list[bytes], bool]:
    """The first ``batch`` ids of the union of index reads of ``per`` ids each, in order, and
    whether the indexes are exhausted. An index that returned ``per`` ids may hold more past
    its last one, so only ids up to the smallest such last id are certain: nothing is skipped."""
    ids = sorted(i for row in rows for i in row)
    full = [row[-1] for row in rows if len(row) >= per]
    if full:
        bound = min(full)
        ids = [i for i in ids if i <= bound]
    done = not full and len(ids) <= batch
    return ids[:batch], done


def _redact(url: str) -> str:
    """The URL without its password, for messages and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def open_redis(url: str, params: Mapping[str, str]) -> RedisBackend:
    """The factory for ``redis://`` and ``rediss://`` (``url`` without its query, ``params`` its parameters)."""
    parts = urlsplit(url)
    if not parts.hostname and not parts.path.startswith("/"):
        raise vs.ConfigError(f"{_redact(url)}: name a host, e.g. redis://127.0.0.1:6379/0")
    parsed: dict[str, Any] = {}
    known = sorted((*_FLOAT, *_INT, *_STR, *_BOOL))
    for name, value in params.items():
        if name not in known:
            raise vs.ConfigError(f"{_redact(url)}: unknown parameter {name}=; known: {', '.join(known)}")
        try:
            if name in _FLOAT:
                parsed[name] = float(value)
            elif name in _INT:
                parsed[name] = int(value)
            elif name in _BOOL:
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                parsed[name] = value.lower() in ("true", "1", "yes")
            else:
                parsed[name] = value
        except ValueError:
            raise vs.ConfigError(f"{_redact(url)}: bad value for {name}=: {value!r}") from None
    cluster = parts.scheme.endswith("+cluster")
    scheme = parts.scheme.removesuffix("+cluster")
    if scheme == "redis" and any(k in parsed for k in _SSL):
        raise vs.ConfigError(f"{_redact(url)}: ssl_* parameters need {scheme}s:// (TLS)")
    if cluster and parts.path.strip("/") not in ("", "0"):
        raise vs.ConfigError(f"{_redact(url)}: a Redis Cluster has only database 0; drop {parts.path!r}")
    if not cluster and "buckets" in parsed:
        raise vs.ConfigError(f"{_redact(url)}: buckets= is for redis+cluster:// and rediss+cluster:// only")
    options: dict[str, Any] = {}
    for name in ("max_connections", "health_check_interval", "client_name", *_SSL):
        if name in parsed:
            options[name] = parsed[name]
    timeout = parsed.get("socket_timeout", parsed.get("timeout", _DEFAULT_TIMEOUT))
    query = urlencode(dict(params))
    client_url = urlunsplit((scheme, parts.netloc, "", "", "")) if cluster else url
    return RedisBackend(
        client_url,
        prefix=parsed.get("prefix", "vs"),
        timeout=timeout,
        socket_connect_timeout=parsed.get("socket_connect_timeout", parsed.get("timeout")),
        retries=parsed.get("retries", 0),
        tombstone_ttl=parsed.get("tombstone_ttl", _TOMBSTONE_TTL),
        options=options,
        reopen_url=f"{url}?{query}" if query else url,
        cluster=cluster,
        buckets=parsed.get("buckets", _DEFAULT_BUCKETS),
    )


__all__ = ["RedisBackend", "open_redis"]
