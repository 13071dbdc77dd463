"""``VoiceStateSaver``: a LangGraph checkpointer on a voicestate store.

Every thread is the log of a call in the store, read incrementally (one
metadata read and the tail) and folded in memory (:mod:`._threads`).

- A **voice call** bound to the session the app holds (``session=`` or
  :meth:`VoiceStateSaver.bind`): the graph's messages are the call's
  conversation. A checkpoint's messages are the call's context rendered for
  the session's agent now (what the caller and every agent said, only what the
  caller heard of an interrupted turn); what the graph adds is recorded as the
  call's events (``UserSpoke``, ``AgentSpoke``, ``ToolCalled``,
  ``ToolReturned``) through the session, fenced like every owner write, and
  never stored again in a checkpoint. The other channels are the agent's
  private state in the call.
- Any other thread is a **plain thread**: a call the saver opens for it (meta
  ``{"langgraph": "thread"}``, ended at once, so it has no owner, lease or
  place among live calls; it is kept for the store's ``retention``) and
  writes with ``store.append``, so any worker may write any thread.
"""

from __future__ import annotations

import base64
import builtins
import json
import math
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

import voicestate as vs
from voicestate.plugins import Flow, arun_flow, encode_event, run_flow, twin

from ._compact import CALL_VALUE, INPUT_VALUE, Value, pack_event, short
from ._events import Checkpointed, ThreadCleared, WritesPut
from ._format import parse
from ._threads import INPUT_IDS, PLAIN, Stored, Thread

# The checkpoint a call thread starts from when this agent's graph has none: the call's
# conversation so far, at version 0 of the messages channel.
START_ID = "00000000-0000-6000-8000-000000000000"
START = "__start__"  # LangGraph's input channel
Events = list[vs.Event]
Ids = list[str]
_PAGE = 500  # calls per page when every thread is listed
_APPEND_BATCH = 64  # events per store.append when a thread is copied or rebuilt


class VoiceStateSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer whose threads live in ``store``.

    ``session``: the owner's session of a voice call; the thread whose
    ``thread_id`` is its call id is that call (bind more with :meth:`bind`).
    ``policy``: the context policy that renders a call's messages.
    ``messages_key``: the state key holding the messages (``"messages"`` for
    ``MessagesState`` and ``create_agent``). ``agent``: the name plain threads
    are opened under. ``serde``: LangGraph's serializer for channel values.
    ``cache``: how many threads are kept folded in memory.
    """

    def __init__(
        self,
        store: vs.Store,
        *,
        session: vs.Session | None = None,
        policy: vs.ContextPolicy | None = None,
        messages_key: str = "messages",
        agent: str = "langgraph",
        serde: SerializerProtocol | None = None,
        cache: int = 256,
    ) -> None:
        if not isinstance(store, vs.Store):
            raise vs.ConfigError(f"store must be a voicestate Store (vs.open_store(...)), not {type(store).__name__}")
        if not isinstance(agent, str) or not agent:
            raise vs.ConfigError(f"agent must name who opens plain threads, not {agent!r}")
        if isinstance(cache, bool) or not isinstance(cache, int) or cache < 1:
            raise vs.ConfigError(f"cache is how many threads to keep in memory (an int >= 1), not {cache!r}")
        super().__init__(serde=serde)
        self.store = store
        self.policy = policy
        self.messages_key = messages_key
        self.agent = agent
        self._cache_size = cache
        self._threads: OrderedDict[str, Thread] = OrderedDict()
        self._sessions: dict[str, vs.Session] = {}
        self._rendered: dict[str, tuple[int, builtins.list[BaseMessage]]] = {}
        self._lock = threading.RLock()
        if session is not None:
            self.bind(session)

    # -- binding sessions ----------------------------------------------------------------

    def bind(self, session: vs.Session) -> None:
        """Make the thread ``session.call_id`` that voice call, written through ``session``."""
        if not isinstance(session, vs.Session):
            raise vs.ConfigError(f"bind() takes a voicestate Session, not {type(session).__name__}")
        with self._lock:
            self._sessions[session.call_id] = session
            self._rendered.pop(session.call_id, None)

    def unbind(self, call_id: str) -> vs.Session | None:
        """Forget the session of ``call_id`` (the thread is then read-only); the session, if one was bound."""
        with self._lock:
            self._rendered.pop(call_id, None)
            return self._sessions.pop(call_id, None)

    @property
    def session(self) -> vs.Session | None:
        """The session bound first (the one given as ``session=``), if any."""
        with self._lock:
            return next(iter(self._sessions.values()), None)

    def get_next_version(self, current: int | None, channel: None = None) -> int:
        if current is None:
            return 1
        if isinstance(current, bool) or not isinstance(current, int):
            raise vs.InvalidArgument(
                f"channel version {current!r:.40} is not an int: this thread was written by another checkpointer"
            )
        return current + 1

    # -- the thread cache ----------------------------------------------------------------

    def _thread(self, thread_id: str) -> Thread:
        with self._lock:
            th = self._threads.get(thread_id)
            if th is None:
                th = self._threads[thread_id] = Thread(thread_id)
                # the least recently used goes, but not a bound call's: it holds what this
                # process recorded and has not seen in a checkpoint yet
                idle = [t for t in self._threads if t not in self._sessions]
                for old in idle[: max(0, len(self._threads) - self._cache_size)]:
                    del self._threads[old]
            else:
                self._threads.move_to_end(thread_id)
            return th

    def _fold(self, th: Thread, tail: Events | None) -> bool:
        """Fold a tail read from ``th.seq - 1``; False when the log was replaced (read it all)."""
        with self._lock:
            if tail is None:  # no such call
                th.reset()
                return True
            if th.take(tail):
                return True
            th.reset()
            return False

    def _refresh(self, thread_id: str) -> Flow[Thread]:
        """The thread with its log's new tail folded in (all of the log, when it was replaced)."""
        th = self._thread(thread_id)
        for _ in range(2):
            try:
                tail = yield twin(self.store.events, self.store.aevents, thread_id, after=max(th.seq - 1, 0))
            except vs.CallNotFound:
                tail = None
            if self._fold(th, tail):
                break
        return th

    def _settle(self, th: Thread, seq: int, events: Sequence[vs.Event], owner: str, before: int) -> None:
        """After our write: fold it in place when nothing else was stored since ``before``."""
        with self._lock:
            if th.seq != before or seq != before + len(events):
                return  # others wrote in between: the next read folds the tail in order
            for i, ev in enumerate(events, start=before + 1):
                th.apply(attrs.evolve(ev, agent=owner or ev.agent, seq=i))
            th.seq, th.chain, th.last_id = seq, None, events[-1].id

    # -- what is a thread ----------------------------------------------------------------

    def _bound(self, thread_id: str) -> vs.Session | None:
        with self._lock:
            return self._sessions.get(thread_id)

    def _owner(self, th: Thread, session: vs.Session | None) -> str | None:
        """Whose checkpoints the thread shows: the session's agent, ``""`` (plain), None (any writer)."""
        if session is not None:
            return session.agent
        return None if th.kind == "call" else ""

    # -- reading -------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return run_flow(self._get_tuple(config))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await arun_flow(self._get_tuple(config))

    def _get_tuple(self, config: RunnableConfig) -> Flow[CheckpointTuple | None]:
        thread_id, ns, cid = _address(config)
        session = self._bound(thread_id)
        th = yield from self._refresh(thread_id)
        found = self._pick(th, session, ns, cid)
        if found is None:
            return None
        render = self._renderer(th, session, ns, found)
        if render is not None:
            render.state = yield from self._state(thread_id, session)
        return self._tuple(th, found, render)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from run_flow(self._list(config, filter, before, limit))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for tup in await arun_flow(self._list(config, filter, before, limit)):
            yield tup

    def _list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> Flow[builtins.list[CheckpointTuple]]:
        if config:
            threads = [config["configurable"]["thread_id"]]
        else:  # every thread of the store: its calls, page by page
            threads = []
            while True:
                page = yield twin(
                    self.store.calls, self.store.acalls, limit=_PAGE, after=threads[-1] if threads else None
                )
                threads += [info.call_id for info in page]
                if len(page) < _PAGE:
                    break
        out: builtins.list[CheckpointTuple] = []
        for thread_id in threads:
            session = self._bound(thread_id)
            th = yield from self._refresh(thread_id)
            state: vs.CallState | None = None
            for found in self._listed(th, session, config, filter, before):
                if limit is not None and len(out) >= limit:
                    return out
                render = self._renderer(th, session, found.ns, found)
                if render is not None:
                    if state is None:
                        state = yield from self._state(thread_id, session)
                    render.state = state
                out.append(self._tuple(th, found, render))
        return out

    def _pick(self, th: Thread, session: vs.Session | None, ns: str, cid: str | None) -> Stored | None:
        with self._lock:
            if th.kind is None:
                return None
            owner = self._owner(th, session)
            if cid is not None:
                if cid == START_ID and self._starts_from_call(th, ns):
                    return self._start(th, session)
                if owner is None:
                    return next((s for s in th.each(None, ns) if s.id == cid), None)
                return th.find(owner, ns, cid)
            # the newest checkpoint (each() sorts them all: for one owner, latest() does not)
            latest = th.latest(owner, ns) if owner is not None else next(th.each(None, ns), None)
            if latest is None and self._starts_from_call(th, ns):
                return self._start(th, session)
            return latest

    def _listed(
        self,
        th: Thread,
        session: vs.Session | None,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
    ) -> builtins.list[Stored]:
        conf = config["configurable"] if config else {}
        ns = conf.get("checkpoint_ns")
        cid = get_checkpoint_id(config) if config else None
        below = get_checkpoint_id(before) if before else None
        with self._lock:
            if th.kind is None:
                return []
            owner = self._owner(th, session)
            out = []
            for s in th.each(owner, ns):
                if cid is not None and s.id != cid:
                    continue
                if below is not None and s.id >= below:
                    continue
                if filter and not _matches(self._metadata(s), filter):
                    continue
                out.append(s)
            return out

    def _starts_from_call(self, th: Thread, ns: str) -> bool:
        return th.kind == "call" and ns == ""

    def _start(self, th: Thread, session: vs.Session | None) -> Stored:
        """The checkpoint a voice call's thread starts from: the call's conversation, nothing else."""
        cp = {
            "v": 4,
            "id": START_ID,
            "ts": "1970-01-01T00:00:00+00:00",
            "channel_versions": {self.messages_key: 0},
            "versions_seen": {},
            "updated_channels": None,
        }
        meta = {"source": "update", "step": -1, "parents": {}}
        owner = session.agent if session is not None else ""
        return Stored(START_ID, owner, "", cp, meta, None, {self.messages_key: (0, None)}, 0)

    def _state(self, call_id: str, session: vs.Session | None) -> Flow[vs.CallState]:
        """The call as the session sees it (refreshed when others wrote since), or as stored."""
        if session is None:
            loaded: vs.CallState = yield twin(self.store.load, self.store.aload, call_id)
            return loaded
        if self._thread(call_id).seq > session.seq:
            fresh: vs.CallState = yield twin(session.refresh, session.arefresh)
            return fresh
        return session.state

    def _renderer(self, th: Thread, session: vs.Session | None, ns: str, found: Stored) -> _Render | None:
        if th.kind != "call" or ns != "":
            return None
        with self._lock:
            refers = _refers_to_call(th, found)
        return _Render(session) if refers else None

    def _messages(self, render: _Render) -> builtins.list[BaseMessage]:
        state = render.state
        assert state is not None
        agent = render.session.agent if render.session is not None else None
        with self._lock:
            cached = self._rendered.get(state.call_id)
            if cached is not None and cached[0] == state.seq and render.session is not None:
                return list(cached[1])
        messages: builtins.list[BaseMessage] = state.context("langchain", self.policy, agent=agent)
        for i, m in enumerate(messages):
            m.id = f"vs:{i}"  # from the call: never recorded again (see _new_message_events)
        if render.session is not None:
            with self._lock:
                self._rendered[state.call_id] = (state.seq, messages)
        return list(messages)

    def _tuple(self, th: Thread, found: Stored, render: _Render | None) -> CheckpointTuple:
        values: dict[str, Any] = {}
        with self._lock:
            blobs = {ch: th.value(found, ch, ver) for ch, ver in found.cp["channel_versions"].items()}
            pending = th.pending(found.owner, found.ns, found.id)
        for channel, (ok, blob) in blobs.items():
            if not ok:
                continue
            if blob is None:
                if render is not None:
                    values[channel] = self._messages(render)
            elif blob[0] == INPUT_VALUE:
                key = blob[1].decode("ascii")
                with self._lock:
                    texts = th.inputs.get(key, [])
                values[channel] = {
                    self.messages_key: [HumanMessage(t, id=f"vs:in:{key}:{n}") for n, t in enumerate(texts)]
                }
            elif blob[0] != "empty":
                values[channel] = self.serde.loads_typed(blob)
        conf = {"thread_id": th.id, "checkpoint_ns": found.ns}
        return CheckpointTuple(
            config={"configurable": {**conf, "checkpoint_id": found.id}},
            checkpoint={**found.cp, "channel_values": values},  # type: ignore[typeddict-item]
            metadata=self._metadata(found),
            parent_config={"configurable": {**conf, "checkpoint_id": found.parent}} if found.parent else None,
            pending_writes=[(w.task, w.channel, self.serde.loads_typed(w.value)) for w in pending],
        )

    def _metadata(self, found: Stored) -> CheckpointMetadata:
        meta = found.meta
        if isinstance(meta, list) and len(meta) == 3 and meta[0] == "serde":
            loaded: CheckpointMetadata = self.serde.loads_typed((meta[1], base64.b64decode(meta[2])))
            return loaded
        return meta  # type: ignore[no-any-return]

    # -- writing -------------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return run_flow(self._put(config, checkpoint, metadata, new_versions))

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await arun_flow(self._put(config, checkpoint, metadata, new_versions))

    def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Flow[RunnableConfig]:
        thread_id, ns, _ = _address(config)
        session = self._bound(thread_id)
        th = self._thread(thread_id) if session is not None else (yield from self._known(thread_id))
        events, ids, inputs = self._checkpoint_events(th, session, config, checkpoint, metadata, new_versions)
        rebuild = None
        if session is None:

            def rebuild() -> Events:  # the thread went meanwhile: the checkpoint is written whole
                with self._lock:
                    th.reset()
                return self._checkpoint_events(th, session, config, checkpoint, metadata, new_versions)[0]

        yield from self._write(th, session, events, ids, inputs, rebuild)
        if session is not None:
            with self._lock:  # the steps before this checkpoint ended (ids grow with time; a later
                # step's writes may already be here: LangGraph saves in the background)
                th.withheld = {k: v for k, v in th.withheld.items() if k[2] >= checkpoint["id"]}
                th.special = {k for k in th.special if k[2] >= checkpoint["id"]}
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        run_flow(self._put_writes(config, writes, task_id, task_path))

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await arun_flow(self._put_writes(config, writes, task_id, task_path))

    def _put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> Flow[None]:
        thread_id, ns, cid = _address(config)
        if cid is None:
            raise vs.InvalidArgument("put_writes needs the checkpoint_id of the checkpoint the writes belong to")
        session = self._bound(thread_id)
        th = self._thread(thread_id) if session is not None else (yield from self._known(thread_id))
        owner = session.agent if session is not None else ""
        batch = list(writes)
        batches = [(task_id, task_path, batch)]
        if session is not None and ns == "":
            is_special = any(channel in WRITES_IDX_MAP for channel, _ in batch)  # an error, an interrupt
            with self._lock:
                key = (owner, ns, cid)
                special = key in th.special or th.has_special(*key)
                if is_special:
                    th.special.add(key)  # decided here, under the lock: a sibling's write now knows
                if any(channel == self.messages_key for channel, _ in batch) and not special:
                    # A task that wrote the conversation: its messages are recorded with the next
                    # checkpoint, in the order the graph applied them, and not stored twice. Until the
                    # step ends they are held here; if a task of the step is interrupted or fails (the
                    # step then ends without a checkpoint and resumes from these writes) they are
                    # stored. After a crash in between, the task runs again.
                    th.withheld.setdefault(key, []).append(batches.pop())
                elif is_special:
                    batches += th.withheld.pop(key, [])
        events = self._write_events(th, owner, ns, cid, batches)
        if events:
            yield from self._write(th, session, events, [])

    def _known(self, thread_id: str) -> Flow[Thread]:
        """The thread as stored now (any worker may write a plain thread, or delete it): a write
        encodes against what the log holds. A voice call needs its session."""
        th = yield from self._refresh(thread_id)
        self._check_writable(th)
        return th

    def _check_writable(self, th: Thread) -> None:
        if th.kind == "call":
            raise vs.OwnershipError(
                f"thread {th.id!r} is a voice call: write it through its owner's session "
                "(VoiceStateSaver(store, session=...) or saver.bind(session))"
            )

    def _checkpoint_events(
        self,
        th: Thread,
        session: vs.Session | None,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[Events, Ids, Ids]:
        _, ns, parent = _address(config)
        values = checkpoint["channel_values"]
        call_root = session is not None and ns == ""
        events: Events = []
        ids: Ids = []
        inputs: Ids = []
        stored: dict[str, Value] = {}
        for channel, version in new_versions.items():
            texts = _human_inputs(values.get(channel), self.messages_key) if call_root and channel == START else None
            if call_root and channel == self.messages_key:
                with self._lock:
                    new, ids = self._new_message_events(th, values.get(channel) or [])
                events.extend(new)
                stored[channel] = (version, CALL_VALUE, "")
            elif texts is not None:
                # The graph's input: recorded now, in the order the caller said it, not stored twice.
                key = short(checkpoint["id"])
                events.extend(vs.UserSpoke(t, id=f"{INPUT_IDS}{key}:{n}") for n, t in enumerate(texts))
                inputs.extend(texts)
                stored[channel] = (version, INPUT_VALUE, key)
            elif channel in values:
                kind, data = self._dump(values[channel])
                stored[channel] = (version, kind, data)
            else:
                stored[channel] = (version, "empty", "")
        meta = get_checkpoint_metadata(config, metadata)
        stored_meta: Any = meta if _is_json(meta) else ["serde", *self._dump(meta)]
        parent = None if parent == START_ID else parent  # the call's start is not a stored checkpoint
        owner = session.agent if session is not None else ""
        with self._lock:
            recent = th.recent.get((owner, ns), [])
            # a voice call's owner is the one writer of its checkpoints: "my previous one" needs no seq,
            # when this saver has seen all the session has
            current = session is not None and th.seq == session.seq and bool(recent)
            candidates = [th.find(owner, ns, parent) if parent else None, *recent]
            bases = list({id(b): b for b in candidates}.values())
            options = [
                pack_event(
                    ns=ns,
                    checkpoint=checkpoint,
                    meta=stored_meta,
                    parent=parent,
                    values=stored,
                    base=b,
                    implicit=current and b is recent[-1],
                    id_in_event=call_root,
                )
                for b in bases
            ]
        best = min(options, key=_size) if len(options) > 1 else options[0]
        events.append(best)
        return events, ids, inputs

    def _write_events(
        self, th: Thread, owner: str, ns: str, cid: str, batches: builtins.list[tuple[str, str, builtins.list[Any]]]
    ) -> Events:
        """``WritesPut`` events for each task's ``(task_id, task_path, writes)`` not stored yet."""
        events: Events = []
        with self._lock:
            for task_id, task_path, writes in batches:
                stored: builtins.list[builtins.list[Any]] = []
                for i, (channel, value) in enumerate(writes):
                    idx = WRITES_IDX_MAP.get(channel, i)
                    if idx >= 0 and th.has_write(owner, ns, cid, task_id, idx):
                        continue  # stored already: a task's regular writes are stored once
                    stored.append([idx, channel, *self._dump(value)])
                if stored:
                    events.append(WritesPut(ns=ns, cid=cid, task=task_id, path=task_path, writes=stored))
        return events

    def _new_message_events(self, th: Thread, messages: Sequence[Any]) -> tuple[Events, Ids]:
        """The events of the messages the call does not hold yet, with ids derived from theirs."""
        events: Events = []
        ids: Ids = []
        for m in messages:
            if not isinstance(m, BaseMessage):
                continue  # the reducer's input forms (dicts, tuples) reach the state as messages
            if not m.id:  # a channel with no add_messages reducer: the message keeps the id it gets here
                m.id = str(uuid.uuid4())
            mid = m.id
            if mid.startswith("vs:") or mid in th.recorded:
                continue
            if isinstance(m, HumanMessage) and m.content in th.pending_inputs:
                th.pending_inputs.remove(m.content)  # the graph's input, recorded with the input checkpoint
                ids.append(mid)
                continue
            key = short(mid)  # the same message recorded again (a retried put) is stored once
            events.extend(attrs.evolve(ev, id=f"lc:{key}:{k}") for k, ev in enumerate(parse([m])))
            ids.append(mid)
        return events, ids

    def _dump(self, value: Any) -> Ids:
        kind, data = self.serde.dumps_typed(value)
        return [kind, base64.b64encode(data).decode("ascii")]

    def _write(
        self,
        th: Thread,
        session: vs.Session | None,
        events: Events,
        ids: Ids,
        inputs: Sequence[str] = (),
        rebuild: Callable[[], Events] | None = None,
    ) -> Flow[None]:
        before = th.seq
        if session is not None:
            # LangGraph saves from several threads at once: the session takes them one at a time
            seq: int = yield twin(session.record, session.arecord, *events)
        else:
            seq = yield from self._append_plain(th.id, events, rebuild)
        self._done(th, session, seq, events, ids, inputs, before)

    def _done(
        self,
        th: Thread,
        session: vs.Session | None,
        seq: int,
        events: Events,
        ids: Ids,
        inputs: Sequence[str],
        before: int,
    ) -> None:
        with self._lock:
            th.recorded.update(ids)
            th.pending_inputs.extend(inputs)
            if th.kind is None:
                return  # a thread created just now: the next read folds it from the start
        self._settle(th, seq, events, session.agent if session is not None else "", before)

    def _append_plain(
        self, thread_id: str, events: Sequence[vs.Event], rebuild: Callable[[], Events] | None = None
    ) -> Flow[int]:
        try:
            seq: int = yield twin(self.store.append, self.store.aappend, thread_id, *events)
        except vs.CallNotFound:
            yield twin(self._create, self._acreate, thread_id)
            if rebuild is not None:  # stored against checkpoints of a log that is gone
                events = rebuild()
            seq = yield twin(self.store.append, self.store.aappend, thread_id, *events)
        return seq

    def _create(self, thread_id: str) -> None:
        try:
            with self.store.open(thread_id, agent=self.agent, meta={"langgraph": PLAIN}) as s:
                s.end("langgraph thread")
        except vs.OwnershipError:
            pass  # another worker created it first

    async def _acreate(self, thread_id: str) -> None:
        try:
            s = await self.store.aopen(thread_id, agent=self.agent, meta={"langgraph": PLAIN})
        except vs.OwnershipError:
            return
        async with s:
            await s.aend("langgraph thread")

    # -- deleting, copying, pruning ------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        run_flow(self._delete_thread(thread_id))

    async def adelete_thread(self, thread_id: str) -> None:
        await arun_flow(self._delete_thread(thread_id))

    def _delete_thread(self, thread_id: str) -> Flow[None]:
        session = self._bound(thread_id)
        if session is not None:  # the call stays: this agent's checkpoints are forgotten
            yield from self._write(self._thread(thread_id), session, [ThreadCleared()], [])
            return
        th = yield from self._known(thread_id)
        yield twin(self.store.delete, self.store.adelete, thread_id)
        with self._lock:
            th.reset()

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        run_flow(self._copy_thread(source_thread_id, target_thread_id))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await arun_flow(self._copy_thread(source_thread_id, target_thread_id))

    def _copy_thread(self, source_thread_id: str, target_thread_id: str) -> Flow[None]:
        src = self._plain_source((yield from self._refresh(source_thread_id)))
        if src is None:
            return
        yield from self._known(target_thread_id)
        for batch in _batches(self._copies(src, keep_all=True)):
            yield from self._append_plain(target_thread_id, batch)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        run_flow(self._prune(thread_ids, strategy))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await arun_flow(self._prune(thread_ids, strategy))

    def _prune(self, thread_ids: Sequence[str], strategy: str) -> Flow[None]:
        _check_strategy(strategy)
        for thread_id in thread_ids:
            th = self._plain_source((yield from self._refresh(thread_id)))
            if th is None:
                continue
            if strategy == "delete":
                yield from self._delete_thread(thread_id)
                continue
            kept = self._copies(th, keep_all=False)
            self._check_sizes(thread_id, kept)  # before anything is deleted
            later: Events = yield twin(self.store.events, self.store.aevents, thread_id, after=th.seq)
            if later:
                raise vs.SeqConflict(
                    f"thread {thread_id!r} was written while it was being pruned; prune it again",
                    expected=th.seq,
                    actual=later[-1].seq or th.seq,
                )
            yield twin(self.store.delete, self.store.adelete, thread_id)  # rebuilt with what it keeps
            with self._lock:
                th.reset()
            for batch in _batches(kept):
                yield from self._append_plain(thread_id, batch)

    def _check_sizes(self, thread_id: str, events: Events) -> None:
        """Refuse a rebuild with an event the store would refuse, before anything is deleted."""
        limit = self.store.config.max_event_bytes
        for ev in events:
            size = len(encode_event(ev))
            if size > limit:
                raise vs.InvalidArgument(
                    f"pruning thread {thread_id!r} would store its latest checkpoint whole, {size:,} bytes, "
                    f"over the store's max_event_bytes ({limit:,}); nothing was deleted: raise "
                    "open_store(max_event_bytes=...) or keep the thread as it is"
                )

    def _plain_source(self, th: Thread) -> Thread | None:
        if th.kind == "call":
            raise vs.InvalidArgument(
                f"thread {th.id!r} is a voice call, whose log is append-only: it cannot be copied or pruned "
                "(its conversation is the call's; hand the call off instead)"
            )
        return th if th.kind == "plain" else None

    def _copies(self, th: Thread, *, keep_all: bool) -> Events:
        """The thread's checkpoints and writes as fresh events: all, or each namespace's latest, whole."""
        out: Events = []
        with self._lock:
            for (owner, ns), by_id in th.checkpoints.items():
                chosen = sorted(by_id) if keep_all else [max(by_id)]
                for cid in chosen:
                    stored = by_id[cid]
                    values: dict[str, Value] = {}
                    for ch, (ver, blob) in stored.blobs.items():
                        if blob is not None:
                            values[ch] = (ver, blob[0], _text(blob))
                    if not keep_all:  # the kept checkpoint carries every value it refers to
                        for ch, ver in stored.cp["channel_versions"].items():
                            ok, got = th.value(stored, ch, ver)
                            if ok and got is not None:
                                values[ch] = (ver, got[0], _text(got))
                    # whole (no base): the copy's seqs are not known before it is stored
                    out.append(
                        pack_event(
                            ns=ns,
                            checkpoint=stored.cp,
                            meta=stored.meta,
                            parent=stored.parent,
                            values=values,
                            base=None,
                            implicit=False,
                            id_in_event=False,
                        )
                    )
                    writes = th.writes.get((owner, ns, cid), {})
                    if writes:
                        by_task: dict[tuple[str, str], builtins.list[builtins.list[Any]]] = {}
                        for w in writes.values():
                            data = _text(w.value)
                            by_task.setdefault((w.task, w.path), []).append([w.idx, w.channel, w.value[0], data])
                        for (task, path), ws in by_task.items():
                            out.append(WritesPut(ns=ns, cid=cid, task=task, path=path, writes=ws))
        return out

    def __repr__(self) -> str:
        return f"<VoiceStateSaver {self.store!r} calls={sorted(self._sessions)}>"


@attrs.define
class _Render:
    """How a call thread's messages are rendered for one read."""

    session: vs.Session | None
    state: vs.CallState | None = None


def _size(ev: Checkpointed) -> int:
    return len(json.dumps([ev.cp, ev.meta, ev.parent, ev.blobs, ev.base], separators=(",", ":")))


def _human_inputs(value: Any, key: str) -> list[str] | None:
    """The texts of a graph input that is only the caller's messages (``{key: [HumanMessage, ...]}``)."""
    if not isinstance(value, dict) or list(value) != [key] or not isinstance(value[key], list):
        return None
    texts = []
    for m in value[key]:
        if type(m) is not HumanMessage or not isinstance(m.content, str) or m.id is not None:
            return None
        texts.append(m.content)
    return texts


def _text(blob: tuple[str, bytes]) -> str:
    """A blob as its event stores it."""
    return blob[1].decode("ascii") if blob[0] == INPUT_VALUE else base64.b64encode(blob[1]).decode("ascii")


def _refers_to_call(th: Thread, found: Stored) -> bool:
    for ch, ver in found.cp["channel_versions"].items():
        ok, blob = th.value(found, ch, ver)
        if ok and blob is None:
            return True
    return False


def _address(config: RunnableConfig) -> tuple[str, str, str | None]:
    conf = config.get("configurable") or {}
    thread_id = conf.get("thread_id")
    if not isinstance(thread_id, str) or not thread_id:
        raise vs.InvalidArgument(
            f"config['configurable']['thread_id'] must name the thread (a call id for a voice call), not {thread_id!r}"
        )
    return thread_id, conf.get("checkpoint_ns", "") or "", get_checkpoint_id(config)


def _matches(meta: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(meta.get(k) == v for k, v in wanted.items())


def _is_json(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` round-trips through the event codec unchanged (no tuples, bytes, NaN, ...)."""
    if depth > 32:
        return False
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return False
        return not isinstance(value, int) or isinstance(value, bool) or -(2**63) <= value < 2**64
    if isinstance(value, float):
        return math.isfinite(value)
    if type(value) is dict:
        return all(isinstance(k, str) and _is_json(k) and _is_json(v, depth + 1) for k, v in value.items())
    if type(value) is list:
        return all(_is_json(v, depth + 1) for v in value)
    return False


def _check_strategy(strategy: str) -> None:
    if strategy not in ("keep_latest", "delete"):
        raise vs.InvalidArgument(f"prune strategy is 'keep_latest' or 'delete', not {strategy!r}")


def _batches(events: list[vs.Event]) -> Iterator[list[vs.Event]]:
    for i in range(0, len(events), _APPEND_BATCH):
        yield events[i : i + _APPEND_BATCH]
