"""Frames in, voicestate events out: what the processor and the observer share.

The recorder sees the frames that leave the output transport (or, for the
observer, every frame pushed anywhere, counted once) and keeps a small ledger
per assistant turn:

- the text the turn *generated*: the sentences the TTS announced
  (``AggregatedTextFrame``), else the LLM's tokens (``LLMTextFrame``) when no
  TTS sits in between;
- the text the caller *heard*: the words the output transport released as
  their audio played (``TTSTextFrame``), or, better, the per-sentence
  ``accumulated_text`` of ``AggregatedTextProgressFrame``;
- how long the bot's audio has played in this turn (between
  ``BotStartedSpeakingFrame`` and ``BotStoppedSpeakingFrame``), the
  ``heard_ms`` of an interruption.

A turn is recorded as ``AgentSpoke`` when the LLM's response ends; an
``InterruptionFrame`` while it is open, or while its audio is still playing,
records ``Interrupted`` with the heard prefix. Spoken text that arrives *after*
the ``InterruptionFrame`` for the interrupted turn (pipecat#4996: the system
frame overtakes text frames queued behind it) is still counted, and so is a
sentence announced late in the cut turn's TTS context: the interruption is
written once the turn is settled, at the next frame that starts something new
(``_NEW``, outside the cut turn's TTS contexts) or ``settle_after`` seconds
later, whichever comes first.

Every write is ``record_nowait``: applied to the session at once, made durable
in the background. Nothing here awaits storage; a keeper task flushes after each
burst and reports failures (``on_error``), retrying until the store takes the
events again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import weakref
from collections.abc import Callable
from typing import Any

import attrs
from pipecat.frames.frames import (
    AggregatedTextFrame,
    AggregatedTextProgressFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMContextUserTurnFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)

import voicestate as vs

from ._bridge import AgentSwitchFrame

log = logging.getLogger("voicestate.pipecat")

ErrorHandler = Callable[[BaseException], Any]
_WORD = re.compile(r"\w+")
_SETTLE_AFTER = 0.25  # seconds a cut turn waits for spoken text that the interruption overtook
# Frames that start something new: once one arrives, a cut turn's late spoken text is all in.
# Anything else (audio, the caller's speaking state, the TTS's own stop) may still come
# between an interruption and the spoken text it overtook.
_NEW = (
    LLMFullResponseStartFrame,
    TTSStartedFrame,
    AggregatedTextFrame,  # a new sentence announced (TTSTextFrame, a subclass, is excluded below)
    LLMTextFrame,
    TranscriptionFrame,
    LLMContextUserTurnFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    FunctionCallCancelFrame,
    EndFrame,
    CancelFrame,
)


def _norm(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _prefix_of(text: str, heard: str) -> str:
    """``heard`` if it is a prefix of ``text`` (ignoring case, spaces, punctuation), else the
    prefix of ``text`` with as many words as ``heard`` matched (a TTS may respell words)."""
    words, said = _norm(text), _norm(heard)
    n = 0
    while n < len(said) and n < len(words) and words[n] == said[n]:
        n += 1
    if n == len(said):
        return heard
    if n == 0:
        return ""
    # Cut ``text`` after its n-th word.
    for count, m in enumerate(_WORD.finditer(text), 1):
        if count == n:
            return text[: m.end()]
    return text  # pragma: no cover - n <= the number of words


def _jsonable(value: Any) -> Any:
    """``value`` if it is JSON, else its JSON reading with unknown objects as strings, else its repr."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        pass
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):  # keys that are not strings, a cycle
        return repr(value)


class _Turn:
    """The ledger of one assistant turn."""

    __slots__ = ("contexts", "event_id", "generated", "llm", "progress", "recorded_text", "spoken", "tokens", "tts")

    def __init__(self) -> None:
        self.generated: list[str] = []  # announced sentences
        self.tokens: list[str] = []  # LLM tokens (no TTS in between)
        self.spoken: list[str] = []  # TTSTextFrame words, as released by the output transport
        self.progress: dict[int, str] = {}  # sentence id -> accumulated_text, in first-seen order
        self.tts = False  # a TTS produced this turn: heard text comes from spoken frames only
        self.llm = False  # an LLM response (it ends with LLMFullResponseEndFrame), not direct speech
        self.contexts: set[str] = set()  # the TTS context ids of its sentences and words
        self.event_id: str | None = None  # the AgentSpoke, once recorded
        self.recorded_text = ""

    def text(self) -> str:
        if self.generated:
            return " ".join(s.strip() for s in self.generated if s.strip())
        return "".join(self.tokens).strip()

    def heard(self) -> str:
        if self.progress:
            return " ".join(t.strip() for t in self.progress.values() if t.strip())
        if self.spoken or self.tts:
            return " ".join(w.strip() for w in self.spoken if w.strip())
        return self.text()  # no TTS: the text went out as it was generated


class Recorder:
    """Turns frames into events on ``session``; one per pipeline (the processor's or the observer's)."""

    def __init__(
        self,
        session: vs.Session | None,
        *,
        interim: bool = False,
        tools: bool = True,
        settle_after: float = _SETTLE_AFTER,
        on_error: ErrorHandler | None = None,
    ) -> None:
        if session is not None and not isinstance(session, vs.Session):
            raise vs.ConfigError(
                f"record into a voicestate Session (store.open(...) or store.resume(...)), not {type(session).__name__}"
            )
        if interim and session is not None and not session.store.config.store_interim:
            raise vs.ConfigError(
                "interim=True records interim transcripts, which this store drops: "
                "open it with vs.open_store(..., store_interim=True)"
            )
        if settle_after < 0:
            raise vs.ConfigError(f"settle_after is seconds >= 0, not {settle_after!r}")
        self._session = session
        self.interim = interim
        self.tools = tools
        self.settle_after = settle_after
        self._on_error = on_error
        self._dispatch: dict[type, tuple[Callable[[Any], None] | None, bool]] = {}  # handler, starts new
        self._turn: _Turn | None = None  # the open turn (its response has not ended)
        self._playing: _Turn | None = None  # a recorded turn whose audio may still play
        self._cut: tuple[_Turn, int | None] | None = None  # interrupted, waiting to settle
        self._speaking_since: int | None = None  # ns, while the bot speaks
        self._spoken_ns = 0  # audio played in the current turn, before _speaking_since
        self._transcribed = False  # a final transcript was recorded since the last user turn
        self._dirty: asyncio.Event | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._fenced_logged = False
        self.error: BaseException | None = None
        """The last storage failure, until the store takes the events again (then ``None``)."""
        self.outside: list[asyncio.Task[int]] = []  # tool results written as a non-owner, in flight
        # session -> how much of its ``discarded`` was looked at (weak: sessions come and go)
        self._rescued: weakref.WeakKeyDictionary[vs.Session, int] = weakref.WeakKeyDictionary()
        self._retiring: set[asyncio.Task[None]] = set()  # earlier sessions, draining
        self._switches: list[AgentSwitchFrame] = []  # workers the bridge activated, not yet owners
        self._held: list[tuple[vs.Event, bool]] | None = None  # recorded while the call moves
        self._switcher: asyncio.Task[None] | None = None

    # -- the session ------------------------------------------------------------------

    @property
    def session(self) -> vs.Session | None:
        return self._session

    @session.setter
    def session(self, session: vs.Session | None) -> None:
        """Record into another session from now on (the call moved to another agent in this process)."""
        if session is not None and not isinstance(session, vs.Session):
            raise vs.ConfigError(f"a voicestate Session, not {type(session).__name__}")
        if session is not None and self.interim and not session.store.config.store_interim:
            raise vs.ConfigError("interim=True needs a store opened with store_interim=True")
        old = self._session
        if session is old:
            return
        # What the old agent said is the old agent's: close its turns into its own session,
        # then let that session drain (and rescue its late tool results) in the background.
        self.close_turn()
        if old is not None:
            self._retire(old)
        self._session = session
        self._fenced_logged = False

    def close_turn(self) -> None:
        """Record the turn in progress now (and settle a cut one), into the current session."""
        self._settle()
        turn, self._turn, self._playing = self._turn, None, None
        if turn is not None and turn.event_id is None:
            self._record_turn(turn)

    # -- the frame path: synchronous, no I/O --------------------------------------------

    def on_frame(self, frame: Frame) -> None:
        cls = frame.__class__
        try:
            handler, new = self._dispatch[cls]
        except KeyError:
            handler = self._handler_for(cls)
            new = issubclass(cls, _NEW) and not issubclass(cls, TTSTextFrame)
            self._dispatch[cls] = (handler, new)
        if handler is None:
            return
        try:
            if new and self._cut is not None and not self._of_cut_turn(frame):
                self._settle()  # something new starts: the cut turn's spoken text is all in
            handler(frame)
        except Exception:  # never into Pipecat: the frame goes on
            log.exception("voicestate: recording a %s failed; the frame goes on", cls.__name__)

    def _handler_for(self, cls: type) -> Callable[[Any], None] | None:
        # Most specific first: TTSTextFrame is an AggregatedTextFrame, TranscriptionFrame a TextFrame.
        table: list[tuple[type, Callable[[Any], None]]] = [
            (TTSTextFrame, self._spoken_text),
            (AggregatedTextProgressFrame, self._progress),
            (AggregatedTextFrame, self._announced),
            (LLMTextFrame, self._token),
            (LLMFullResponseStartFrame, self._response_start),
            (LLMFullResponseEndFrame, self._response_end),
            (TTSStartedFrame, self._tts_started),
            (TTSStoppedFrame, self._tts_stopped),
            (BotStartedSpeakingFrame, self._bot_started),
            (BotStoppedSpeakingFrame, self._bot_stopped),
            (InterruptionFrame, self._interruption),
            (InterimTranscriptionFrame, self._interim),
            (TranscriptionFrame, self._transcription),
            (LLMContextUserTurnFrame, self._user_turn),
            (FunctionCallInProgressFrame, self._tool_started),
            (FunctionCallResultFrame, self._tool_result),
            (FunctionCallCancelFrame, self._tool_cancelled),
            (EndFrame, self._end),
            (CancelFrame, self._end),
            (AgentSwitchFrame, self._switch),
        ]
        for base, handler in table:
            if issubclass(cls, base):
                return handler
        return None

    def _open(self) -> _Turn:
        turn = self._turn
        if turn is None:
            turn = self._turn = _Turn()
            self._spoken_ns = 0
            if self._speaking_since is not None:
                self._speaking_since = time.monotonic_ns()
        return turn

    def _of_cut_turn(self, frame: Frame) -> bool:
        """A late sentence or TTS start of the cut turn itself (same TTS context), not something new."""
        cut = self._cut
        context_id = getattr(frame, "context_id", None)
        return cut is not None and context_id is not None and context_id in cut[0].contexts

    def _speaking_turn(self) -> _Turn | None:
        # Spoken text belongs to the cut turn while it settles, else to the open turn or the
        # one whose audio still plays; with none of them it is the tail of a turn already
        # written (its interruption settled), and opens nothing.
        cut = self._cut
        return cut[0] if cut is not None else self._turn or self._playing

    def _spoken_text(self, frame: TTSTextFrame) -> None:
        turn = self._speaking_turn()
        if turn is not None:
            turn.tts = True
            turn.spoken.append(frame.text)
            if frame.context_id is not None:
                turn.contexts.add(frame.context_id)

    def _progress(self, frame: AggregatedTextProgressFrame) -> None:
        turn = self._speaking_turn()
        if turn is not None:
            turn.tts = True
            turn.progress[frame.segment_id] = frame.accumulated_text

    def _announced(self, frame: AggregatedTextFrame) -> None:
        if frame.skip_tts:
            return  # text the bot shows but does not say
        turn = self._cut[0] if self._cut is not None else self._open()  # a late sentence of the cut turn
        turn.tts = True
        turn.generated.append(frame.text)
        if frame.context_id is not None:
            turn.contexts.add(frame.context_id)

    def _token(self, frame: LLMTextFrame) -> None:
        if frame.skip_tts:
            return
        turn = self._open()
        turn.llm = True
        turn.tokens.append(frame.text)

    def _response_start(self, frame: Frame) -> None:
        self._open().llm = True

    def _tts_started(self, frame: TTSStartedFrame) -> None:
        turn = self._cut[0] if self._cut is not None else self._open()
        turn.tts = True
        if frame.context_id is not None:
            turn.contexts.add(frame.context_id)

    def _tts_stopped(self, frame: Frame) -> None:
        turn = self._turn
        if turn is None:
            self._playing = None
        elif not turn.llm:  # direct speech (TTSSpeakFrame): its audio is done, so is the turn
            self._turn = None
            self._record_turn(turn)

    def _response_end(self, frame: Frame) -> None:
        turn = self._turn
        if turn is None:
            return
        self._turn = None
        self._record_turn(turn)
        if turn.event_id is not None and self._speaking_since is not None:
            self._playing = turn  # its audio may still be playing: a barge-in now still cuts it

    def _bot_started(self, frame: Frame) -> None:
        self._speaking_since = time.monotonic_ns()

    def _bot_stopped(self, frame: Frame) -> None:
        since = self._speaking_since
        if since is not None:
            self._spoken_ns += time.monotonic_ns() - since
            self._speaking_since = None
        if self._turn is None:
            self._playing = None

    def _played_ms(self) -> int | None:
        ns = self._spoken_ns
        if self._speaking_since is not None:
            ns += time.monotonic_ns() - self._speaking_since
        return ns // 1_000_000 if ns else None

    def _interruption(self, frame: Frame) -> None:
        turn = self._turn or self._playing
        self._turn = self._playing = None
        if turn is None:
            return
        self._cut = (turn, self._played_ms())
        if self.settle_after == 0:
            self._settle()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._settle()
            return
        self._timer = loop.call_later(self.settle_after, self._settle_later)

    def _settle_later(self) -> None:
        try:
            self._settle()
        except Exception:  # on the loop, not the frame path: log it, lose nothing else
            log.exception("voicestate: recording an interruption failed")

    def _settle(self) -> None:
        """Write the interrupted turn (and what the caller heard of it), once its late text is in."""
        cut = self._cut
        if cut is None:
            return
        self._cut = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        turn, heard_ms = cut
        if turn.event_id is None:
            self._record_turn(turn)
        if turn.event_id is None:
            return
        heard = _prefix_of(turn.recorded_text, turn.heard())
        self._record(vs.Interrupted(turn=turn.event_id, heard=heard, heard_ms=heard_ms))

    def _record_turn(self, turn: _Turn) -> None:
        text = turn.text()
        if not text and turn.heard():
            text = turn.heard()  # spoken frames with no announced sentence (a TTS that pushes words only)
        if not text:
            return
        ev = vs.AgentSpoke(text)
        if self._record(ev):
            turn.event_id = ev.id
            turn.recorded_text = text

    def _interim(self, frame: InterimTranscriptionFrame) -> None:
        if self.interim and frame.text.strip():
            self._record(vs.UserSpoke(frame.text, final=False, language=_language(frame.language)))

    def _transcription(self, frame: TranscriptionFrame) -> None:
        if frame.text.strip():
            self._transcribed = True
            self._record(vs.UserSpoke(frame.text, language=_language(frame.language)))

    def _user_turn(self, frame: LLMContextUserTurnFrame) -> None:
        # The aggregated user turn, where the transcripts themselves were not seen (a
        # processor after the user aggregator, which consumes them).
        if self._transcribed:
            self._transcribed = False
            return
        if frame.text.strip():
            self._record(vs.UserSpoke(frame.text))

    def _tool_started(self, frame: FunctionCallInProgressFrame) -> None:
        if not self.tools:
            return
        turn = self._turn
        if turn is not None and turn.text():
            # What the LLM said before calling the tool is a turn of its own, before the call.
            self._turn = None
            self._record_turn(turn)
        session = self._session
        if session is not None and frame.tool_call_id in session.state.tools:
            return  # already recorded (hand_off records the call that asked for it, if its frame is late)
        self._record(vs.ToolCalled(frame.tool_call_id, frame.function_name, _jsonable(dict(frame.arguments or {}))))

    def _tool_result(self, frame: FunctionCallResultFrame) -> None:
        if self.tools:
            error = getattr(frame, "error", None)
            self._record(
                vs.ToolReturned(frame.tool_call_id, _jsonable(frame.result), str(error) if error else None),
                outside=True,
            )

    def _tool_cancelled(self, frame: FunctionCallCancelFrame) -> None:
        if self.tools:
            self._record(vs.ToolCancelled(frame.tool_call_id, reason="cancelled in the Pipecat pipeline"), outside=True)

    def _switch(self, frame: AgentSwitchFrame) -> None:
        """Another worker speaks from here on (the bridged layout): move the call to it."""
        session = self._session
        last = self._switches[-1].agent if self._switches else (session.agent if session is not None else None)
        if session is None or frame.agent == last:
            return
        self.close_turn()  # what was said so far is the previous worker's
        self._switches.append(frame)
        if self._held is None:
            self._held = []
        if self._switcher is None or self._switcher.done():
            self._switcher = asyncio.get_running_loop().create_task(self._move())

    async def _move(self) -> None:
        """Hand the call to each activated worker in turn, then write what was held, as the new owner's."""
        while self._switches:
            frame = self._switches[0]
            old = self._session
            assert old is not None
            new: vs.Session | None = None
            try:
                reason = f"{frame.source or 'the bus'} activated {frame.agent}"
                packet = await old.ahandoff(frame.agent, reason=reason)
                new = await old.store.aresume(packet, agent=frame.agent)
            except Exception as exc:  # the call stays with the previous worker
                self._report(exc)
            self._switches.pop(0)
            if new is not None:
                self._retire(old)
                self._session = new
                self._fenced_logged = False
        held, self._held = self._held or [], None
        for ev, outside in held:
            self._record(ev, outside=outside)

    def _end(self, frame: Frame) -> None:
        self._settle()
        turn, self._turn, self._playing = self._turn, None, None
        if turn is not None:
            self._record_turn(turn)

    # -- writing -------------------------------------------------------------------------

    def _record(self, ev: vs.Event, *, outside: bool = False) -> bool:
        if self._held is not None:  # the call is moving to another worker: these are the new one's
            self._held.append((ev, outside))
            return True
        session = self._session
        if session is None:
            return False  # no call yet (a worker waiting to be activated)
        if session.fenced:
            if outside:  # a tool result still counts when the call has moved on: anyone may append it
                self._append_outside(ev)
            elif not self._fenced_logged:
                self._fenced_logged = True
                log.warning("voicestate: %r no longer owns call %r; not recording", session.agent, session.call_id)
            return False
        try:
            session.record_nowait(ev)
        except vs.FencedError:
            if outside:
                self._append_outside(ev)
            return False
        except vs.VoiceStateError as exc:  # refused as invalid: say so, never stop the frames
            log.warning("voicestate: call %r: %s was not recorded: %s", session.call_id, ev.TYPE, exc)
            return False
        self._kick()
        return True

    def _retire(self, old: vs.Session) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: record_nowait wrote synchronously
        task = loop.create_task(self._drain(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _drain(self, session: vs.Session, patience: float = 30.0) -> None:
        """Make a session this recorder no longer writes to durable, retrying for ``patience`` seconds."""
        deadline = time.monotonic() + patience
        delay = 0.05
        while True:
            try:
                await session.aflush()
                break
            except vs.FencedError:
                break
            except Exception as exc:
                self._report(exc)
                if time.monotonic() >= deadline:
                    raise  # flush() says so: this session's events are not all stored
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        if session.fenced:
            self._rescue(session)

    def _rescue(self, session: vs.Session) -> None:
        """Tool results the fenced session dropped (``discarded``) still count: anyone may append them."""
        start = self._rescued.get(session, 0)
        dropped = session.discarded[start:]
        self._rescued[session] = start + len(dropped)
        for ev in dropped:
            if isinstance(ev, (vs.ToolReturned, vs.ToolCancelled)):
                self._append_outside(ev, session)

    def _append_outside(self, ev: vs.Event, session: vs.Session | None = None) -> None:
        session = session or self._session
        assert session is not None
        if ev.agent is None:  # say who sent it: the store takes it from anyone
            ev = attrs.evolve(ev, agent=session.agent)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            session.store.append(session.call_id, ev)
            return
        task = loop.create_task(session.store.aappend(session.call_id, ev))
        self.outside.append(task)
        task.add_done_callback(self._outside_done)

    def _outside_done(self, task: asyncio.Task[int]) -> None:
        self.outside.remove(task)
        if not task.cancelled() and task.exception() is not None:
            self._report(task.exception())  # type: ignore[arg-type]

    def _kick(self) -> None:
        if self._dirty is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return  # recorded synchronously by record_nowait
            self._dirty = asyncio.Event()
        self._dirty.set()
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        """Flush after each burst of events; on a failure, report it and retry with backoff."""
        assert self._dirty is not None
        delay = 0.05
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            session = self._session
            if session is None:
                continue
            try:
                await session.aflush()
            except vs.FencedError:
                pass  # the queue went to session.discarded; owner writes stop by themselves
            except Exception as exc:
                self._report(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                self._dirty.set()  # the events stay queued in the session: try again
                continue
            if session.fenced:
                self._rescue(session)
                continue
            delay = 0.05
            if self.error is not None:
                log.info("voicestate: the store takes call %r's events again", session.call_id)
                self.error = None

    def _report(self, exc: BaseException) -> None:
        first = self.error is None
        self.error = exc
        if first:
            call = self._session.call_id if self._session is not None else None
            log.warning("voicestate: recording call %r failed (frames keep flowing): %s", call, exc)
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                log.exception("voicestate: the on_error handler failed")

    async def flush(self, timeout: float | None = None) -> None:
        """Write any settled turn and wait until the store holds every event recorded so far."""
        await asyncio.wait_for(self._flush(), timeout)

    async def _flush(self) -> None:
        self._settle()
        if self._switcher is not None:
            await asyncio.shield(self._switcher)
        failures: list[BaseException] = []
        while self._retiring or self.outside:  # a drain may start more (rescued tool results)
            pending = [*self._retiring, *self.outside]
            done = await asyncio.gather(*(asyncio.shield(t) for t in pending), return_exceptions=True)
            failures += [r for r in done if isinstance(r, BaseException)]
        if self._session is not None:
            await self._session.aflush()
        if failures:
            raise failures[0]  # an earlier session's events or a late tool result did not land
        self.error = None

    async def close(self, timeout: float = 5.0) -> None:
        """Best effort, at the pipeline's teardown: flush for up to ``timeout`` seconds, then stop."""
        try:
            await self.flush(timeout)
        except Exception as exc:  # reported; the events stay in the session for the app to flush
            self._report(exc)
        if self._keeper is not None and not self._keeper.done():
            self._keeper.cancel()
            try:
                await self._keeper
            except asyncio.CancelledError:
                pass
        self._keeper = None


class RecordsCall:
    """What the processor and the observer expose of their recorder."""

    _recorder: Recorder

    @property
    def session(self) -> vs.Session | None:
        """The session recorded into; assign another one when the call moves to a new agent here."""
        return self._recorder.session

    @session.setter
    def session(self, session: vs.Session | None) -> None:
        self._recorder.session = session

    @property
    def recorder(self) -> Recorder:
        return self._recorder

    @property
    def storage_error(self) -> BaseException | None:
        """The last storage failure, ``None`` once the store has taken every event again."""
        return self._recorder.error


def _language(language: Any) -> str | None:
    if language is None:
        return None
    return str(getattr(language, "value", language))
