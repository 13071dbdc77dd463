"""The core's default plugin: its backends, the openai format, its CLI commands
and the default summary, registered like any other plugin. (The core's event
types need no plugin: a reader knows them before any plugin loads.)"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ._errors import ConfigError
from ._memory import memory_backend
from ._sqlite import SQLiteBackend
from ._summary import default_summary
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from ._state import CallState


def _no_params(scheme: str, params: Mapping[str, str]) -> None:
    if params:
        raise ConfigError(f"{scheme}:// does not take the parameter(s) {sorted(params)}")


def open_memory(url: str, params: Mapping[str, str]) -> Any:
    _no_params("memory", params)
    parts = urlsplit(url)
    return memory_backend(unquote(parts.netloc + parts.path.lstrip("/")))


def open_sqlite(url: str, params: Mapping[str, str]) -> Any:
    params = dict(params)
    try:
        timeout = float(params.pop("timeout", "30"))
    except ValueError:
        raise ConfigError(f"{url}: timeout= must be a number of seconds") from None
    synchronous = params.pop("synchronous", "normal")
    _no_params("sqlite", params)
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigError(
            f"{url}: sqlite URLs have three slashes (sqlite:///relative.db) or four (sqlite:////abs/path.db)"
        )
    return SQLiteBackend(unquote(parts.path[1:]), timeout=timeout, synchronous=synchronous)


@hookimpl
def register_backends(register: Callable[..., None]) -> None:
    register("memory", open_memory)
    register("sqlite", open_sqlite)


@hookimpl
def register_formats(register: Callable[..., None]) -> None:
    from . import _openai

    register("openai", _openai.render, _openai.parse)


@hookimpl
def register_commands(register: Callable[..., None]) -> None:
    from . import _commands

    _commands.register_all(register)


@hookimpl(trylast=True)
def summarize_call(state: CallState, to_agent: str) -> str | None:
    return default_summary(state, to_agent)
