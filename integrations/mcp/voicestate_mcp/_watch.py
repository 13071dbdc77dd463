"""Resource subscriptions fed by the store's watch: while a client listens
(``subscriptions/listen``) to a call's resources, the call is watched, and each batch
of events stored, by any writer in any process, becomes ``notifications/resources/updated``."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated

import voicestate as vs

log = logging.getLogger("voicestate_mcp")

CALLS_URI = "voicestate://calls"
_CALL_URI = re.compile(r"^voicestate://calls/([^/?#]+)(/context|/timeline)?$")
LIST_POLL = 1.0  # seconds between two reads of the call list while someone follows voicestate://calls
ENDED_POLL = 1.0  # seconds between two reads of an ended call (notes and late results still arrive)
ABSENT_POLL = (0.05, 1.0)  # backoff between two looks for a call that does not exist yet
RETRY = (0.1, 5.0)  # backoff while the store is unreachable


def call_uris(call_id: str) -> list[str]:
    base = f"{CALLS_URI}/{call_id}"
    return [base, base + "/context", base + "/timeline"]


class Follower:
    """Watches the calls some listen stream subscribed to, one watch per call (shared)."""

    def __init__(self, store: vs.Store, bus: InMemorySubscriptionBus) -> None:
        self.store = store
        self.bus = bus
        self._watching: dict[str, tuple[int, asyncio.Task[None]]] = {}  # call id / "" -> (listeners, task)
        self._uris: dict[str, Counter[str]] = {}  # call id -> the URIs as clients wrote them, by listener

    async def middleware(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method != "subscriptions/listen":
            return await call_next(ctx)
        wanted = _wanted(ctx.params)
        for key, uris in wanted.items():
            self._uris.setdefault(key, Counter()).update(uris)
            self._acquire(key)
        try:
            return await call_next(ctx)  # returns when the listen stream ends
        finally:
            for key, uris in wanted.items():
                left = self._uris.get(key)
                if left is not None:
                    left.subtract(uris)
                    if not +left:
                        del self._uris[key]
                self._release(key)

    def _acquire(self, key: str) -> None:
        count, task = self._watching.get(key, (0, None))
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._list() if key == "" else self._call(key))
        self._watching[key] = (count + 1, task)

    def _release(self, key: str) -> None:
        if key not in self._watching:  # closed meanwhile (the server stopped)
            return
        count, task = self._watching[key]
        if count > 1:
            self._watching[key] = (count - 1, task)
        else:
            del self._watching[key]
            task.cancel()

    async def _publish(self, call_id: str, listed: bool) -> None:
        for uri in sorted(set(self._uris.get(call_id, ())) | set(call_uris(call_id))):
            await self.bus.publish(ResourceUpdated(uri=uri))
        if listed:
            await self.bus.publish(ResourceUpdated(uri=CALLS_URI))

    async def _call(self, call_id: str) -> None:
        """Follow one call: wait for it to exist, watch it as it is stored, and after its end read
        it now and then (notes and late tool results are still accepted); stop if it is deleted.
        While the store is unreachable, try again with backoff (an update then says "refetch")."""
        seq: int | None = None
        delay = RETRY[0]
        while True:
            try:
                if seq is None:
                    seq = await self._await_call(call_id)
                await self._follow(call_id, seq)
                return
            except vs.CallNotFound:
                await self._publish(call_id, True)  # deleted or expired: readers find it gone
                return
            except vs.BackendUnavailable as exc:
                log.warning("watching call %r: %s; trying again in %.1f s", call_id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY[1])
                seq = None  # read it afresh, and say it may have changed meanwhile
                await self._publish(call_id, False)
            except vs.VoiceStateError as exc:  # a malformed id: honoured, never fires
                log.warning("not watching call %r: %s", call_id, exc)
                return

    async def _follow(self, call_id: str, seq: int) -> None:
        async for ev in self.store.awatch(call_id, after=seq):
            seq = ev.seq or seq
            listed = isinstance(ev, (vs.OwnerChanged, vs.HandedOff, vs.HandoffCancelled, vs.CallEnded))
            await self._publish(call_id, listed)
        while True:  # ended (or gone: CallNotFound ends it)
            await asyncio.sleep(ENDED_POLL)
            late = await self.store.aevents(call_id, after=seq)
            if late:
                seq = late[-1].seq or seq
                await self._publish(call_id, False)

    async def _await_call(self, call_id: str) -> int:
        """The call's seq, once it exists (a client may subscribe before the call starts: its
        start is then an update)."""
        delay = ABSENT_POLL[0]
        waited = False
        while True:
            try:
                seq = (await self.store.aload(call_id)).seq
            except vs.CallNotFound:
                waited = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, ABSENT_POLL[1])
                continue
            if waited:
                await self._publish(call_id, True)
            return seq

    async def _list(self) -> None:
        """The call list has no watch of its own: its metadata is read every LIST_POLL seconds."""
        seen: object = None
        while True:
            try:
                infos = await self.store.acalls(status="active", limit=500)
                now = tuple((i.call_id, i.owner, i.epoch, i.seq, i.pending_to) for i in infos)
                if seen is not None and now != seen:
                    await self.bus.publish(ResourceUpdated(uri=CALLS_URI))
                seen = now
            except vs.VoiceStateError as exc:
                log.warning("reading the call list: %s", exc)
            await asyncio.sleep(LIST_POLL)

    async def close(self) -> None:
        tasks = [task for _, task in self._watching.values()]
        self._watching.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _wanted(params: Any) -> dict[str, list[str]]:
    """The call ids (and "" for the call list) whose resources a listen request subscribes to,
    with the URIs it named."""
    try:
        uris = params["notifications"].get("resourceSubscriptions") or []
    except (TypeError, KeyError, AttributeError):
        return {}
    keys: dict[str, list[str]] = {}
    for uri in uris if isinstance(uris, list) else []:
        if not isinstance(uri, str):
            continue
        if uri == CALLS_URI:
            key = ""
        else:
            m = _CALL_URI.match(uri)
            if m is None:
                continue
            key = unquote(m.group(1))
        keys.setdefault(key, []).append(uri)
    return keys
