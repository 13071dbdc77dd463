"""Pipecat's bridged layout: one main pipeline (transport, context, recorder), LLM workers on the bus.

The main pipeline records the whole call, so it must know which worker is
speaking. :class:`VoiceStateBridge` is a ``BusBridgeProcessor`` that, when the
bus activates a worker, pushes an :class:`AgentSwitchFrame` into the pipeline
*in order with the frames around it*: after the frames the previous worker
sent, before the new worker's. It crosses the TTS and the output transport
behind the previous worker's audio, and the recorder after the output moves
the call to the new worker there (``HandedOff`` then ``OwnerChanged``),
holding what it records meanwhile, so each turn is attributed to the worker
that said it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipecat.bus.bridge_processor import BusBridgeProcessor
from pipecat.bus.messages import BusActivateWorkerMessage, BusMessage
from pipecat.frames.frames import ControlFrame


@dataclass
class AgentSwitchFrame(ControlFrame):
    """The worker named ``agent`` is now the one speaking (``source`` activated it)."""

    agent: str
    source: str | None = None
    reason: str | None = None


class VoiceStateBridge(BusBridgeProcessor):
    """A ``BusBridgeProcessor`` that also tells the recorder downstream which worker speaks.

    Use it in place of ``BusBridgeProcessor`` in the main pipeline, with a
    :class:`VoiceStateProcessor` after ``transport.output()``::

        Pipeline([transport.input(), stt, pair.user(), VoiceStateBridge(bus=runner.bus, worker_name="main"),
                  tts, transport.output(), VoiceStateProcessor(session), pair.assistant()])

    ``agents`` limits the switches to those worker names (default: every
    worker the bus activates, except this pipeline's own worker).
    """

    def __init__(self, *, agents: tuple[str, ...] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._agents = agents

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusActivateWorkerMessage):
            target = message.target
            if target and target != self._worker_name and (self._agents is None or target in self._agents):
                await self.push_frame(AgentSwitchFrame(agent=target, source=message.source))
            return
        await super().on_bus_message(message)
