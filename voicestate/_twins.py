"""One body for both twins, for distributions: an operation is a generator (a flow) that
yields the calls it needs, ``twin(sync_fn, async_fn, *args)``, and is sent their results (or
thrown their errors). ``run_flow`` drives a flow with the sync calls, ``arun_flow`` awaits the
async ones; a class writes each operation once and exposes ``get``/``aget`` as one-line wrappers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")


class Call:
    """A call a flow waits for: its sync and async forms and their arguments."""

    __slots__ = ("args", "asynchronous", "kwargs", "synchronous")

    def __init__(
        self,
        synchronous: Callable[..., Any],
        asynchronous: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.synchronous, self.asynchronous = synchronous, asynchronous
        self.args, self.kwargs = args, kwargs


Flow = Generator[Call, Any, T]


def twin(
    synchronous: Callable[..., Any],
    asynchronous: Callable[..., Awaitable[Any]],
    *args: Any,
    **kwargs: Any,
) -> Call:
    """The call ``synchronous(*args, **kwargs)``, or ``await asynchronous(*args, **kwargs)``."""
    return Call(synchronous, asynchronous, args, kwargs)


def run_flow(flow: Flow[T]) -> T:
    result: Any = None
    error: Exception | None = None
    while True:
        try:
            call = flow.throw(error) if error is not None else flow.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        result, error = None, None
        try:
            result = call.synchronous(*call.args, **call.kwargs)
        except Exception as exc:  # the flow handles it, or it propagates from the flow
            error = exc


async def arun_flow(flow: Flow[T]) -> T:
    result: Any = None
    error: Exception | None = None
    while True:
        try:
            call = flow.throw(error) if error is not None else flow.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        result, error = None, None
        try:
            result = await call.asynchronous(*call.args, **call.kwargs)
        except Exception as exc:
            error = exc
