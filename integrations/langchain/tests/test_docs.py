"""docs/integrations/langchain.md runs as written: each runnable example (a python block whose next
fenced block is a text block, the convention of docs/patterns.md) alone, in a fresh interpreter,
printing exactly the text block that follows it. Other python blocks are fragments."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "integrations" / "langchain.md"


def _examples() -> list[tuple[str, str, str]]:
    """(section title, code, expected output) for each python block followed by a text block."""
    out = []
    for section in re.split(r"^##+ ", PAGE.read_text(), flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        blocks = re.findall(r"^```(\w*)\n(.*?)^```", section, re.S | re.M)
        for i, (lang, code) in enumerate(blocks):
            nxt = blocks[i + 1] if i + 1 < len(blocks) else ("", "")
            if lang == "python" and nxt[0] == "text":
                out.append((title, code, nxt[1]))
    return out


EXAMPLES = _examples()


def test_the_page_has_its_runnable_example() -> None:
    assert [t for t, _, _ in EXAMPLES] == ["A runnable example"]


@pytest.mark.parametrize(("title", "code", "expected"), EXAMPLES, ids=[t for t, _, _ in EXAMPLES])
def test_example_runs_and_prints_what_the_page_shows(title: str, code: str, expected: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICESTATE_")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"{title!r} failed:\n{out.stderr}"
    printed = [line.rstrip() for line in out.stdout.splitlines()]
    assert printed == expected.splitlines(), f"{title!r} printed:\n{out.stdout}\nthe page shows:\n{expected}"
    assert list(tmp_path.iterdir()) == [], f"{title!r} left files in the current directory"


def test_the_page_uses_public_names_only() -> None:
    text = PAGE.read_text()
    assert not re.search(r"voicestate(_langchain)?\._", text), "the page imports a private module"
    import voicestate_langchain

    missing = [name for name in voicestate_langchain.__all__ if name not in text]
    assert not missing, f"public names missing from the page: {missing}"


def test_the_page_is_in_the_site() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^\s+- LangChain: integrations/langchain\.md$", config, re.M), config
