"""Test helpers: a deterministic embedder, a scripted CrewAI LLM that remembers its input."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import textwrap
from typing import Any

from crewai import BaseLLM
from pydantic import Field

DIM = 16


def embed(texts: list[str]) -> list[list[float]]:
    """A deterministic embedding: the sum of a pseudo-random vector per word, normalized (texts
    sharing words are near; no two texts tie by accident)."""
    out = []
    for text in texts:
        v = [0.0] * DIM
        for word in text.lower().split():
            h = hashlib.blake2b(word.strip(".,:;!?").encode(), digest_size=DIM).digest()
            v = [x + (b / 127.5 - 1.0) for x, b in zip(v, h, strict=True)]
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        out.append([x / norm for x in v])
    return out


class ScriptedLLM(BaseLLM):
    """Answers an agent's task with the next scripted answer (and Memory's own analysis with an
    empty JSON object); ``seen`` holds each call's messages."""

    answers: list[str] = Field(default_factory=list)
    seen: list[Any] = Field(default_factory=list)

    def call(self, messages: Any, tools: Any = None, callbacks: Any = None, available_functions: Any = None,
             from_task: Any = None, from_agent: Any = None, response_model: Any = None) -> str:  # fmt: skip
        self.seen.append(messages)
        if "Final Answer" not in str(messages):  # Memory's own analysis (recall, save): nothing to add
            return "{}"
        return self.answers.pop(0) if self.answers else "Final Answer: done"

    def supports_function_calling(self) -> bool:
        return False


def run_child(code: str, expect: str) -> str:
    """Run ``code`` in another OS process; assert it exits 0 and prints ``expect``."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert expect in done.stdout, done.stdout + done.stderr[-3000:]
    return done.stdout
