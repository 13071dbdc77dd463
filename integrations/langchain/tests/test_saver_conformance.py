"""LangGraph's published checkpointer conformance suite (langgraph-checkpoint-conformance) on the
embedded stores and on a real Redis server: every capability it knows, base and extended.

``delete_for_runs`` is the one capability VoiceStateSaver does not implement: a thread is a
call's append-only log, so removing the checkpoints of some runs from the middle of it would
mean rewriting the log (``prune`` rebuilds a plain thread whole instead).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import ProgressCallbacks

import voicestate as vs
from voicestate_langchain import VoiceStateSaver
from voicestate_redis.testing import redis_server

EXPECTED = {
    "put": True,
    "put_writes": True,
    "get_tuple": True,
    "list": True,
    "delete_thread": True,
    "copy_thread": True,
    "prune": True,
    "delete_for_runs": False,  # not implemented (see the module's docstring)
}


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    url = os.environ.get("VOICESTATE_TEST_REDIS_URL")
    if url:
        yield url
        return
    with redis_server() as started:
        yield started


async def _conformance(url: str) -> None:
    @checkpointer_test(name=f"VoiceStateSaver on {url.split(':', 1)[0]}")
    async def saver() -> AsyncIterator[VoiceStateSaver]:
        store = vs.open_store(url)
        try:
            yield VoiceStateSaver(store)
        finally:
            await store.aclose()

    report = await validate(saver, progress=ProgressCallbacks.quiet())
    report.print_report()
    assert report.conformance_level() == "FULL"
    assert report.passed_all_base()
    found = report.to_dict()["results"]
    assert {name: cap["detected"] for name, cap in found.items()} == EXPECTED
    assert all(cap["passed"] and cap["tests_passed"] > 0 for cap in found.values() if cap["detected"])
    assert not any(cap["tests_failed"] for cap in found.values())
    assert not any(cap["tests_skipped"] for cap in found.values() if cap["detected"])
    assert sum(cap["tests_passed"] for cap in found.values()) == 74  # the suite's 58 base + 16 extended tests


async def test_conformance_on_memory() -> None:
    await _conformance("memory://")


async def test_conformance_on_sqlite(tmp_path: Path) -> None:
    await _conformance(f"sqlite:///{tmp_path / 'threads.db'}")


async def test_conformance_on_redis(redis_url: str) -> None:
    await _conformance(f"{redis_url}?prefix=lg{uuid.uuid4().hex[:10]}")
