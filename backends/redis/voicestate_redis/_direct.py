"""The sync append's own connections: the command packed once and written straight to a
connection kept out of the pool.

redis-py's ``execute_command`` and its pool's get/release cost about 50 µs per command on a
loopback server whose round trip is about 40 µs (measured with redis-py 8.2 and hiredis),
so a script call through them would cost more than the network. One server only: a
Cluster's redirections stay with ``RedisCluster``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import redis

_hiredis_pack: Any
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - a dependency; without it the pipe is off
    _hiredis_pack = None

PIPELINED = _hiredis_pack is not None  # the async pipe parses with hiredis

# What makes a connection unusable: the call is retried on a fresh one (an append is idempotent).
_LOST = (redis.ConnectionError, redis.TimeoutError, OSError)


def lost(exc: BaseException) -> BaseException:
    """What a reader that failed with ``exc`` fails its waiters with: a connection error."""
    return exc if isinstance(exc, _LOST) else redis.ConnectionError(f"{type(exc).__name__}: {exc}")


def _closed(exc: BaseException) -> bool:
    """The server closed the connection (it restarted, or dropped an idle client), as opposed
    to a timeout: worth one immediate retry on a new connection, beyond ``retries``."""
    return not isinstance(exc, (redis.TimeoutError, TimeoutError))


class Direct:
    """Connections made by the pool's factory (so URL options, AUTH and TLS apply), handed
    out one per caller at a time and kept, never returned to the pool."""

    def __init__(self, pool: Any, retries: int) -> None:
        self._pool = pool
        self._retries = retries
        self._free: list[Any] = []
        self._all: list[Any] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _take(self) -> Any:
        if self._pid != os.getpid():  # a forked child must not share its parent's sockets (nor a held lock)
            self._free, self._all, self._pid, self._lock = [], [], os.getpid(), threading.Lock()
        try:
            return self._free.pop()  # atomic under the GIL
        except IndexError:
            conn = self._pool.make_connection()
            with self._lock:
                self._all.append(conn)
            return conn

    def evalsha(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """``EVALSHA`` of ``script`` (loaded again after a NOSCRIPT), retried ``retries`` times
        on a lost connection; raises redis-py's errors as ``execute_command`` would."""
        return self._run(lambda: ("EVALSHA", script.sha, len(keys), *keys, *args), script)

    def execute(self, *parts: Any) -> Any:
        """One command, its raw reply (no redis-py response callback: HGETALL is a flat list)."""
        return self._run(lambda: parts, None)

    def _run(self, command: Callable[[], tuple[Any, ...]], script: Any) -> Any:
        conn = self._take()
        try:
            failed, extra = 0, True
            while True:
                kept = conn._sock is not None  # connected before: the server may have gone since
                try:
                    try:
                        return self._call(conn, command())
                    except redis.exceptions.NoScriptError:  # a restarted or another server: load it, once
                        if script is None:
                            raise
                        script.sha = self._call(conn, ("SCRIPT", "LOAD", script.script)).decode()
                        return self._call(conn, command())
                except _LOST as exc:
                    conn.disconnect()
                    if kept and extra and _closed(exc):
                        extra = False  # a kept connection the server closed (a restart): once more, now
                        continue
                    failed += 1
                    if failed > self._retries:
                        raise
        except redis.ResponseError:
            raise  # an error reply: read whole, the connection stays in step
        except BaseException:
            conn.disconnect()  # a reply may still be on its way: never reuse the socket
            raise
        finally:
            self._free.append(conn)

    @staticmethod
    def _call(conn: Any, parts: tuple[Any, ...]) -> Any:
        packed = [_hiredis_pack(parts)] if _hiredis_pack is not None else conn.pack_command(*parts)
        conn.send_packed_command(packed, check_health=False)
        return conn.read_response()

    def close(self) -> None:
        with self._lock:
            conns, self._all, self._free = self._all, [], []
        for conn in conns:
            conn.disconnect()


class Lane:
    """One connection of one event loop, kept, and a reader task handing out what arrives on
    it (the base of :class:`Pipe` and of the watchers' ``Subscriber``). Made by the pool's
    factory, so the URL's options, AUTH and TLS apply; a lost connection is dropped, its
    users told, and the next use connects anew."""

    def __init__(self, pool: Any, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock | None = None
        self.closed = False  # set by close(), or by the backend's sync close(): no new connection

    async def _connect(self) -> Any:
        if self.closed:
            raise redis.ConnectionError("the backend is closed")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is None:
                conn = self._pool.make_connection()
                await conn.connect()  # AUTH, SELECT, TLS, CLIENT SETINFO: the URL's options
                self._conn = conn
                self._reader = asyncio.get_running_loop().create_task(self._read(conn))
        return self._conn

    async def _read(self, conn: Any) -> None:
        parser = _Replies(conn)
        try:
            while True:
                self._received(await parser.read())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._drop(conn, lost(exc))

    def _received(self, replies: list[Any]) -> None:
        """What arrived, in order."""
        raise NotImplementedError

    def _forget(self, exc: BaseException) -> None:
        """The connection is gone: tell its users (``exc``)."""
        raise NotImplementedError

    def _drop(self, conn: Any, exc: BaseException) -> None:
        """Forget ``conn`` (if it is still the current one) and close it."""
        if conn is not self._conn:
            return
        self._conn = None
        self._forget(exc)
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        asyncio.get_running_loop().create_task(conn.disconnect(nowait=True))

    async def close(self) -> None:
        self.closed = True  # first: the users failed below must not connect again
        conn = self._conn
        if conn is not None:
            self._drop(conn, redis.ConnectionError("the backend is closed"))
            await conn.disconnect(nowait=True)


class Pipe(Lane):
    """The async appends of one event loop, pipelined on one connection: the commands of the
    callers of one loop iteration go out in one write, and one reader task hands the replies
    out in order.

    1,000 calls recording at once then cost a write and a read per batch instead of a pooled
    connection, a timeout context and a parser call each. A caller whose reply is later than
    ``timeout`` drops the connection, which fails every caller waiting on it; callers retry
    ``retries`` times on a new connection (an append is idempotent), then raise."""

    def __init__(self, pool: Any, retries: int, timeout: float) -> None:
        super().__init__(pool, timeout)
        self._retries = retries
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._out: list[bytes] = []
        self._watchdog: asyncio.TimerHandle | None = None

    async def evalsha(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The async twin of :meth:`Direct.evalsha`."""
        for attempt in range(self._retries + 1):
            try:
                try:
                    return await self._call(("EVALSHA", script.sha, len(keys), *keys, *args))
                except redis.exceptions.NoScriptError:  # a restarted or another server: load it, once
                    script.sha = (await self._call(("SCRIPT", "LOAD", script.script))).decode()
                    return await self._call(("EVALSHA", script.sha, len(keys), *keys, *args))
            except _LOST:
                if attempt == self._retries:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def execute(self, *parts: Any) -> Any:
        """One command, its raw reply, retried ``retries`` times on a lost connection."""
        for attempt in range(self._retries + 1):
            try:
                return await self._call(parts)
            except _LOST:
                if attempt == self._retries:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(self, parts: tuple[Any, ...]) -> Any:
        conn = self._conn
        if conn is None:
            conn = await self._connect()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        # the same order as the bytes written: no await between these and the flush
        packed = _hiredis_pack(parts)
        if not self._waiting and not self._out:
            # an idle connection: out now (a loop iteration sooner); callers of this iteration
            # that follow are batched behind it
            self._waiting.append((future, loop.time() + self._timeout))
            try:
                conn._writer.write(packed)
            except Exception as exc:
                self._drop(conn, redis.ConnectionError(f"write failed: {exc}"))
        else:
            self._waiting.append((future, loop.time() + self._timeout))
            self._out.append(packed)
            if len(self._out) == 1:
                loop.call_soon(self._flush, conn)
        if self._watchdog is None:
            self._watchdog = loop.call_at(loop.time() + self._timeout, self._check, conn)
        return await future

    def _flush(self, conn: Any) -> None:
        out, self._out = self._out, []
        if conn is not self._conn:
            return  # dropped meanwhile: its callers have failed already
        try:
            conn._writer.write(b"".join(out))
        except Exception as exc:
            self._drop(conn, redis.ConnectionError(f"write failed: {exc}"))

    def _check(self, conn: Any) -> None:
        """The watchdog: the oldest caller's deadline has passed, or re-arm for it."""
        self._watchdog = None
        if conn is not self._conn or not self._waiting:
            return
        loop = asyncio.get_running_loop()
        deadline = self._waiting[0][1]
        if loop.time() >= deadline:
            self._drop(conn, redis.TimeoutError(f"no reply within {self._timeout} s"))
        else:
            self._watchdog = loop.call_at(deadline, self._check, conn)

    def _received(self, replies: list[Any]) -> None:
        """Hand out the replies in order: the callers wait in the order their bytes went out."""
        waiting = self._waiting
        for reply in replies:
            future, _ = waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, redis.ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def _forget(self, exc: BaseException) -> None:
        """Fail every caller waiting on the lost connection (they retry on a new one)."""
        waiting, self._waiting = self._waiting, collections.deque()
        self._out = []
        for future, _ in waiting:
            if not future.done():
                future.set_exception(exc)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


class _Replies:
    """The replies that have arrived on a connection's stream, all of them at each read."""

    def __init__(self, conn: Any) -> None:
        import hiredis

        self._stream = conn._reader
        self._hiredis = hiredis.Reader(replyError=conn._parser.parse_error, notEnoughData=_NOT_ENOUGH)

    async def read(self) -> list[Any]:
        replies: list[Any] = []
        while not replies:
            data = await self._stream.read(65536)
            if not data:
                raise redis.ConnectionError("the server closed the connection")
            self._hiredis.feed(data)
            while (reply := self._hiredis.gets()) is not _NOT_ENOUGH:
                replies.append(reply)
        return replies


_NOT_ENOUGH = object()
