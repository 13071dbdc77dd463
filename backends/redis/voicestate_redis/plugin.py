"""The hookimpls of voicestate-redis; the implementation is imported lazily, inside them."""

from __future__ import annotations

from collections.abc import Callable

import voicestate.plugins as vsp

_open = vsp.lazy("voicestate_redis._backend", "open_redis")


@vsp.hookimpl
def register_backends(register: Callable[..., None]) -> None:
    register("redis", _open)
    register("rediss", _open)
    register("redis+cluster", _open)
    register("rediss+cluster", _open)
