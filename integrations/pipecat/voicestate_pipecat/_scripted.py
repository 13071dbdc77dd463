"""Pipecat's real classes, scripted so a pipeline runs offline (for ``voicestate demo --pipecat``):
an LLM service that streams text and function calls from a script, a TTS service that
times each word, an output transport that plays audio in real time (so spoken text is
released as it plays), and :func:`run_pipeline`, which runs a pipeline while a coroutine
drives it. Not public API: no API keys, no network, no audio device."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import (
    EndFrame,
    Frame,
    FunctionCallFromLLM,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings, TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from pipecat.workers.runner import WorkerRunner

SAMPLE_RATE = 16000
WORD_SECS = 0.05  # how long the scripted TTS takes to say one word


@dataclass
class Call:
    """A function call the scripted LLM makes: ``name(arguments)`` with id ``call_id``."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    call_id: str = "call-1"


Step = str | Call | Sequence[str | Call]


class ScriptedLLM(LLMService):
    """An LLM service that answers each context with the next step of its script.

    A step is text (streamed word by word), a :class:`Call`, or a list of them.
    ``seen`` keeps the messages of every context it was asked to answer."""

    def __init__(self, script: Sequence[Step] = (), **kwargs: Any) -> None:
        settings = LLMSettings(
            model="scripted",
            system_instruction=None,
            temperature=None,
            max_tokens=None,
            top_p=None,
            top_k=None,
            frequency_penalty=None,
            presence_penalty=None,
            seed=None,
            filter_incomplete_user_turns=None,
            user_turn_completion_config=None,
        )
        super().__init__(settings=settings, **kwargs)
        self.script = list(script)
        self.seen: list[list[dict[str, Any]]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        self.seen.append(json.loads(json.dumps(frame.context.get_messages(), default=str)))
        step = self.script.pop(0) if self.script else "I have nothing more to say."
        parts = [step] if isinstance(step, (str, Call)) else list(step)
        await self.push_frame(LLMFullResponseStartFrame())
        calls = []
        for part in parts:
            if isinstance(part, Call):
                calls.append(
                    FunctionCallFromLLM(
                        function_name=part.name,
                        tool_call_id=part.call_id,
                        arguments=part.arguments,
                        context=frame.context,
                    )
                )
                continue
            for i, word in enumerate(part.split(" ")):
                await self.push_frame(LLMTextFrame(word if i == 0 else " " + word))
        await self.push_frame(LLMFullResponseEndFrame())
        if calls:
            await self.run_function_calls(calls)


class ScriptedTTS(TTSService):
    """A TTS service that 'speaks' each sentence as silence, ``word_secs`` per word, with word timestamps."""

    def __init__(self, *, word_secs: float = WORD_SECS, **kwargs: Any) -> None:
        self.word_secs = word_secs
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            push_text_frames=False,
            sample_rate=SAMPLE_RATE,
            settings=TTSSettings(model="scripted", voice="scripted", language=None),
            **kwargs,
        )
        self._offset: dict[str, float] = {}

    def can_generate_metrics(self) -> bool:
        return False

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        words = text.split()
        if context_id not in self._offset:
            self._offset[context_id] = 0.0
            await self.start_word_timestamps()  # type: ignore[no-untyped-call]
        start = self._offset[context_id]
        await self.add_word_timestamps([(w, start + i * self.word_secs) for i, w in enumerate(words)], context_id)
        self._offset[context_id] = start + self.word_secs * len(words)
        samples = int(SAMPLE_RATE * self.word_secs * len(words))
        yield TTSAudioRawFrame(audio=b"\0\0" * samples, sample_rate=SAMPLE_RATE, num_channels=1, context_id=context_id)


class PlayoutTransport(BaseOutputTransport):
    """An output transport whose speaker plays audio in real time (and goes nowhere)."""

    def __init__(self) -> None:
        super().__init__(TransportParams(audio_out_enabled=True, audio_out_sample_rate=SAMPLE_RATE))

    async def start(self, frame: Any) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: Any) -> bool:
        await asyncio.sleep(len(frame.audio) / 2 / SAMPLE_RATE)
        return True


async def run_pipeline(
    pipeline: Pipeline, drive: Callable[[PipelineWorker], Awaitable[None]], *, timeout: float = 60.0
) -> None:
    """Run ``pipeline`` while ``drive(worker)`` queues frames into it, then end it with an ``EndFrame``."""
    worker = PipelineWorker(pipeline, cancel_on_idle_timeout=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")  # type: ignore[untyped-decorator]
    async def _started(worker: PipelineWorker, frame: Frame) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)

    async def driver() -> None:
        try:
            await asyncio.wait_for(started.wait(), 5)
            await drive(worker)
        except BaseException:
            await runner.cancel()  # stop the pipeline, so the failure shows instead of a hang
            raise
        await worker.queue_frame(EndFrame())

    await asyncio.wait_for(asyncio.gather(runner.run(), driver()), timeout)
