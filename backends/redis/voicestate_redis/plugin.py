"""The hookimpls of voicestate-redis; the implementation is imported lazily, inside them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import voicestate.plugins as vsp


def _open(url: str, params: Mapping[str, str]) -> Any:
    from ._backend import open_redis

    return open_redis(url, params)


@vsp.hookimpl
def register_backends(register: Callable[..., None]) -> None:
    register("redis", _open)
    register("rediss", _open)
    register("redis+cluster", _open)
    register("rediss+cluster", _open)
