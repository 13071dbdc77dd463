"""docs/patterns.md runs as written: each python block alone, in a fresh interpreter, printing
exactly the text block that follows it (trailing spaces aside)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGE = DOCS / "patterns.md"


def _examples() -> list[tuple[str, str, str]]:
    """(section title, code, expected output) for each example: a python block whose next
    fenced block is a text block (what it prints)."""
    text = PAGE.read_text()
    out = []
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        blocks = re.findall(r"^```(\w*)\n(.*?)^```", section, re.S | re.M)
        for (lang, code), nxt in zip(blocks, [*blocks[1:], ("", "")], strict=True):
            if lang == "python":
                assert nxt[0] == "text", f"{title!r}: a python block must be followed by its output (a text block)"
                out.append((title, code, nxt[1]))
    return out


EXAMPLES = _examples()


def test_the_page_has_its_examples() -> None:
    titles = [t for t, _, _ in EXAMPLES]
    assert titles == [
        "Waiting for the receiver",
        "A late tool result after a handoff",
        "A hang-up from telephony",
        "Crash recovery with leases",
        "A supervisor following a call",
    ]
    for title, code, _ in EXAMPLES:
        lines = [line for line in code.splitlines() if line.strip()]
        assert len(lines) <= 40, f"{title!r}: keep an example short ({len(lines)} lines)"


@pytest.mark.parametrize(("title", "code", "expected"), EXAMPLES, ids=[t for t, _, _ in EXAMPLES])
def test_example_runs_and_prints_what_the_page_shows(title: str, code: str, expected: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICESTATE_")}
    env["PYTHONWARNINGS"] = "error"  # nothing left unawaited, no stray task or resource
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"{title!r} failed:\n{out.stderr}"
    assert out.stderr == "", f"{title!r} wrote to stderr:\n{out.stderr}"
    printed = [line.rstrip() for line in out.stdout.splitlines()]  # a page keeps no trailing spaces
    assert printed == expected.splitlines(), f"{title!r} printed:\n{out.stdout}\nthe page shows:\n{expected}"
    assert list(tmp_path.iterdir()) == [], f"{title!r} left files in the current directory"


def test_the_page_is_in_the_site() -> None:
    config = (DOCS.parent / "mkdocs.yml").read_text()
    assert re.search(r"^\s+- Patterns: patterns\.md$", config, re.M), config
    assert "(patterns.md)" in (DOCS / "index.md").read_text()
