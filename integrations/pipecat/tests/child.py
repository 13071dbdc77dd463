"""Pipelines in a second OS process (run by test_resume.py): ``resume URL TOKEN`` or ``die URL CALL_ID``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from kit import ScriptedLLM
from loguru import logger
from pipecat.frames.frames import (
    LLMRunFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.tests.utils import SleepFrame, run_test

import voicestate as vs
from voicestate_pipecat import VoiceStateProcessor, context_messages

logger.remove()


async def resume(url: str, token: str) -> None:
    store = vs.open_store(url)
    session = await store.aresume(token, agent="billing")
    context = session.context("pipecat")  # the LLMContext the pipeline starts from
    expected = context_messages(session)
    llm = ScriptedLLM(["I can see both charges. I have refunded the duplicate."])
    pair = LLMContextAggregatorPair(context)
    processor = VoiceStateProcessor(session)
    await run_test(
        Pipeline([pair.user(), llm, processor, pair.assistant()]), frames_to_send=[LLMRunFrame(), SleepFrame(0.3)]
    )
    await processor.flush()
    print(json.dumps({"pid": os.getpid(), "seen": llm.seen[0], "expected": expected, "epoch": session.epoch}))
    store.close()


async def die(url: str, call_id: str) -> None:
    store = vs.open_store(url, lease=1)
    session = await store.aopen(call_id, agent="triage")
    pair = LLMContextAggregatorPair(session.context("pipecat"))
    llm = ScriptedLLM(["Sorry to hear that. Which account is it?"])
    processor = VoiceStateProcessor(session)
    frames = [
        UserStartedSpeakingFrame(),
        TranscriptionFrame("My internet bill is wrong.", "caller", ""),
        UserStoppedSpeakingFrame(),
        SleepFrame(0.3),
    ]
    await run_test(Pipeline([pair.user(), llm, processor, pair.assistant()]), frames_to_send=frames)
    await processor.flush()
    print("recorded", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-call: no close, no end, no handoff


if __name__ == "__main__":
    mode, url, arg = sys.argv[1:4]
    asyncio.run(resume(url, arg) if mode == "resume" else die(url, arg))
