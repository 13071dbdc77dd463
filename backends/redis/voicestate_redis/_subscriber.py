"""The async watchers of one event loop, on one subscriber connection.

A watch waits for an append in a loop (``await_for`` again after each event). Opening a
pub/sub connection for each wait costs a TCP connect and redis-py's handshake, about a
millisecond, more than the watch budget. Here one connection per event loop stays
subscribed to the channels being watched (and for a second after the last waiter
leaves, so a watch loop does not subscribe again at each event), and a publish wakes
every waiter on its channel, which then reads the metadata.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from ._direct import Lane, _hiredis_pack

_GRACE = 1.0  # seconds a channel stays subscribed after its last waiter left


class Subscriber(Lane):
    def __init__(self, pool: Any, timeout: float) -> None:
        super().__init__(pool, timeout)
        self._live: set[bytes] = set()  # channels the server has confirmed
        self._confirming: dict[bytes, list[asyncio.Future[None]]] = {}
        self._wakers: dict[bytes, set[asyncio.Event]] = {}
        self._idle: dict[bytes, asyncio.TimerHandle] = {}
        self._last: dict[bytes, bytes] = {}  # the newest message of each channel waited on

    async def wait(
        self,
        channel: bytes,
        read: Callable[[], Awaitable[Any]],
        done: Callable[[Any], bool],
        timeout: float,
        parse: Callable[[bytes, Any], Any] | None = None,
    ) -> Any:
        """``read()`` until ``done`` says yes or ``timeout`` passes, woken by publishes on
        ``channel``; reads once more after each (re)subscription, so nothing is missed.
        ``parse(message, last value read)``: the value a publish carries (None: read instead),
        so a wake that is enough needs no read."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waker = asyncio.Event()
        self._wakers.setdefault(channel, set()).add(waker)
        idle = self._idle.pop(channel, None)
        if idle is not None:
            idle.cancel()
        try:
            while True:
                if channel not in self._live:
                    await self._subscribe(channel)
                waker.clear()  # before the read: a publish after it wakes the wait below
                value = await read()
                remaining = deadline - loop.time()
                if done(value) or remaining <= 0:
                    return value
                try:
                    await asyncio.wait_for(waker.wait(), remaining)
                except TimeoutError:
                    continue  # read once more, then return
                message = self._last.get(channel)
                if parse is not None and message is not None and channel in self._live:
                    carried = parse(message, value)
                    if carried is not None and done(carried):
                        return carried
        finally:
            waiters = self._wakers.get(channel)
            if waiters is not None:
                waiters.discard(waker)
                if not waiters:
                    del self._wakers[channel]
                    self._last.pop(channel, None)
                    self._idle[channel] = loop.call_later(_GRACE, self._unsubscribe, channel)

    async def _subscribe(self, channel: bytes) -> None:
        conn = self._conn if self._conn is not None else await self._connect()
        future = asyncio.get_running_loop().create_future()
        pending = self._confirming.setdefault(channel, [])
        pending.append(future)
        if len(pending) == 1:
            conn._writer.write(_hiredis_pack(("SUBSCRIBE", channel)))
        try:
            await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            self._drop(conn, redis.TimeoutError(f"SUBSCRIBE not confirmed within {self._timeout} s"))
            raise redis.TimeoutError(f"SUBSCRIBE not confirmed within {self._timeout} s") from None

    def _unsubscribe(self, channel: bytes) -> None:
        self._idle.pop(channel, None)
        if channel in self._wakers or channel not in self._live or self._conn is None:
            return
        self._live.discard(channel)  # its confirmation is ignored: a new SUBSCRIBE may follow it
        try:
            self._conn._writer.write(_hiredis_pack(("UNSUBSCRIBE", channel)))
        except Exception as exc:
            self._drop(self._conn, redis.ConnectionError(f"write failed: {exc}"))

    def _received(self, replies: list[Any]) -> None:
        for reply in replies:
            if not isinstance(reply, list) or len(reply) < 3:
                continue
            kind, channel = reply[0], reply[1]
            if kind == b"message":
                wakers = self._wakers.get(channel)
                if wakers:
                    self._last[channel] = reply[2]  # the newest: publishes come in order
                    for waker in wakers:
                        waker.set()
            elif kind == b"subscribe":
                self._live.add(channel)
                for future in self._confirming.pop(channel, ()):
                    if not future.done():
                        future.set_result(None)

    def _forget(self, exc: BaseException) -> None:
        """Fail the subscriptions in flight and wake every waiter, which reads again (raising if
        the server is gone) and subscribes on a new connection."""
        self._live.clear()
        self._last.clear()
        confirming, self._confirming = self._confirming, {}
        for futures in confirming.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        for wakers in self._wakers.values():
            for waker in wakers:
                waker.set()

    async def close(self) -> None:
        for handle in self._idle.values():
            handle.cancel()
        self._idle.clear()
        await super().close()
