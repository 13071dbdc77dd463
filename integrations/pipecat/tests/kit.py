"""Pipecat's real classes, scripted so a pipeline runs offline (the demo's own, from
``voicestate_pipecat._scripted``): an LLM service that streams text and function calls
from a script, a TTS service that times each word, and an output transport that plays
audio in real time (so spoken text is released as it plays)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pipecat.workers.runner import WorkerRunner

from voicestate_pipecat._scripted import SAMPLE_RATE, WORD_SECS, Call, PlayoutTransport, ScriptedLLM, ScriptedTTS

__all__ = [
    "SAMPLE_RATE",
    "WORD_SECS",
    "Call",
    "PlayoutTransport",
    "ScriptedLLM",
    "ScriptedTTS",
    "run_workers",
    "until",
]


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds (a failed assertion after ``timeout`` seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def run_workers(runner: WorkerRunner, conversation: Callable[[], Awaitable[None]], timeout: float = 30) -> None:
    """Run the runner's workers while ``conversation()`` drives them; a failure in it stops the
    workers, so it shows instead of a hang."""

    async def drive() -> None:
        try:
            await conversation()
        except BaseException:
            await runner.cancel()
            raise

    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), timeout)
