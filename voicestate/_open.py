"""``open_store``: store URLs to tiers, options to a Store."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

from ._backend import Backend
from ._config import StoreConfig
from ._errors import ConfigError, UnknownBackend
from ._keys import ENV_VAR, KeyRing, ephemeral_keys, parse_keys
from ._plugins import register_plugin, registry
from ._store import Store
from ._tiers import Tier, Tiers
from .hookspecs import hookimpl

STORE_ENV_VAR = "VOICESTATE_STORE"

BackendFactory = Callable[[str, Mapping[str, str]], Backend]
"""(url without its query, the query parameters other than write=) -> backend."""

_HINTS = {
    "redis": "pip install voicestate-redis",
    "rediss": "pip install voicestate-redis",
    "dynamodb": "pip install voicestate-dynamodb",
}


class _OneBackend:
    def __init__(self, scheme: str, factory: BackendFactory) -> None:
        self.scheme, self.factory = scheme, factory

    @hookimpl
    def register_backends(self, register: Callable[..., None]) -> None:
        register(self.scheme, self.factory)


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Shortcut for a plugin whose ``register_backends`` adds one scheme."""
    register_plugin(_OneBackend(scheme, factory), name=f"backend:{scheme}")


def open_tier(url: str) -> Tier:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"{url!r} is not a store URL (e.g. memory://, sqlite:///calls.db, redis://host:6379/0)")
    scheme = url.split("://", 1)[0].lower()
    backends = registry().backends
    factory = backends.get(scheme)
    if factory is None:
        hint = _HINTS.get(scheme)
        known = ", ".join(f"{s}://" for s in sorted(backends))
        raise UnknownBackend(
            f"no backend for {scheme}:// ({hint} to add it)" if hint else f"no backend for {scheme}://; known: {known}"
        )
    params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    write = params.pop("write", "through")
    if write not in ("through", "behind"):
        raise ConfigError(f"{url}: write= must be 'through' or 'behind', not {write!r}")
    return Tier(factory(url.split("?", 1)[0], params), "behind" if write == "behind" else "through")


def open_backend(url: str) -> Backend:
    """The backend a store URL names, opened alone (no tiers, no store): for tools and tests.

    Close it with ``backend.close()``.
    """
    return open_tier(url).backend


def open_store(
    *urls: str,
    signing_keys: str | Mapping[str, str | bytes] | KeyRing | None = None,
    tenant: str | None = None,
    packet_ttl: float = 120.0,
    skew: float = 5.0,
    behind_queue: int = 10_000,
    barrier_timeout: float = 30.0,
    retries: int = 64,
    store_interim: bool = False,
    redact: bool = True,
    max_event_bytes: int = 1024 * 1024,
    lease: float = 10.0,
    retention: float = 7 * 86400.0,
    max_call_age: float = 86400.0,
    require_packet: bool = False,
    snapshot_every: int = 500,
) -> Store:
    """Open a store over one backend or an ordered list of tiers, hottest first.

    With no URL, ``VOICESTATE_STORE`` (space-separated URLs) is read, else the
    embedded in-process default ``memory://``. Keys come from ``signing_keys``,
    else ``VOICESTATE_SIGNING_KEYS``, else a random per-process key (with a warning).
    Interim transcripts (``UserSpoke(final=False)``) are dropped unless ``store_interim=True``.
    ``redact=False`` turns the ``redact_event`` hooks (card numbers, by default) off for this store.
    An event that encodes to more than ``max_event_bytes`` (1 MiB) is refused with InvalidEvent.
    ``lease`` (10 s): an owner's lease, renewed by its appends, by ``heartbeat()`` and, for
    async sessions, in the background; ``takeover=True`` is refused while it is live.
    ``retention`` (7 days) after its ``CallEnded`` an ended call is removed, and ``max_call_age``
    (24 h) after its start one that never ended. ``require_packet=True``: a pending handoff is
    redeemed only with its signed packet or token, never by the bare call id.
    ``snapshot_every`` (500): events between the fold snapshots an owner writes (and at every
    handoff), where the deciding tier keeps them, so a resume does not replay the whole log;
    ``0``: no snapshots (a snapshot holds the call's text again: storage against resume time).
    Durations are seconds, int or float.
    """
    if not urls:
        env = os.environ.get(STORE_ENV_VAR, "").split()
        urls = tuple(env) or ("memory://",)
    if signing_keys is None:
        env_keys = os.environ.get(ENV_VAR)
        keys = parse_keys(env_keys) if env_keys else ephemeral_keys()
    else:
        keys = parse_keys(signing_keys)
    config = StoreConfig(
        keys=keys,
        tenant=tenant,
        packet_ttl=packet_ttl,
        skew=skew,
        retries=retries,
        barrier_timeout=barrier_timeout,
        behind_queue=behind_queue,
        store_interim=store_interim,
        redact=registry().redact if redact else None,
        max_event_bytes=max_event_bytes,
        lease=lease,
        retention=retention,
        max_call_age=max_call_age,
        require_packet=require_packet,
        snapshot_every=snapshot_every,
    )
    tiers: list[Tier] = []
    try:
        for url in urls:
            tiers.append(open_tier(url))
        stack = Tiers(tiers, behind_queue=config.behind_queue)
    except BaseException:
        for t in tiers:
            t.backend.close()
        raise
    return Store(stack, config)
