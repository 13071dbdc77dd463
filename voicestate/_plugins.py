"""The plugin manager: default plugins, the ``voicestate`` entry-point group, and
the registries built from the ``register_*`` hooks."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import pluggy

from . import _redact, hookspecs
from ._codec import warm_up
from ._errors import ConfigError, InvalidEvent
from ._events import event_types, register_event_type

log = logging.getLogger("voicestate.plugins")

ENTRY_POINT_GROUP = "voicestate"
PLUGINS_ENV_VAR = "VOICESTATE_PLUGINS"
"""Comma-separated entry-point names to load; unset loads every installed plugin,
an empty string none (the default plugins always load)."""

TRACE_ENV_VAR = "VOICESTATE_TRACE_PLUGINS"
"""Set to 1 to print every hook call (its arguments, the plugins called, the result) to stderr."""

DEFAULT_PLUGINS = ("voicestate._builtin", "voicestate._redact")
"""Registered by name, like entry points. ``_builtin`` is imported only then: it pulls
in the backends, the format and the CLI, which sit above this module."""

HAND_DISPATCHED = ("redact_event", "after_handoff", "after_resume")
"""Hooks voicestate calls implementation by implementation (the redaction chain is
composed once for the record path; an observer's error is logged, not raised), so
they cannot take pluggy wrappers."""


@attrs.frozen
class ContextFormat:
    """A context format: ``render(state, policy)`` and optionally ``parse(messages) -> events``."""

    name: str
    render: Callable[..., Any]
    parse: Callable[..., Any] | None = None


@attrs.frozen
class Command:
    """A CLI subcommand: ``configure(parser)`` adds its arguments, ``run(args) -> exit code``."""

    name: str
    run: Callable[..., int]
    help: str = ""
    configure: Callable[..., None] | None = None


@attrs.frozen
class Registry:
    backends: Mapping[str, Callable[..., Any]]
    formats: Mapping[str, ContextFormat]
    commands: Mapping[str, Command]
    redact: Callable[[Any], Any] | None


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_tracing = False  # VOICESTATE_TRACE_PLUGINS, read when the plugin manager is built
_registry: Registry | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager, with default and entry-point plugins loaded."""
    global _pm, _tracing
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager("voicestate")
            pm.add_hookspecs(hookspecs)
            for name in DEFAULT_PLUGINS:
                pm.register(importlib.import_module(name), name=name)
            _load_entry_points(pm)
            pm.check_pending()  # a misspelled hook name fails here, loudly
            _refuse_wrappers(pm)
            _tracing = os.environ.get(TRACE_ENV_VAR, "") not in ("", "0")
            if _tracing:
                _trace(pm)
            _pm = pm
        return _pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    wanted = os.environ.get(PLUGINS_ENV_VAR)
    if wanted is None:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        return
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    found = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in names and pm.get_plugin(ep.name) is None:
            pm.register(ep.load(), name=ep.name)
            found.add(ep.name)
    missing = names - found
    if missing:
        raise ConfigError(
            f"{PLUGINS_ENV_VAR} names plugin(s) that are not installed: {sorted(missing)} "
            f"(installed: {sorted(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))})"
        )


def _refuse_wrappers(pm: pluggy.PluginManager) -> None:
    for name in HAND_DISPATCHED:
        for impl in getattr(pm.hook, name).get_hookimpls():
            if impl.wrapper or impl.hookwrapper:
                raise ConfigError(
                    f"plugin {impl.plugin_name!r}: {name} cannot be a wrapper (voicestate calls its "
                    "implementations one by one); implement it as a plain @hookimpl"
                )


def _trace(pm: pluggy.PluginManager) -> None:
    """Print hook calls to stderr, as datasette's DATASETTE_TRACE_PLUGINS does."""

    def before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        called = ", ".join(i.plugin_name for i in impls)
        print(f"voicestate plugins: {hook_name}({', '.join(kwargs)}) -> [{called}]", file=sys.stderr)

    def after(
        outcome: pluggy.Result[Any], hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
    ) -> None:
        if outcome.exception is not None:
            print(f"voicestate plugins: {hook_name} raised {outcome.exception!r}", file=sys.stderr)
        else:
            print(f"voicestate plugins: {hook_name} returned {outcome.get_result()!r:.200}", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)


def notify(hook_name: str, **kwargs: Any) -> None:
    """Call an observer hook (``after_handoff``, ``after_resume``).

    The change it reports is already stored, so an observer's error must not
    reach the caller as if the handoff or resume had failed: it is logged.
    """
    hook = getattr(get_plugin_manager().hook, hook_name)
    if _tracing:  # pluggy's monitoring sees only calls made through pm.hook
        print(f"voicestate plugins: {hook_name}({', '.join(kwargs)}) (observers)", file=sys.stderr)
    for impl in reversed(hook.get_hookimpls()):
        try:
            impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
        except Exception:
            log.exception(
                "voicestate: the %s hook of plugin %r failed (ignored: the change is stored)",
                hook_name,
                impl.plugin_name,
            )


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module (as an entry point would); returns its name."""
    pm = get_plugin_manager()
    with _lock:
        try:
            registered = pm.register(plugin, name=name)
        except ValueError as exc:  # pluggy: the same plugin or name twice
            raise ConfigError(f"cannot register plugin {name or plugin!r}: {exc}") from None
        if registered is None:
            raise ConfigError(f"plugin {name or plugin!r} is blocked or already registered")
        try:
            pm.check_pending()
            _refuse_wrappers(pm)
        except (pluggy.PluginValidationError, ConfigError):
            pm.unregister(plugin)
            raise
        _reset()
        registry()  # its event types are known at once (a reader decodes them without opening a store)
        return registered


def unregister_plugin(plugin_or_name: object) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    pm = get_plugin_manager()
    with _lock:
        if isinstance(plugin_or_name, str):
            pm.unregister(name=plugin_or_name)
        else:
            pm.unregister(plugin_or_name)
        _reset()


def _reset() -> None:
    global _registry
    _registry = None


def registry() -> Registry:
    """Backends, formats, commands and the redaction chain, from the hooks (cached)."""
    global _registry
    with _lock:
        if _registry is not None:
            return _registry
        pm = get_plugin_manager()
        backends: dict[str, Callable[..., Any]] = {}
        formats: dict[str, ContextFormat] = {}
        commands: dict[str, Command] = {}

        # pluggy calls the newest registration first, and the first registration of a
        # name wins: a plugin overrides a default by registering the same name.
        def add_backend(scheme: str, factory: Callable[..., Any]) -> None:
            backends.setdefault(scheme.lower(), factory)

        def add_format(name: str, render: Callable[..., Any], parse: Callable[..., Any] | None = None) -> None:
            formats.setdefault(name, ContextFormat(name, render, parse))

        def add_command(
            name: str, run: Callable[..., int], help: str = "", configure: Callable[..., None] | None = None
        ) -> None:
            if name in commands:
                raise ConfigError(f"two plugins register the CLI command {name!r}")
            commands[name] = Command(name, run, help, configure)

        pm.hook.register_backends(register=add_backend)
        pm.hook.register_formats(register=add_format)
        pm.hook.register_commands(register=add_command)
        pm.hook.register_event_types(register=register_event_type)
        warm_up(list(event_types().values()))
        _registry = Registry(backends, formats, commands, _redaction_chain(pm))
        return _registry


def _redaction_chain(pm: pluggy.PluginManager) -> Callable[[Any], Any] | None:
    """Compose the ``redact_event`` impls into one function (each gets the previous one's output).

    Composed once, so recording pays plain function calls, not a hook dispatch.
    """
    # get_hookimpls() lists in reverse call order (pluggy calls from the end).
    fns = [impl.function for impl in reversed(pm.hook.redact_event.get_hookimpls())]
    if not fns:
        return None
    if len(fns) == 1:
        only = fns[0]
        if only is _redact.redact_event:  # the built-in alone: trusted, no wrapper on the record path
            return _redact.redact_or_same

        def one(event: Any) -> Any:
            out = only(event)
            return event if out is None or out is event else _checked(event, out)

        return one

    def chain(event: Any) -> Any:
        for fn in fns:
            out = fn(event=event)
            if out is not None and out is not event:
                event = _checked(event, out)
        return event

    return chain


def _checked(before: Any, after: Any) -> Any:
    # A redactor may change what an event says, never what it is: its type and id
    # (the idempotency key) must survive, or retries would store it twice.
    if type(after) is not type(before) or after.id != before.id:
        raise InvalidEvent(
            f"a redact_event hook turned {type(before).__name__} {before.id!r} into "
            f"{type(after).__name__} {getattr(after, 'id', None)!r}; return the same type with the same id"
        )
    return after
