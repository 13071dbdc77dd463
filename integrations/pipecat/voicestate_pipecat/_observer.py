"""``VoiceStateObserver``: records a pipeline the app cannot edit, from the pushes it observes."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pipecat.frames.frames import InterimTranscriptionFrame, TranscriptionFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_output import BaseOutputTransport

import voicestate as vs

from ._recorder import ErrorHandler, Recorder, RecordsCall

_SEEN = 1024  # transcript frame ids remembered, to count a frame once across its hops


class VoiceStateObserver(RecordsCall, BaseObserver):
    """Records a live pipeline into a voicestate ``Session`` without a place in it.

    Pass it to the worker: ``PipelineWorker(pipeline, observers=[VoiceStateObserver(session)])``.
    It records what a :class:`VoiceStateProcessor` right after the output
    transport would: the frames the output transport pushes downstream (spoken
    text as it plays, the interruption as it reaches the speaker, function
    calls, the bot's speaking state), plus the final transcripts wherever the
    STT pushes them. ``output`` names the processor to watch when the pipeline
    has no ``BaseOutputTransport`` (a text pipeline), else the first output
    transport that pushes a frame is the one. Failures go to ``on_error`` (a
    callable taking the exception) and to ``storage_error``; events stay queued.
    """

    def __init__(
        self,
        session: vs.Session | None,
        *,
        output: FrameProcessor | None = None,
        interim: bool = False,
        tools: bool = True,
        settle_after: float = 0.25,
        on_error: ErrorHandler | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._recorder = Recorder(session, interim=interim, tools=tools, settle_after=settle_after, on_error=on_error)
        self._output = output
        self._seen: OrderedDict[int, None] = OrderedDict()

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if isinstance(frame, (TranscriptionFrame, InterimTranscriptionFrame)):
            seen = self._seen
            if frame.id in seen:
                return
            seen[frame.id] = None
            if len(seen) > _SEEN:
                seen.popitem(last=False)
            self._recorder.on_frame(frame)
            return
        if data.direction is not FrameDirection.DOWNSTREAM:
            return
        output = self._output
        if output is None:
            if not isinstance(data.source, BaseOutputTransport):
                return
            output = self._output = data.source
        if data.source is output:
            self._recorder.on_frame(frame)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until the store holds every event recorded so far (raises what the store raises)."""
        await self._recorder.flush(timeout)

    async def cleanup(self) -> None:
        await super().cleanup()  # type: ignore[no-untyped-call]
        await self._recorder.close()
