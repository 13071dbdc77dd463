"""Lazy imports for plugins: a distribution registered through the entry-point group is
loaded in every process that opens a store, so its heavy dependencies (a framework, a
client library) are imported on first use, not when the hooks register."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy(module: str, name: str) -> Callable[..., Any]:
    """A function that imports ``module`` on its first call and calls its ``name``.

    For ``register_*`` hooks: ``register("pipecat", lazy("voicestate_pipecat._format", "render"))``
    registers the renderer without importing Pipecat until a context is rendered.
    """
    target: Callable[..., Any] | None = None

    def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal target
        if target is None:
            target = getattr(import_module(module), name)
        return target(*args, **kwargs)

    call.__name__ = name
    call.__qualname__ = f"lazy({module}:{name})"
    return call


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package``: each public name in ``where`` is
    imported from its private module (``{"VoiceStateProcessor": "_processor"}``) on first use.

    ``__getattr__ = lazy_exports(__name__, {...})`` in a package's ``__init__``; list the
    same names under ``if TYPE_CHECKING:`` imports for type checkers, and in ``__all__``.
    """

    def __getattr__(name: str) -> Any:
        submodule = where.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{submodule}"), name)
        setattr(import_module(package), name, value)  # later lookups skip this function
        return value

    return __getattr__
