"""Pipecat's real classes, scripted so a pipeline runs offline (the demo's own, from
``voicestate_pipecat._scripted``): an LLM service that streams text and function calls
from a script, a TTS service that times each word, and an output transport that plays
audio in real time (so spoken text is released as it plays)."""

from __future__ import annotations

from voicestate_pipecat._scripted import SAMPLE_RATE, WORD_SECS, Call, PlayoutTransport, ScriptedLLM, ScriptedTTS

__all__ = ["SAMPLE_RATE", "WORD_SECS", "Call", "PlayoutTransport", "ScriptedLLM", "ScriptedTTS"]
