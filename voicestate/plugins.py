"""What a plugin uses: the hook marker, the registration helpers, and the codec
and keys that formats, event types and integrations build on.

A plugin is a module or object with ``@hookimpl`` functions (the hooks are in
:mod:`voicestate.hookspecs`, documented in docs/plugin-hooks.md), registered by
the ``voicestate`` entry-point group or :func:`register_plugin`.
"""

from __future__ import annotations

from ._codec import decode_event, encode_event
from ._convert import event_from_dict, event_to_dict, make_converter
from ._events import SCHEMA_VERSION, event_types, field_kinds, register_event_type
from ._keys import KeyRing, parse_keys
from ._lazy import lazy, lazy_exports
from ._open import register_backend
from ._packet import TokenClaims, decode_token
from ._plugins import (
    ENTRY_POINT_GROUP,
    PLUGINS_ENV_VAR,
    TRACE_ENV_VAR,
    get_plugin_manager,
    register_plugin,
    unregister_plugin,
)
from ._public import publish
from ._timeline import describe as describe_event
from ._timeline import timeline as timeline_lines
from ._twins import Call, Flow, arun_flow, run_flow, twin
from .hookspecs import hookimpl

__all__ = [
    "ENTRY_POINT_GROUP",
    "Call",
    "Flow",
    "PLUGINS_ENV_VAR",
    "SCHEMA_VERSION",
    "TRACE_ENV_VAR",
    "KeyRing",
    "TokenClaims",
    "decode_event",
    "decode_token",
    "describe_event",
    "encode_event",
    "event_from_dict",
    "event_to_dict",
    "event_types",
    "field_kinds",
    "get_plugin_manager",
    "hookimpl",
    "lazy",
    "lazy_exports",
    "make_converter",
    "parse_keys",
    "arun_flow",
    "run_flow",
    "timeline_lines",
    "twin",
    "register_backend",
    "register_event_type",
    "register_plugin",
    "unregister_plugin",
]

publish(__name__, globals(), __all__)
