"""Re-exported classes report the public module they are used from (``voicestate.FencedError``
in a traceback, not ``voicestate._errors.FencedError``), as svcs does."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import attrs


def publish(module: str, namespace: Mapping[str, Any], names: Iterable[str]) -> None:
    """Set ``__module__`` of the classes ``names`` of ``namespace`` to ``module``.

    Their string annotations (``from __future__ import annotations``) resolve in the
    defining module's globals, which ``__module__`` names: they are resolved first
    and stored as objects, so ``typing.get_type_hints``, attrs and cattrs keep
    working on these classes and on subclasses defined elsewhere (plugin events).
    """
    classes = [obj for obj in (namespace[name] for name in names) if isinstance(obj, type) and _private(obj)]
    resolved: dict[type, dict[str, Any]] = {}
    seen: set[type] = set()
    for cls in classes:
        for klass in cls.__mro__:
            if klass in seen or not _private(klass):
                continue
            seen.add(klass)
            own = inspect.get_annotations(klass)
            if own:
                hints = typing.get_type_hints(klass, include_extras=True)
                resolved[klass] = {k: hints.get(k, v) for k, v in own.items()}
            if attrs.has(klass):
                attrs.resolve_types(klass)
    for klass, hints in resolved.items():
        klass.__annotations__ = hints
    for cls in classes:
        cls.__module__ = module


def _private(cls: type) -> bool:
    """Defined in a private module of voicestate (``voicestate._x``, ``voicestate.testing._y``)."""
    parts = cls.__module__.split(".")
    return parts[0] == "voicestate" and any(p.startswith("_") for p in parts[1:])
