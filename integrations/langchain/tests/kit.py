"""Test helpers: a scripted chat model (LangChain's GenericFakeChatModel, remembering its inputs and
accepting tools) and a triage agent that runs in another OS process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

CALLER_FIRST = "I was charged twice on my March invoice"
SPOKEN = "Let me pull up your account and check the March invoice for you"
HEARD = "Let me pull up your account"
CALLER_SECOND = "It's account A-77, please just transfer me"


class ScriptedChatModel(GenericFakeChatModel):
    """Replies with the scripted messages in order; ``seen`` holds each call's input messages."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        return self  # the script already says which tool to call


def scripted(*replies: AIMessage) -> ScriptedChatModel:
    it: Iterator[AIMessage] = iter(replies)
    return ScriptedChatModel(messages=it)


def texts(messages: Sequence[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages)


TRIAGE = """
import voicestate as vs
store = vs.open_store({url!r})
with store.open({call_id!r}, agent="triage", meta={{"channel": "sip"}}) as s:
    s.record(vs.UserSpoke({first!r}))
    s.record(vs.AgentSpoke({spoken!r}))
    s.record(vs.Interrupted(None, heard={heard!r}, heard_ms=1400))
    s.record(vs.UserSpoke({second!r}))
    s.handoff(to={to!r}, reason="billing dispute")
store.close()
print("handed off")
"""


def run_triage(url: str, call_id: str, *, to: str = "billing") -> None:
    """A triage agent in another OS process: the caller speaks, barges in, and is handed to ``to``."""
    code = TRIAGE.format(
        url=url, call_id=call_id, first=CALLER_FIRST, spoken=SPOKEN, heard=HEARD, second=CALLER_SECOND, to=to
    )
    run_child(code, "handed off")


def run_child(code: str, expect: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout, done.stdout + done.stderr
    return done.stdout
