"""The recorder's frame logic, fed frames directly in the orders a live pipeline can produce."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kit import ScriptedLLM
from pipecat.frames.frames import (
    AggregatedTextFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMContextUserTurnFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    TranscriptionFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    UserSpeakingFrame,
)
from pipecat.workers.llm import LLMWorker

import voicestate as vs
from voicestate_pipecat import VoiceStateObserver, VoiceStateProcessor, handoff_args, receive_handoff

SAID = "Hello there, how can I help you today?"


def sentence(text: str) -> AggregatedTextFrame:
    frame = AggregatedTextFrame(text, "sentence")
    frame.will_be_spoken, frame.append_to_context = True, False
    return frame


def audio() -> InputAudioRawFrame:
    return InputAudioRawFrame(audio=b"\0\0" * 320, sample_rate=16000, num_channels=1)


def feed(recorder: Any, frames: list[Any]) -> None:
    for frame in frames:
        recorder.recorder.on_frame(frame)


def kinds(store: vs.Store) -> list[str]:
    return [e.TYPE for e in store.events("call-1")]


async def test_spoken_text_the_interruption_overtook_still_counts(store: vs.Store) -> None:
    """pipecat#4996's order: the InterruptionFrame arrives before words that were already played,
    with the caller's audio and speaking frames in between; none of those settle the cut turn."""
    processor = VoiceStateProcessor(await store.aopen("call-1", agent="bot"))
    feed(processor, [LLMFullResponseStartFrame(), sentence("Hello there,"), sentence("how can I help you today?")])
    feed(processor, [TTSTextFrame("Hello", "word"), InterruptionFrame(), audio(), UserSpeakingFrame()])
    feed(processor, [TTSTextFrame("there,", "word"), audio(), TTSTextFrame("how", "word")])
    feed(processor, [BotStoppedSpeakingFrame(), TTSStoppedFrame(), LLMFullResponseEndFrame()])
    await asyncio.sleep(0.35)  # settle_after (0.25 s) passes
    await processor.flush()
    turn = store.load("call-1").turns[-1]
    assert (turn.text, turn.interrupted, turn.heard) == (SAID, True, "Hello there, how")
    assert kinds(store) == ["CallStarted", "AgentSpoke", "Interrupted"]  # no turn made of the late words


async def test_words_after_the_cut_turn_settled_open_no_turn(store: vs.Store) -> None:
    processor = VoiceStateProcessor(await store.aopen("call-1", agent="bot"), settle_after=0)
    feed(processor, [LLMFullResponseStartFrame(), sentence(SAID), TTSTextFrame("Hello", "word"), InterruptionFrame()])
    feed(processor, [TTSTextFrame("there,", "word"), TTSStoppedFrame(), BotStoppedSpeakingFrame()])
    await processor.flush()
    assert kinds(store) == ["CallStarted", "AgentSpoke", "Interrupted"]
    assert store.load("call-1").turns[-1].heard == "Hello"


async def test_a_barge_in_during_the_audio_tail_cuts_the_recorded_turn(store: vs.Store) -> None:
    """The LLM's response ended (the turn is recorded) while its last words still play."""
    processor = VoiceStateProcessor(await store.aopen("call-1", agent="bot"), settle_after=0)
    feed(processor, [BotStartedSpeakingFrame(), LLMFullResponseStartFrame(), sentence(SAID)])
    feed(processor, [*(TTSTextFrame(w, "word") for w in ["Hello", "there,", "how"]), LLMFullResponseEndFrame()])
    feed(processor, [TTSTextFrame("can", "word"), InterruptionFrame()])
    await processor.flush()
    turn = store.load("call-1").turns[-1]
    assert (turn.interrupted, turn.heard) == (True, "Hello there, how can")
    assert turn.heard_ms is not None and turn.heard_ms >= 0


async def test_a_tool_result_that_is_not_json_is_kept_as_text(store: vs.Store) -> None:
    processor = VoiceStateProcessor(await store.aopen("call-1", agent="bot"))
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    feed(processor, [FunctionCallInProgressFrame("f", "t1", {}), FunctionCallResultFrame("f", "t1", {}, {(1, 2): "x"})])
    feed(processor, [FunctionCallInProgressFrame("f", "t2", {}), FunctionCallResultFrame("f", "t2", {}, cyclic)])
    feed(processor, [FunctionCallInProgressFrame("f", "t3", {"when": object()})])  # arguments too
    await processor.flush()
    tools = store.load("call-1").tools
    assert tools["t1"].result == "{(1, 2): 'x'}"
    assert tools["t2"].result == "[[...]]"
    assert tools["t3"].arguments["when"].startswith("<object object")


async def test_the_observer_records_a_user_turn_once(store: vs.Store) -> None:
    """The observer sees the STT's transcript, then (after the bot's turn) the aggregated user turn."""
    observer = VoiceStateObserver(await store.aopen("call-1", agent="bot"))
    feed(observer, [TranscriptionFrame("yes please", "caller", "")])
    feed(observer, [LLMFullResponseStartFrame(), sentence("Great."), LLMFullResponseEndFrame()])
    feed(observer, [LLMContextUserTurnFrame(text="yes please", timestamp="")])
    await observer.flush()
    assert [(t.role, t.text) for t in store.load("call-1").turns] == [("user", "yes please"), ("agent", "Great.")]


async def test_a_handoff_in_this_process_closes_the_senders_turn_into_its_session(store: vs.Store) -> None:
    sales = await store.aopen("call-1", agent="sales")
    processor = VoiceStateProcessor(sales)
    feed(processor, [LLMFullResponseStartFrame(), sentence("Transferring you now.")])
    packet = await sales.ahandoff("technical")
    worker = LLMWorker("technical", llm=ScriptedLLM())
    args = handoff_args(packet, []).to_dict()
    technical = await receive_handoff(worker, args, store, recorder=processor)
    assert technical is not None and processor.session is technical
    feed(
        processor,
        [
            LLMFullResponseEndFrame(),
            LLMFullResponseStartFrame(),
            sentence("Technical here."),
            LLMFullResponseEndFrame(),
        ],
    )
    await processor.flush()
    turns = [(t.agent, t.text) for t in store.load("call-1").turns]
    assert turns == [("sales", "Transferring you now."), ("technical", "Technical here.")]


async def test_an_error_handler_that_raises_never_reaches_the_frames(tmp_path: Any) -> None:
    store = vs.open_store(f"sqlite:///{tmp_path / 'c.db'}?timeout=0.05")
    session = await store.aopen("call-1", agent="bot")

    def broken(exc: BaseException) -> None:
        raise RuntimeError("handler bug")

    observer = VoiceStateObserver(session, on_error=broken)
    store.close()  # the store goes away: every write fails
    feed(observer, [LLMFullResponseStartFrame(), sentence("Hi."), LLMFullResponseEndFrame()])
    await asyncio.sleep(0.2)
    assert isinstance(observer.storage_error, vs.BackendUnavailable)
    assert [t.text for t in session.state.turns] == ["Hi."]  # applied locally, still queued


def voiced(frame: Any, context_id: str) -> Any:
    frame.context_id = context_id
    return frame


async def test_a_late_sentence_of_the_cut_turn_is_not_a_new_turn(store: vs.Store) -> None:
    """A sentence the TTS announced for the cut turn (same TTS context) after the interruption."""
    processor = VoiceStateProcessor(await store.aopen("call-1", agent="bot"), settle_after=5)
    feed(processor, [LLMFullResponseStartFrame(), voiced(sentence("First one."), "ctx-1")])
    feed(processor, [voiced(TTSTextFrame("First", "word"), "ctx-1"), InterruptionFrame()])
    feed(processor, [voiced(sentence("Second one."), "ctx-1"), LLMFullResponseEndFrame()])
    # A new response (another TTS context) settles the cut turn.
    feed(
        processor, [LLMFullResponseStartFrame(), voiced(sentence("Sorry, go on."), "ctx-2"), LLMFullResponseEndFrame()]
    )
    await processor.flush()
    turns = [(t.text, t.interrupted, t.heard) for t in store.load("call-1").turns]
    assert turns == [("First one. Second one.", True, "First"), ("Sorry, go on.", False, None)]


async def test_flush_raises_when_a_late_tool_result_did_not_land(sqlite_url: str) -> None:
    store = vs.open_store(sqlite_url)
    session = await store.aopen("call-1", agent="bot")
    processor = VoiceStateProcessor(session)
    packet = await session.ahandoff("billing")
    await store.aresume(packet, agent="billing")
    await session.arefresh()  # the session learns it was fenced
    assert session.fenced
    store.close()  # the store is gone when the old pipeline's late tool result comes in
    feed(processor, [FunctionCallResultFrame("f", "t1", {}, {"ok": True})])
    with pytest.raises(vs.BackendUnavailable):
        await processor.flush()
    assert isinstance(processor.storage_error, vs.BackendUnavailable)


async def test_a_tool_call_recorded_before_its_frame_is_not_recorded_again(store: vs.Store) -> None:
    """What hand_off(params=) does when the call's frame is still queued behind audio."""
    session = await store.aopen("call-1", agent="bot")
    processor = VoiceStateProcessor(session)
    feed(processor, [LLMFullResponseStartFrame(), sentence("Let me transfer you.")])
    session.record_nowait(vs.ToolCalled("t1", "transfer", {"to": "billing"}))  # hand_off's fallback
    feed(processor, [FunctionCallInProgressFrame("transfer", "t1", {"to": "billing"}), LLMFullResponseEndFrame()])
    await processor.flush()
    assert kinds(store) == ["CallStarted", "ToolCalled", "AgentSpoke"]
