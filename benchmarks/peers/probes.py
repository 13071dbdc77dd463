"""The official Redis integrations, probed on the same server rather than measured.

langchain-redis's ``RedisChatMessageHistory`` and langgraph-checkpoint-redis's
``RedisSaver`` keep messages as RedisJSON documents listed through a RediSearch index;
on a plain Redis (no modules) their first call fails. Each probe does what a user does
first (build the history and add one message; ``RedisSaver(...).setup()``) and reports
how it failed, or that it ran (a server with the modules: then it is not measured here).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import redis


@dataclass
class Probe:
    peer: str
    outcome: str


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "runs on this server (it has the modules); not measured by this suite"
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    if "unknown command" in text.lower() and ("FT." in text or "JSON." in text):
        return f"needs Redis modules (RediSearch, RedisJSON): {text[:160]}"
    return f"failed: {text[:200]}"


def langchain_redis(url: str, prefix: str) -> Probe:
    name = "langchain-redis RedisChatMessageHistory"
    try:
        from langchain_core.messages import HumanMessage
        from langchain_redis import RedisChatMessageHistory
    except ImportError as exc:
        return Probe(name, f"not installed ({exc.name})")
    client = redis.Redis.from_url(url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            history = RedisChatMessageHistory(
                "probe", redis_client=client, key_prefix=f"{prefix}:lcr:", index_name=f"{prefix}-idx"
            )
            history.add_messages([HumanMessage("hello")])
            history.messages  # noqa: B018  (the read goes through the index)
    except Exception as exc:
        return Probe(name, _outcome(exc))
    finally:
        client.close()
    return Probe(name, _outcome(None))


def langgraph_redis(url: str, prefix: str) -> Probe:
    name = "langgraph-checkpoint-redis RedisSaver"
    try:
        from langgraph.checkpoint.redis import RedisSaver
    except ImportError as exc:
        return Probe(name, f"not installed ({exc.name})")
    client = redis.Redis.from_url(url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saver = RedisSaver(
                redis_client=client, checkpoint_prefix=f"{prefix}:ckpt", checkpoint_write_prefix=f"{prefix}:ckw"
            )
            saver.setup()
    except Exception as exc:
        return Probe(name, _outcome(exc))
    finally:
        client.close()
    return Probe(name, _outcome(None))


def all_probes(url: str, prefix: str) -> list[Probe]:
    out = []
    for probe in (langchain_redis, langgraph_redis):
        try:
            out.append(probe(url, prefix))
        except Exception as exc:  # a probe never stops the run
            out.append(Probe(probe.__name__, _outcome(exc)))
    return out
