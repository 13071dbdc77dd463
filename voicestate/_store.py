"""Store: opens, resumes, loads and appends to calls across its tiers."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from types import TracebackType
from typing import Any

import attrs

from ._backend import CallMeta, MetaUpdate, StoredEvent
from ._calls import CallInfo, check_filters, wanted
from ._checks import prepare_outside
from ._codec import chain_next, decode_event, decode_stored
from ._config import StoreConfig
from ._errors import CallNotFound, ConfigError, InvalidArgument, PacketError, SeqConflict
from ._events import CallEnded, Event
from ._handoff import ResumeTarget, classify
from ._ids import check_call_id, check_name
from ._io import Flow, arun, run
from ._keys import KeyRing
from ._owner import OwnerLog
from ._packet import HandoffPacket, TokenClaims, decode_token, peek
from ._redeem import create, fold_call, redeem
from ._session import Session
from ._state import CallState
from ._tiers import Tiers
from ._verify import PacketCheck, invalid, judge
from ._watch import Cursor

_APPENDED = 4096  # calls whose metadata after an outside append a store remembers


class Opening(Awaitable[Session]):
    """What ``aopen``/``aresume`` return: await it, or use it as an async context manager."""

    def __init__(self, factory: Callable[[], Awaitable[Session]]) -> None:
        self._factory = factory
        self._session: Session | None = None

    def __await__(self) -> Generator[Any, None, Session]:
        return self._factory().__await__()

    async def __aenter__(self) -> Session:
        self._session = await self._factory()
        return self._session

    # Awaiting (above) or entering gives a session that renews its lease in the background.

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.__aexit__(et, e, tb)


class Store:
    """Calls across an ordered list of tiers. Build one with :func:`voicestate.open_store`."""

    # Slots: a misspelled option set on a store fails instead of being ignored (options live in
    # ``config``, a frozen StoreConfig; replace it with ``attrs.evolve`` to change one).
    __slots__ = ("__weakref__", "_appended", "_closed", "config", "tiers")

    def __init__(self, tiers: Tiers, config: StoreConfig) -> None:
        self.tiers = tiers
        self.config = config
        self._closed = False
        # call id -> its metadata after this store's last outside append: the next one is
        # conditional on it without a read first (a stale one conflicts, and the conflict
        # brings the current metadata)
        self._appended: dict[str, CallMeta] = {}

    @property
    def keys(self) -> KeyRing:
        """The keys this store signs packets with (the newest) and verifies them with (all)."""
        return self.config.keys

    @property
    def tenant(self) -> str | None:
        return self.config.tenant

    def __repr__(self) -> str:
        return f"<Store {' '.join(t.url + ('' if t.write == 'through' else '?write=behind') for t in self.tiers.all)}>"

    # -- open ------------------------------------------------------------------

    def open(self, call_id: str, *, agent: str, meta: Mapping[str, Any] | None = None) -> Session:
        """Create the call with ``agent`` as its owner (epoch 1). Fails if it exists."""
        return run(self._open(call_id, agent, meta))

    def aopen(self, call_id: str, *, agent: str, meta: Mapping[str, Any] | None = None) -> Opening:
        return Opening(lambda: _beating(arun(self._open(call_id, agent, meta))))

    def _open(self, call_id: str, agent: str, meta: Mapping[str, Any] | None) -> Flow[Session]:
        check_call_id(call_id)
        check_name(agent)
        if meta is not None and not isinstance(meta, Mapping):
            raise InvalidArgument(f"open(meta=...) is a mapping (channel, caller, ...), not {type(meta).__name__}")
        session = Session(self, call_id, agent)
        yield from create(session, meta)
        return session

    # -- resume ----------------------------------------------------------------

    def resume(
        self,
        target: ResumeTarget,
        *,
        agent: str,
        takeover: bool = False,
        from_epoch: int | None = None,
        force: bool = False,
    ) -> Session:
        """Become the owner: redeem a packet (object, msgpack, JSON or token) or the
        pending handoff of ``call_id`` addressed to ``agent``.

        ``takeover=True`` takes the call from a dead owner: refused while the
        owner's lease is live (``force=True`` overrides that: an operator's
        decision), conditional on the epoch read (or on ``from_epoch``, the epoch
        the caller saw die: of several recovery workers sent for the same dead
        owner, one wins).
        """
        return run(self._resume(target, agent, takeover, from_epoch, force))

    def aresume(
        self,
        target: ResumeTarget,
        *,
        agent: str,
        takeover: bool = False,
        from_epoch: int | None = None,
        force: bool = False,
    ) -> Opening:
        return Opening(lambda: _beating(arun(self._resume(target, agent, takeover, from_epoch, force))))

    def _resume(
        self, target: ResumeTarget, agent: str, takeover: bool, from_epoch: int | None, force: bool
    ) -> Flow[Session]:
        check_name(agent)
        if from_epoch is not None and not takeover:
            raise ConfigError("from_epoch goes with takeover=True")
        if force and not takeover:
            raise ConfigError("force=True goes with takeover=True (it overrides a live owner's lease)")
        if from_epoch is not None and (isinstance(from_epoch, bool) or not isinstance(from_epoch, int)):
            raise InvalidArgument(f"from_epoch is the epoch you saw die (an int), not {from_epoch!r:.40}")
        call_id, packet, claims = classify(target, self.config)
        if packet is not None and packet.to_agent != agent:
            raise PacketError("wrong_target", f"the packet is addressed to {packet.to_agent!r}, not {agent!r}")
        session = Session(self, call_id, agent)
        yield from redeem(session, packet, claims, takeover, from_epoch, force)
        return session

    # -- load / append / delete ----------------------------------------------------

    def load(self, call_id: str) -> CallState:
        """The call's current state; raises CallNotFound."""
        return run(self._load(call_id))

    async def aload(self, call_id: str) -> CallState:
        return await arun(self._load(call_id))

    def _load(self, call_id: str) -> Flow[CallState]:
        check_call_id(call_id)
        meta = yield from self.tiers.meta(call_id)
        if meta is None:
            raise CallNotFound(f"no call {call_id!r} in {self!r}")
        reader = OwnerLog(self, call_id, "")
        yield from fold_call(reader, meta)  # from the snapshot, where there is one
        state = reader._folder.snapshot()
        self.config.check_tenant(call_id, state.tenant)
        return state

    def _load_log(self, call_id: str, after: int = 0) -> Flow[list[StoredEvent]]:
        check_call_id(call_id)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ConfigError(f"events(after=...) is a seq (an int >= 0), not {after!r:.40}")
        meta = yield from self.tiers.meta(call_id)
        if meta is None:
            raise CallNotFound(f"no call {call_id!r} in {self!r}")
        if after == 0:
            log = yield from self.tiers.load(call_id, meta)
            self._check_tenant_first(call_id, log[0])
            return log
        yield from self._tenant_guard(call_id)
        if after >= meta.seq:
            return []
        at = yield from self.tiers.load_at(call_id, after)
        if at is None:  # the call went between the two reads
            raise CallNotFound(f"no call {call_id!r} in {self!r}")
        return (yield from self.tiers.load(call_id, meta, after + 1, at.chain))

    def _tenant_guard(self, call_id: str) -> Flow[None]:
        """The tenant check for writes that do not load the call: one read of its first event."""
        if self.config.tenant is None:
            return
        first = yield from self.tiers.load_first(call_id)
        if first is None:
            raise CallNotFound(f"no call {call_id!r} in {self!r}")
        self._check_tenant_first(call_id, first)

    def _check_tenant_first(self, call_id: str, first: StoredEvent) -> None:
        if self.config.tenant is not None:
            started = decode_event(first.data, first.seq, first.chain)
            self.config.check_tenant(call_id, getattr(started, "tenant", None))

    def events(self, call_id: str, *, after: int = 0) -> list[Event]:
        """The call's events after seq ``after`` (0: all of them), decoded, with ``seq`` and ``chain`` set.

        A reader that keeps up with a call passes the seq of the last event it holds:
        one metadata read and the tail, however long the call.
        """
        return [decode_stored(se.data, se.seq, se.chain) for se in run(self._load_log(call_id, after))]

    async def aevents(self, call_id: str, *, after: int = 0) -> list[Event]:
        return [decode_stored(se.data, se.seq, se.chain) for se in await arun(self._load_log(call_id, after))]

    def append(self, call_id: str, *events: Event) -> int:
        """Append from outside the owner: ``Note``, ``ToolReturned``, ``ToolCancelled``, ``CallEnded``.

        Conditional on the seq this store knows (read once, then the one its last append
        left), retried on conflict, no epoch check. Returns the stored seq of the last event.
        """
        return run(self._append(call_id, events))

    async def aappend(self, call_id: str, *events: Event) -> int:
        return await arun(self._append(call_id, events))

    def _append(self, call_id: str, events: tuple[Event, ...]) -> Flow[int]:
        check_call_id(call_id)
        items = prepare_outside(events, self.config)
        last_id = items[-1][0].id
        last_seq: int | None = None
        yield from self._tenant_guard(call_id)
        meta = self._appended.pop(call_id, None)
        if meta is None:
            meta = yield from self.tiers.meta(call_id)
        retries = self.config.retries
        for _ in range(retries):
            if meta is None:
                raise CallNotFound(f"no call {call_id!r} in {self!r}")
            todo = [it for it in items if not (meta.ended and isinstance(it[0], CallEnded))]
            if not todo:
                return meta.seq  # the call already ended: a repeated hang-up changes nothing
            stored, head, seq = [], meta.head, meta.seq
            for ev, data in todo:
                seq += 1
                head = chain_next(head, data)
                stored.append(StoredEvent(seq, ev.id, data, head, meta.epoch, isinstance(ev, CallEnded)))
            now = time.time()
            ending = any(se.final for se in stored)
            update = MetaUpdate.keep(meta, now, expires_at=now + self.config.retention if ending else None)
            res = yield from self.tiers.append(call_id, stored, meta.seq, None, meta.head, update)
            if res.status == "ok":
                if len(self._appended) >= _APPENDED:
                    self._appended.clear()
                self._appended[call_id] = attrs.evolve(
                    meta, seq=seq, head=head, ended=meta.ended or ending, active_at=now, expires_at=update.expires_at
                )
                return seq if last_seq is None else last_seq
            if res.status == "duplicate":
                last_seq = res.duplicates.get(last_id, last_seq)  # the last event was stored already: its seq
                items = [it for it in items if it[0].id not in res.duplicates]
                if not items:  # all stored already, the last one included
                    assert last_seq is not None
                    return last_seq
                meta = yield from self.tiers.meta(call_id)
                continue
            meta = res.meta
        raise SeqConflict(f"call {call_id!r}: append gave up after {retries} conflicts", expected=-1, actual=-1)

    def delete(self, call_id: str) -> bool:
        """Remove the call from every tier; True if it existed."""
        return run(self._delete(call_id))

    async def adelete(self, call_id: str) -> bool:
        return await arun(self._delete(call_id))

    def _delete(self, call_id: str) -> Flow[bool]:
        check_call_id(call_id)
        self._appended.pop(call_id, None)
        if self.config.tenant is not None:
            try:
                yield from self._tenant_guard(call_id)
            except CallNotFound:
                return False
        return (yield from self.tiers.delete(call_id))

    # -- verifying -------------------------------------------------------------------

    def verify(self, packet: ResumeTarget, *, agent: str | None = None) -> PacketCheck:
        """Where a packet (object, msgpack, JSON) or token stands, without redeeming it:
        its signature under this store's keys, then the call's log (pending, redeemed,
        replaced, cancelled, cleared, ended or expired). ``agent``: the agent that would
        redeem it (a packet for another is ``invalid``, reason ``wrong_target``). A packet
        or token is told apart and decoded exactly as ``resume`` does, so "valid" means
        ``resume`` would redeem it now. Bad or forged input is a verdict (``invalid``), not
        an error; an invalid ``agent`` name (ConfigError) and the store's own failures
        (``BackendUnavailable``) raise."""
        return run(self._verify(packet, agent))

    async def averify(self, packet: ResumeTarget, *, agent: str | None = None) -> PacketCheck:
        return await arun(self._verify(packet, agent))

    def _verify(self, target: ResumeTarget, agent: str | None) -> Flow[PacketCheck]:
        if agent is not None:
            check_name(agent)
        decoded: HandoffPacket | TokenClaims | None = None
        try:
            # Told apart and decoded exactly as resume() does (classify), with the signature checked
            # but not the window: that is judged against the log (a packet redeemed in time is not
            # "expired"). What is shown of an invalid one comes from an unverified look.
            inf = math.inf
            if isinstance(target, HandoffPacket):
                decoded = target
                target.verify(self.config.keys, skew=inf)
            elif isinstance(target, (bytes, bytearray, memoryview)):
                decoded = _glance(bytes(target))
                decoded = HandoffPacket.from_bytes(bytes(target), self.config.keys, skew=inf)
            elif isinstance(target, str) and target.lstrip().startswith("{"):
                decoded = _glance(target)
                decoded = HandoffPacket.from_json(target, self.config.keys, skew=inf)
            elif isinstance(target, str) and target.strip().startswith("vs1."):
                decoded = _glance(target)
                decoded = decode_token(target, self.config.keys, skew=inf)
            else:
                shown = f"{str(target)[:40]!r}"
                raise PacketError("malformed", f"{shown} is neither a packet (JSON or msgpack) nor a vs1. token")
            if isinstance(decoded, HandoffPacket):
                if agent is not None and decoded.to_agent != agent:
                    raise PacketError("wrong_target", f"addressed to {decoded.to_agent!r}, not {agent!r}")
                if decoded.issued_at - time.time() > self.config.skew:
                    raise PacketError("expired", "not valid yet (issued in the future): check the clocks")
            log = yield from self._load_log(decoded.call_id)
            events = [decode_stored(se.data, se.seq, se.chain) for se in log]
            return judge(decoded, events, agent, repr(self), skew=self.config.skew)
        except (PacketError, CallNotFound) as exc:
            return invalid(exc, decoded)
        except (ConfigError, InvalidArgument, TypeError, ValueError, OverflowError) as exc:
            # a hand-built packet whose fields are not what they claim (a call id, a seq, ...)
            return invalid(PacketError("malformed", f"{type(exc).__name__}: {exc}"), decoded)

    # -- watching ----------------------------------------------------------------

    def watch(self, call_id: str, *, after: int = 0, timeout: float | None = None) -> Iterator[Event]:
        """Yield every event stored after seq ``after`` (0: the whole log first), from any writer
        in any process, as it is stored; ends after ``CallEnded`` or when the call is deleted.

        ``timeout``: seconds to wait for the next event before raising TimeoutError (None: no limit).
        """
        cursor = Cursor(self, call_id, after)
        while True:
            events = run(cursor.next(timeout))
            if events is None:
                return
            for ev in events:
                yield ev
                if type(ev) is CallEnded:
                    return

    async def awatch(self, call_id: str, *, after: int = 0) -> AsyncIterator[Event]:
        """Async twin of :meth:`watch` (bound it with ``asyncio.timeout`` if needed)."""
        cursor = Cursor(self, call_id, after)
        while True:
            events = await arun(cursor.next(None))
            if events is None:
                return
            for ev in events:
                yield ev
                if type(ev) is CallEnded:
                    return

    # -- listing -------------------------------------------------------------------

    def calls(
        self,
        *,
        status: str | None = None,
        owner: str | None = None,
        stale: bool | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[CallInfo]:
        """The store tenant's calls in call-id order, from the deciding tier's metadata.

        ``status`` ``"active"``/``"ended"``; ``owner`` an agent name; ``stale=True`` the active
        calls whose owner's lease ran out (what a recovery worker polls). Page with
        ``after=`` the last call id of the previous page.
        """
        return run(self._calls(status, owner, stale, limit, after))

    async def acalls(
        self,
        *,
        status: str | None = None,
        owner: str | None = None,
        stale: bool | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[CallInfo]:
        return await arun(self._calls(status, owner, stale, limit, after))

    def _calls(
        self, status: str | None, owner: str | None, stale: bool | None, limit: int, after: str | None
    ) -> Flow[list[CallInfo]]:
        check_filters(status, owner, stale, limit, after)
        out: list[CallInfo] = []
        page = max(limit, 256)
        while len(out) < limit:
            got: list[tuple[str, CallMeta]] = yield from self.tiers.list_calls(self.config.tenant, after, page)
            for call_id, meta in got:
                info = CallInfo.from_meta(call_id, meta)
                if wanted(info, status, owner, stale):
                    out.append(info)
                    if len(out) == limit:
                        break
            if len(got) < page:
                break
            after = got[-1][0]
        return out

    # -- lifetime --------------------------------------------------------------

    def close(self) -> None:
        """Wait for behind tiers, then release every tier. Idempotent."""
        if not self._closed:
            self._closed = True
            run(self.tiers.close(self.config.barrier_timeout))

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await arun(self.tiers.close(self.config.barrier_timeout))

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _beating(opening: Awaitable[Session]) -> Session:
    session = await opening
    session._start_heartbeat()
    return session


__all__ = ["Opening", "Store"]


def _glance(data: str | bytes) -> HandoffPacket | TokenClaims | None:
    """An unverified look at a packet or token (what an ``invalid`` verdict shows), or None."""
    try:
        return peek(data)
    except PacketError:
        return None
