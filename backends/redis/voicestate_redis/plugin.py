"""The hookimpls of voicestate-redis; the implementation is imported lazily, inside them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import voicestate as vs
import voicestate.plugins as vsp


def _open(url: str, params: Mapping[str, str]) -> Any:
    from ._backend import open_redis

    return open_redis(url, params)


def _open_cluster(url: str, params: Mapping[str, str]) -> Any:
    raise vs.ConfigError(
        f"{url.split('://', 1)[0]}://: Redis Cluster support is coming in a later voicestate-redis release; "
        "the keys of a call already share one hash tag, so a standalone store moves over unchanged. "
        "Use redis:// or rediss:// (standalone or a primary behind a proxy) for now."
    )


@vsp.hookimpl
def register_backends(register: Callable[..., None]) -> None:
    register("redis", _open)
    register("rediss", _open)
    register("redis+cluster", _open_cluster)
    register("rediss+cluster", _open_cluster)
