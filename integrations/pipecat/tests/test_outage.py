"""A storage outage during a turn: frames keep flowing, the error surfaces, nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from kit import ScriptedLLM
from pipecat.frames.frames import ErrorFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.tests.utils import SleepFrame, run_test
from test_recording import user_says

import voicestate as vs
from voicestate_pipecat import VoiceStateProcessor


async def test_frames_flow_through_an_outage_and_the_events_land_after_it(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    url = f"sqlite:///{path}?timeout=0.1"  # a locked database fails a write after 0.1 s
    store = vs.open_store(url)
    session = await store.aopen("call-1", agent="bot")
    await session.arecord(vs.UserSpoke("Hello?"))  # acknowledged before the outage
    errors: list[BaseException] = []
    processor = VoiceStateProcessor(session)

    @processor.event_handler("on_storage_error")
    async def on_storage_error(_: Any, error: BaseException) -> None:
        errors.append(error)

    # The outage: another connection holds the database's write lock for the whole turn.
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    context = LLMContext()
    pair = LLMContextAggregatorPair(context)
    llm = ScriptedLLM(["Sure, one moment.", "Still here."])
    frames = [*user_says("Can you check my bill?"), SleepFrame(0.6), *user_says("Hello?"), SleepFrame(0.6)]
    started = asyncio.get_running_loop().time()
    _, up = await run_test(Pipeline([pair.user(), llm, processor, pair.assistant()]), frames_to_send=frames)
    elapsed = asyncio.get_running_loop().time() - started
    # Frames kept flowing: both turns reached the LLM and Pipecat's own context.
    assert len(llm.seen) == 2
    assert [m["content"] for m in context.get_messages() if m["role"] == "assistant"] == [
        "Sure, one moment.",
        "Still here.",
    ]
    assert elapsed < 5  # the frame path never waited out the store's retries
    # The failure surfaced: the event handler, a non-fatal ErrorFrame upstream, the property.
    assert errors and all(isinstance(e, vs.BackendUnavailable) for e in errors)
    assert any(isinstance(f, ErrorFrame) and not f.fatal for f in up)
    assert processor.storage_error is not None
    # The session still holds the events (applied locally, queued for the store).
    assert [t.text for t in session.state.turns][-2:] == ["Hello?", "Still here."]
    lock.execute("ROLLBACK")
    lock.close()
    # The store is back: the queued events land, in order, and nothing acknowledged was lost.
    await processor.flush()
    assert processor.storage_error is None
    other = vs.open_store(f"sqlite:///{path}")
    assert [(t.role, t.text) for t in other.load("call-1").turns] == [
        ("user", "Hello?"),
        ("user", "Can you check my bill?"),
        ("agent", "Sure, one moment."),
        ("user", "Hello?"),
        ("agent", "Still here."),
    ]
    other.close()
    store.close()
