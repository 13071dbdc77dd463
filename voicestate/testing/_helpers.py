"""Helpers shared by the conformance mixins (and handy in a backend's own tests)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any

from .._backend import StoredEvent
from .._codec import chain_next, encode_event, genesis
from .._events import CallEnded, CallStarted, Event, Note, OwnerChanged


def make_events(
    call_id: str,
    events: Sequence[Event],
    *,
    start_seq: int = 0,
    head: bytes | None = None,
    epoch: int = 1,
    agent: str = "a",
) -> list[StoredEvent]:
    """Encode and chain ``events`` as a session would, after ``start_seq``/``head``."""
    out = []
    head = genesis(call_id) if head is None else head
    seq = start_seq
    for ev in events:
        data = encode_event(ev, agent)
        seq += 1
        head = chain_next(head, data)
        if isinstance(ev, OwnerChanged):
            epoch = ev.epoch
        out.append(StoredEvent(seq, ev.id, data, head, epoch, isinstance(ev, CallEnded)))
    return out


def started(call_id: str, n_notes: int = 0) -> list[StoredEvent]:
    """CallStarted plus ``n_notes`` notes, seqs 1..n+1."""
    return make_events(call_id, [CallStarted(), *[Note(f"note {i}") for i in range(n_notes)]])


def spawn(target: Callable[..., Any], args_list: Sequence[tuple[Any, ...]], timeout: float = 60.0) -> list[Any]:
    """Run ``target(*args)`` in one fresh OS process per args (spawn: nothing inherited).

    ``target`` gets a queue as its first argument and puts one result; returns
    the results in process order.
    """
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start = ctx.Event()
    procs = [ctx.Process(target=_child, args=(target, queue, start, i, args)) for i, args in enumerate(args_list)]
    for p in procs:
        p.start()
    start.set()
    results: dict[int, Any] = {}
    for _ in procs:
        i, value = queue.get(timeout=timeout)
        results[i] = value
    for p in procs:
        p.join(timeout)
        if p.exitcode != 0:
            raise AssertionError(f"child process exited with {p.exitcode}")
    return [results[i] for i in range(len(procs))]


def _child(target: Callable[..., Any], queue: Any, start: Any, index: int, args: tuple[Any, ...]) -> None:
    try:
        start.wait(30)
        value = target(*args)
    except BaseException as exc:
        value = ("error", f"{type(exc).__name__}: {exc}")
    queue.put((index, value))
