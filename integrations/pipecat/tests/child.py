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


async def worker(url: str, wire: str) -> None:
    """An LLMWorker on 'another host' activated by a bus message that crossed the network as JSON."""
    from pipecat.bus.serializers.json import JSONMessageSerializer
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.workers.llm import LLMWorker

    from voicestate_pipecat import receive_handoff

    message = JSONMessageSerializer().deserialize(bytes.fromhex(wire))
    assert message is not None
    args = message.args
    store = vs.open_store(url)
    context = LLMContext([{"role": "user", "content": "stale message from an earlier turn"}])
    target = LLMWorker("billing", llm=ScriptedLLM())
    session = await receive_handoff(target, args, store, context=context)
    assert session is not None
    print(
        json.dumps(
            {
                "owner": session.state.owner,
                "epoch": session.epoch,
                "messages": args["messages"],
                "context": context.get_messages(),
            }
        )
    )
    store.close()


if __name__ == "__main__":
    mode, url, arg = sys.argv[1:4]
    run = {"resume": resume, "die": die, "worker": worker}[mode]
    asyncio.run(run(url, arg))
