"""Waking the watchers of a backend's calls: sync ones on a condition, async
ones through their own event loops (an append may come from any thread)."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._backend import CallMeta

T = TypeVar("T")


class Waiters:
    """Per backend. ``gen`` counts notifications, so a watcher that read the call
    before waiting cannot miss an append made in between."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.gen = 0
        self.active = 0  # sync waiters + registered futures: appends skip notify() when 0
        self._futures: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def notify(self, call_id: str) -> None:
        with self._cond:
            self.gen += 1
            self._cond.notify_all()
            waiting = self._futures.pop(call_id, None)
            if waiting:
                self.active -= len(waiting)
        for loop, fut in waiting or ():
            loop.call_soon_threadsafe(_wake, fut)

    def wait(self, gen: int, timeout: float) -> None:
        """Block until a notification after ``gen`` or ``timeout``."""
        with self._cond:
            if self.gen != gen:
                return
            self.active += 1
            try:
                self._cond.wait(timeout)
            finally:
                self.active -= 1

    def wait_for(
        self, read: Callable[[], CallMeta | None], after: int, timeout: float, poll: float | None
    ) -> CallMeta | None:
        """The backend's ``wait_for``: ``read()`` the call's metadata until its seq passes ``after``,
        it is gone or ``timeout`` passes; between reads, wait for a notification (and, with
        ``poll``, at most a backoff from 1 ms up to ``poll`` seconds: for writers elsewhere)."""
        deadline = time.monotonic() + timeout
        backoff = 0.001
        while True:
            gen = self.gen
            meta = read()
            left = deadline - time.monotonic()
            if meta is None or meta.seq > after or left <= 0:
                return meta
            self.wait(gen, left if poll is None else min(backoff, left))
            if poll is not None:
                backoff = min(backoff * 2, poll)

    async def await_for(
        self,
        call_id: str,
        read: Callable[[], Awaitable[CallMeta | None]],
        after: int,
        timeout: float,
        poll: float | None,
    ) -> CallMeta | None:
        """Async twin of :meth:`wait_for` (notifications for ``call_id`` wake it)."""
        deadline = time.monotonic() + timeout
        backoff = 0.001
        while True:
            fut = self.future(call_id)  # registered before the read: no append is missed
            try:
                meta = await read()
                left = deadline - time.monotonic()
                if meta is None or meta.seq > after or left <= 0:
                    return meta
                await wait_future(fut, left if poll is None else min(backoff, left))
            finally:
                self.discard(call_id, fut)
            if poll is not None:
                backoff = min(backoff * 2, poll)

    def future(self, call_id: str) -> asyncio.Future[None]:
        """A future set at the next notification for ``call_id`` (register before reading)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            self._futures.setdefault(call_id, []).append((loop, fut))
            self.active += 1
        return fut

    def discard(self, call_id: str, fut: asyncio.Future[None]) -> None:
        with self._cond:
            waiting = self._futures.get(call_id)
            if waiting is None:
                return
            kept = [w for w in waiting if w[1] is not fut]
            self.active -= len(waiting) - len(kept)
            if kept:
                self._futures[call_id] = kept
            else:
                del self._futures[call_id]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_future(fut: asyncio.Future[None], timeout: float) -> bool:
    """Wait for ``fut`` at most ``timeout`` seconds; True if it was set."""
    try:
        await asyncio.wait_for(asyncio.shield(fut), timeout)
    except TimeoutError:
        return False
    return True


class Worker:
    """One daemon thread running a blocking backend's calls for async callers, in order.

    Cheaper than ``asyncio.to_thread`` (no executor, no concurrent future to chain):
    a queue in, ``call_soon_threadsafe`` out.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._lock:
            served = not self._stopped
            if served:
                if self._thread is None:
                    self._start()
                self._queue.put((fn, args, loop, fut))
        if served:
            return await fut
        # Stopped (the backend closed): no thread serves the queue any more, so the call runs
        # here, where the closed backend refuses it at once instead of leaving it waiting forever.
        return fn(*args)

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` in the worker, nobody waiting for it (housekeeping); dropped once stopped."""
        with self._lock:
            if self._stopped:
                return
            if self._thread is None:
                self._start()
            self._queue.put((fn, (), None, None))

    def _start(self) -> None:  # under self._lock
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                return
            fn, args, loop, fut = item
            try:
                result = fn(*args)
            except BaseException as exc:
                if loop is not None:
                    _post(loop, _fail, fut, exc)
            else:
                if loop is not None:
                    _post(loop, _succeed, fut, result)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._thread is not None:
                self._queue.put(None)  # after what was queued before: those calls are still served


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the caller's loop closed meanwhile: nobody waits for the answer
        pass


def _succeed(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
