"""``VoiceStateProcessor``: a pass-through ``FrameProcessor`` that records the call."""

from __future__ import annotations

import asyncio
from typing import Any

from pipecat.frames.frames import EndFrame, Frame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

import voicestate as vs

from ._recorder import Recorder, RecordsCall


class VoiceStateProcessor(RecordsCall, FrameProcessor):
    """Records a live pipeline into a voicestate ``Session``; every frame passes on unchanged.

    ``session`` may be ``None`` (a worker waiting to be activated): nothing is
    recorded until one is assigned (``processor.session = ...``, or
    :func:`receive_handoff` with ``recorder=processor``).

    Place it right after ``transport.output()``, before the assistant context
    aggregator (which consumes the spoken text and the function-call frames)::

        Pipeline([transport.input(), stt, pair.user(), llm, tts,
                  transport.output(), VoiceStateProcessor(session), pair.assistant()])

    It runs in direct mode (no queue of its own), so it sees the output
    transport's frames in the order they were pushed, and adds no task hop. It
    never waits for storage on the frame path: events go through
    ``session.record_nowait``. A storage failure is reported as a non-fatal
    ``ErrorFrame`` upstream and through the ``on_storage_error`` event
    (``@processor.event_handler("on_storage_error")``, called with the
    processor and the exception), and the events stay queued until the store
    takes them again.

    ``interim``: record interim transcripts too (the store must keep them:
    ``store_interim=True``). ``tools``: record function calls. ``settle_after``:
    seconds an interrupted turn waits for spoken text the interruption
    overtook (pipecat#4996). ``flush_timeout``: at ``EndFrame``, how long to wait
    for the store to hold everything before letting the frame go on.
    """

    def __init__(
        self,
        session: vs.Session | None,
        *,
        interim: bool = False,
        tools: bool = True,
        settle_after: float = 0.25,
        flush_timeout: float = 5.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("enable_direct_mode", True)
        super().__init__(**kwargs)
        self._recorder = Recorder(
            session, interim=interim, tools=tools, settle_after=settle_after, on_error=self._storage_error
        )
        self.flush_timeout = flush_timeout
        self._surfacing: set[asyncio.Task[None]] = set()
        self._register_event_handler("on_storage_error")

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM:
            self._recorder.on_frame(frame)
            if isinstance(frame, EndFrame):
                await self._flush()
        await self.push_frame(frame, direction)

    async def flush(self) -> None:
        """Wait until the store holds every event recorded so far (raises what the store raises)."""
        await self._recorder.flush(self.flush_timeout)

    async def _flush(self) -> None:
        try:
            await self._recorder.flush(self.flush_timeout)
        except (TimeoutError, vs.VoiceStateError, OSError) as exc:
            self._storage_error(exc)

    def _storage_error(self, exc: BaseException) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._surface(exc))
        self._surfacing.add(task)  # keep a reference until it ran
        task.add_done_callback(self._surfacing.discard)

    async def _surface(self, exc: BaseException) -> None:
        await self._call_event_handler("on_storage_error", exc)
        await self.push_error(
            f"voicestate: recording the call failed; events stay queued until the store takes them: {exc}",
            exception=exc if isinstance(exc, Exception) else None,
        )

    async def cleanup(self) -> None:
        await super().cleanup()  # type: ignore[no-untyped-call]
        await self._recorder.close(self.flush_timeout)

    def __repr__(self) -> str:
        return f"<VoiceStateProcessor {self.session!r}>"
