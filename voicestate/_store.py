"""Store: opens, resumes, loads and appends to calls across its tiers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from types import TracebackType
from typing import Any

from ._backend import AppendResult
from ._codec import StoredEvent, chain_next, decode_event, encode_event, genesis
from ._errors import CallNotFound, ConfigError, InvalidEvent, OwnershipError, PacketError, SeqConflict
from ._events import NON_OWNER_TYPES, CallEnded, CallStarted, Event, OwnerChanged
from ._io import Flow, arun, run
from ._keys import KeyRing
from ._memory import MemoryBackend
from ._packet import DEFAULT_SKEW, HandoffPacket, TokenClaims, check_chain_at, decode_token, packet_for
from ._plugins import notify
from ._session import Session
from ._state import CallState, Folder
from ._tiers import Tiers

ResumeTarget = HandoffPacket | bytes | bytearray | memoryview | str


def check_call_id(call_id: object) -> str:
    if not isinstance(call_id, str) or not 1 <= len(call_id) <= 128 or not call_id.isprintable():
        raise ConfigError(f"call id {call_id!r}: use 1 to 128 printable characters")
    if call_id.startswith("{") or call_id.startswith("vs1."):
        raise ConfigError(f"call id {call_id!r} may not start with '{{' or 'vs1.' (those are packets and tokens)")
    return call_id


def check_name(name: object, what: str = "agent name") -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 128 or not name.isprintable():
        raise ConfigError(f"{what} {name!r}: use 1 to 128 printable characters")
    return name


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

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.__aexit__(et, e, tb)


class Store:
    """Calls across an ordered list of tiers. Build one with :func:`voicestate.open_store`."""

    def __init__(
        self,
        tiers: Tiers,
        *,
        keys: KeyRing,
        tenant: str | None = None,
        packet_ttl: float = 120.0,
        skew: float = DEFAULT_SKEW,
        retries: int = 64,
        barrier_timeout: float = 30.0,
        store_interim: bool = False,
        redact: Callable[[Event], Event] | None = None,
        max_event_bytes: int = 1024 * 1024,
    ) -> None:
        self.tiers = tiers
        self.max_event_bytes = max_event_bytes
        self.store_interim = store_interim
        self.keys = keys
        self.tenant = tenant
        self.packet_ttl = packet_ttl
        self.skew = skew
        self.retries = retries
        self.barrier_timeout = barrier_timeout
        self._redact = redact
        # The sync fast path: set when the only tier is in-process memory.
        only = tiers.deciding.backend
        self._inline = only if (not tiers.hot and not tiers.behind and isinstance(only, MemoryBackend)) else None
        self._closed = False

    def _too_large(self, ev: Event, size: int) -> InvalidEvent:
        return InvalidEvent(
            f"{type(ev).__name__} {ev.id!r} encodes to {size:,} bytes, over this store's limit of "
            f"{self.max_event_bytes:,} (open_store(max_event_bytes=...)); store large payloads elsewhere "
            "and record a reference"
        )

    def __repr__(self) -> str:
        return f"<Store {' '.join(t.url + ('' if t.write == 'through' else '?write=behind') for t in self.tiers.all)}>"

    # -- open ------------------------------------------------------------------

    def open(self, call_id: str, *, agent: str, meta: Mapping[str, Any] | None = None) -> Session:
        """Create the call with ``agent`` as its owner (epoch 1). Fails if it exists."""
        return run(self._open(call_id, agent, meta))

    def aopen(self, call_id: str, *, agent: str, meta: Mapping[str, Any] | None = None) -> Opening:
        return Opening(lambda: arun(self._open(call_id, agent, meta)))

    def _open(self, call_id: str, agent: str, meta: Mapping[str, Any] | None) -> Flow[Session]:
        check_call_id(call_id)
        check_name(agent)
        session = Session(self, call_id, agent)
        session.epoch = 1
        started = CallStarted(meta=dict(meta or {}), tenant=self.tenant, agent=agent)
        items = session._prepare([started], internal=True)
        stored = session._stage(items, 0, genesis(call_id))
        res: AppendResult = yield from self.tiers.append(call_id, stored, 0, 1, None)
        if res.status != "ok":
            raise OwnershipError(
                f"call {call_id!r} already exists; join it with resume() (or takeover=True if its owner died)"
            )
        session._confirm([items[0][0]], stored)  # the event as recorded: redacted
        return session

    # -- resume ----------------------------------------------------------------

    def resume(
        self, target: ResumeTarget, *, agent: str, takeover: bool = False, from_epoch: int | None = None
    ) -> Session:
        """Become the owner: redeem a packet (object, msgpack, JSON or token) or the
        pending handoff of ``call_id`` addressed to ``agent``.

        ``takeover=True`` takes the call from a dead owner, conditional on the
        epoch read (or on ``from_epoch``, the epoch the caller saw die: of
        several recovery workers sent for the same dead owner, one wins).
        """
        return run(self._resume(target, agent, takeover, from_epoch))

    def aresume(
        self, target: ResumeTarget, *, agent: str, takeover: bool = False, from_epoch: int | None = None
    ) -> Opening:
        return Opening(lambda: arun(self._resume(target, agent, takeover, from_epoch)))

    def _classify(self, target: ResumeTarget) -> tuple[str, HandoffPacket | None, TokenClaims | None]:
        if isinstance(target, HandoffPacket):
            target.verify(self.keys, skew=self.skew)
            return target.call_id, target, None
        if isinstance(target, (bytes, bytearray, memoryview)):
            packet = HandoffPacket.from_bytes(bytes(target), self.keys, skew=self.skew)
            return packet.call_id, packet, None
        if isinstance(target, str):
            if target.startswith("{"):
                packet = HandoffPacket.from_json(target, self.keys, skew=self.skew)
                return packet.call_id, packet, None
            if target.startswith("vs1."):
                claims = decode_token(target, self.keys, skew=self.skew)
                return claims.call_id, None, claims
            return check_call_id(target), None, None
        raise TypeError(
            f"resume() takes a HandoffPacket, bytes, a JSON or token string, or a call id; not {type(target).__name__}"
        )

    def _resume(self, target: ResumeTarget, agent: str, takeover: bool, from_epoch: int | None) -> Flow[Session]:
        check_name(agent)
        if from_epoch is not None and not takeover:
            raise ConfigError("from_epoch goes with takeover=True")
        call_id, packet, claims = self._classify(target)
        if packet is not None and packet.to_agent != agent:
            raise PacketError("wrong_target", f"the packet is addressed to {packet.to_agent!r}, not {agent!r}")
        meta = yield from self.tiers.meta(call_id)
        if meta is None:
            raise CallNotFound(f"no call {call_id!r} in {self!r}")
        log = yield from self.tiers.load(call_id, meta)
        session = Session(self, call_id, agent)
        session._adopt(log)
        self._check_tenant(call_id, session._folder.tenant)
        if packet is not None:
            check_chain_at(packet, log)
        wanted = packet.packet_id if packet is not None else (claims.packet_id if claims is not None else None)
        for _ in range(self.retries):
            st = session._folder.snapshot()
            if st.ended:
                raise OwnershipError(
                    f"call {call_id!r} has ended ({st.ended_reason or 'no reason given'}); it cannot be resumed"
                )
            if takeover:
                if from_epoch is not None and st.epoch != from_epoch:
                    raise OwnershipError(
                        f"call {call_id!r} is at epoch {st.epoch} (owner {st.owner!r}), not {from_epoch}: "
                        "someone else took it over already"
                    )
                packet_id = None
            else:
                packet_id = self._redeemable(st, agent, wanted, claims, session._folder.fates)
            change = OwnerChanged(owner=agent, epoch=st.epoch + 1, packet_id=packet_id, agent=agent)
            session.epoch = st.epoch  # the condition: the epoch we read
            items = session._prepare([change], internal=True)
            stored = session._stage(items, st.seq, st.chain)
            res = yield from self.tiers.append(call_id, stored, st.seq, st.epoch, st.chain)
            if res.status == "ok":
                session.epoch = change.epoch
                session._confirm([change], stored)
                self._after_resume(session, packet, packet_id)
                return session
            if res.meta is None:
                raise CallNotFound(f"call {call_id!r} was deleted")
            yield from session._catch_up(res.meta)
            if res.meta.epoch != st.epoch:
                now = session._folder.snapshot()
                raise OwnershipError(
                    f"call {call_id!r} changed hands while {agent!r} was resuming it "
                    f"(owner now {now.owner!r}, epoch {now.epoch}); nothing was changed"
                )
        raise SeqConflict(f"call {call_id!r}: resume gave up after {self.retries} conflicts", expected=-1, actual=-1)

    def _after_resume(self, session: Session, packet: HandoffPacket | None, packet_id: str | None) -> None:
        state = session.state
        if packet is None and packet_id is not None:  # redeemed by token or call id: rebuild it from the log
            handed = next(h for h in reversed(state.handoffs) if h.packet_id == packet_id)
            assert handed.seq is not None
            packet = packet_for(state, handed, session._log[handed.seq - 1].epoch, self.keys)
        notify("after_resume", state=state, packet=packet)

    def _redeemable(
        self, st: CallState, agent: str, wanted: str | None, claims: TokenClaims | None, fates: Mapping[str, str]
    ) -> str:
        """The packet id ``agent`` may redeem now, or raise why not."""
        pending = st.pending_handoff
        if wanted is not None:
            offered = next((h for h in reversed(st.handoffs) if h.packet_id == wanted), None)
            if offered is None:
                raise OwnershipError(f"call {st.call_id!r} holds no handoff with packet id {wanted}")
            if claims is not None and int(claims.expires_at) != int(-(-offered.expires_at // 1)):
                raise PacketError("bad_signature", "the token does not match the handoff stored for it")
            if offered.to_agent != agent:
                raise PacketError("wrong_target", f"the packet is addressed to {offered.to_agent!r}, not {agent!r}")
            if pending is None or pending.packet_id != wanted:
                fate = fates.get(wanted, "not pending")
                raise OwnershipError(f"packet {wanted} cannot be redeemed: it was {fate}")
        else:
            if pending is None:
                raise OwnershipError(
                    f"call {st.call_id!r} has no pending handoff for {agent!r} (owner {st.owner!r}); "
                    "ask the owner to hand off, or pass takeover=True if the owner died"
                )
            if pending.to_agent != agent:
                raise OwnershipError(
                    f"the pending handoff of call {st.call_id!r} is for {pending.to_agent!r}, not {agent!r}"
                )
        assert pending is not None
        if time.time() > pending.expires_at + self.skew:
            raise OwnershipError(
                f"the handoff to {pending.to_agent!r} expired {time.time() - pending.expires_at:.1f} s ago; "
                f"{st.owner!r} is still in charge and must hand off again"
            )
        return pending.packet_id

    def _check_tenant(self, call_id: str, tenant: str | None) -> None:
        """With a tenant set, a call of another tenant does not exist for this store."""
        if self.tenant is not None and tenant != self.tenant:
            raise CallNotFound(f"no call {call_id!r} for tenant {self.tenant!r}")

    # -- load / append / delete ----------------------------------------------------

    def load(self, call_id: str) -> CallState:
        """The call's current state; raises CallNotFound."""
        return run(self._load(call_id))

    async def aload(self, call_id: str) -> CallState:
        return await arun(self._load(call_id))

    def _load(self, call_id: str) -> Flow[CallState]:
        log = yield from self._load_log(call_id)
        folder = Folder(call_id, genesis(call_id))
        for se in log:
            ev = decode_event(se.data, se.seq, se.chain)
            folder.apply(ev, se.seq, se.chain, ev.agent)
        return folder.snapshot()  # _load_log checked the tenant

    def _load_log(self, call_id: str) -> Flow[list[StoredEvent]]:
        check_call_id(call_id)
        meta = yield from self.tiers.meta(call_id)
        if meta is None:
            raise CallNotFound(f"no call {call_id!r} in {self!r}")
        log = yield from self.tiers.load(call_id, meta)
        self._check_tenant_first(call_id, log[0])
        return log

    def _tenant_guard(self, call_id: str) -> Flow[None]:
        """The tenant check for writes that do not load the call: one read of its first event."""
        if self.tenant is None:
            return
        first = yield from self.tiers.load_first(call_id)
        if first is None:
            raise CallNotFound(f"no call {call_id!r} in {self!r}")
        self._check_tenant_first(call_id, first)

    def _check_tenant_first(self, call_id: str, first: StoredEvent) -> None:
        if self.tenant is not None:
            started = decode_event(first.data, first.seq, first.chain)
            self._check_tenant(call_id, getattr(started, "tenant", None))

    def events(self, call_id: str) -> list[Event]:
        """Every event of the call, decoded, with ``seq`` and ``chain`` set."""
        return [decode_event(se.data, se.seq, se.chain) for se in run(self._load_log(call_id))]

    async def aevents(self, call_id: str) -> list[Event]:
        return [decode_event(se.data, se.seq, se.chain) for se in await arun(self._load_log(call_id))]

    def append(self, call_id: str, *events: Event) -> int:
        """Append from outside the owner: ``Note``, ``ToolReturned``, ``ToolCancelled``, ``CallEnded``.

        Conditional on the seq read, retried on conflict, no epoch check. Returns
        the stored seq of the last event.
        """
        return run(self._append(call_id, events))

    async def aappend(self, call_id: str, *events: Event) -> int:
        return await arun(self._append(call_id, events))

    def _append(self, call_id: str, events: tuple[Event, ...]) -> Flow[int]:
        check_call_id(call_id)
        if not events:
            raise InvalidEvent("append() needs at least one event")
        items: list[tuple[Event, bytes]] = []
        for ev in events:
            if not isinstance(ev, NON_OWNER_TYPES):
                raise InvalidEvent(
                    f"store.append() takes Note, ToolReturned, ToolCancelled and CallEnded; "
                    f"{type(ev).__name__} must be recorded by the call's owner"
                )
            if self._redact is not None:
                ev = self._redact(ev)
            data = encode_event(ev)
            if len(data) > self.max_event_bytes:
                raise self._too_large(ev, len(data))
            items.append((ev, data))
        if len({ev.id for ev, _ in items}) != len(items):
            raise InvalidEvent("the same event id appears twice in one append() call")
        last_id = items[-1][0].id
        yield from self._tenant_guard(call_id)
        meta = yield from self.tiers.meta(call_id)
        for _ in range(self.retries):
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
            res = yield from self.tiers.append(call_id, stored, meta.seq, None, meta.head)
            if res.status == "ok":
                return seq
            if res.status == "duplicate":
                items = [it for it in items if it[0].id not in res.duplicates]
                if not items:
                    return res.duplicates.get(last_id, max(res.duplicates.values()))
                meta = yield from self.tiers.meta(call_id)
                continue
            meta = res.meta
        raise SeqConflict(f"call {call_id!r}: append gave up after {self.retries} conflicts", expected=-1, actual=-1)

    def delete(self, call_id: str) -> bool:
        """Remove the call from every tier; True if it existed."""
        return run(self._delete(call_id))

    async def adelete(self, call_id: str) -> bool:
        return await arun(self._delete(call_id))

    def _delete(self, call_id: str) -> Flow[bool]:
        check_call_id(call_id)
        if self.tenant is not None:
            try:
                yield from self._tenant_guard(call_id)
            except CallNotFound:
                return False
        return (yield from self.tiers.delete(call_id))

    # -- lifetime --------------------------------------------------------------

    def close(self) -> None:
        """Wait for behind tiers, then release every tier. Idempotent."""
        if not self._closed:
            self._closed = True
            run(self.tiers.close(self.barrier_timeout))

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await arun(self.tiers.close(self.barrier_timeout))

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["Opening", "Store"]
