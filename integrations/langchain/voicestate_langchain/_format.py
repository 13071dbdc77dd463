"""The ``"langchain"`` context format: LangChain messages (``list[BaseMessage]``), both directions.

LangChain's messages map one to one onto OpenAI chat messages, so the
rendering is the core's ``"openai"`` format (the same policy: the agent's own
system prompt, the handoff summary and facts, heard-only interrupted turns
with a system note after them, a pending tool call answered by a "still
running" tool message, other agents' turns named) turned into
``SystemMessage``, ``HumanMessage``, ``AIMessage`` (``tool_calls``, ``name``) and
``ToolMessage`` by LangChain's own converter. Parsing goes back through
LangChain's converter to OpenAI messages and the core's parser, so
``parse_context("langchain", msgs)`` then ``context("langchain")`` gives back
equal messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, convert_to_openai_messages
from langchain_core.messages.utils import convert_to_messages

import voicestate as vs


def render(state: vs.CallState, policy: vs.ContextPolicy) -> list[BaseMessage]:
    return convert_to_messages(state.context("openai", policy))


def parse(messages: Any) -> list[vs.Event]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise vs.InvalidArgument(
            f"the 'langchain' format parses a list of LangChain messages, not {type(messages).__name__}"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, BaseMessage):
            raise vs.InvalidArgument(
                f"message {i} is a {type(m).__name__}, not a LangChain BaseMessage "
                "(HumanMessage, AIMessage, ToolMessage, SystemMessage)"
            )
    plain = convert_to_openai_messages(list(messages))
    return vs.parse_context("openai", plain)
