"""The plugin hooks of voicestate (pluggy project ``voicestate``).

Full prose, exact signatures and an example of each: docs/plugin-hooks.md.
No hook runs per audio frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._events import Event
    from ._packet import HandoffPacket
    from ._state import CallState

hookspec = pluggy.HookspecMarker("voicestate")
hookimpl = pluggy.HookimplMarker("voicestate")


@hookspec
def register_backends(register: Callable[..., None]) -> None:
    """Map URL schemes to backend factories: ``register(scheme, factory)``."""


@hookspec
def register_formats(register: Callable[..., None]) -> None:
    """Add context formats: ``register(name, render, parse=None)``."""


@hookspec
def register_event_types(register: Callable[..., None]) -> None:
    """Add event classes: ``register(cls)``."""


@hookspec
def register_commands(register: Callable[..., None]) -> None:
    """Add CLI subcommands: ``register(name, run, help=, configure=)``."""


@hookspec
def redact_event(event: Event) -> Event | None:
    """Rewrite an event when it is recorded, before it is applied anywhere (chained)."""


@hookspec
def prepare_handoff(state: CallState, packet: HandoffPacket) -> dict[str, Any] | None:
    """Add to a handoff before it is recorded (return field updates) or veto it (raise HandoffVetoed)."""


@hookspec
def after_handoff(state: CallState, packet: HandoffPacket) -> None:
    """Observe a handoff once it is recorded and signed."""


@hookspec
def after_resume(state: CallState, packet: HandoffPacket | None) -> None:
    """Observe a redemption (``packet`` set) or a takeover (``packet`` None)."""


@hookspec(firstresult=True)
def summarize_call(state: CallState, to_agent: str) -> str | None:
    """The warm-transfer summary a handoff carries to ``to_agent``."""
