"""Sans-I/O plumbing: logic is written once as generators, driven sync or async.

A generator yields ``(backend, "method", args)``; the sync driver calls
``backend.method(*args)``, the async driver awaits ``backend.amethod(*args)``.
So the sync path of an in-process tier does its work inline (no loop, no
thread hop) and the async path never blocks the loop, from one body of code.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")
Op = tuple[Any, str, tuple[Any, ...]]
Flow = Generator[Op, Any, T]


def call(backend: Any, method: str, *args: Any) -> Op:
    return (backend, method, args)


def run(flow: Flow[T]) -> T:
    """Drive ``flow`` with blocking calls."""
    try:
        backend, method, args = next(flow)
        while True:
            try:
                result = getattr(backend, method)(*args)
            except Exception as exc:
                backend, method, args = flow.throw(exc)
            else:
                backend, method, args = flow.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value


async def arun(flow: Flow[T]) -> T:
    """Drive ``flow`` with the backends' async twins."""
    try:
        backend, method, args = next(flow)
        while True:
            try:
                result = await getattr(backend, "a" + method)(*args)
            except Exception as exc:
                backend, method, args = flow.throw(exc)
            else:
                backend, method, args = flow.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value
