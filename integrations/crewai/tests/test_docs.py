"""docs/integrations/crewai.md runs as written: each runnable example (a python block whose next fenced
block is a text block) alone, in a fresh interpreter, printing exactly the text block that follows it
(voicestate.testing.docs_examples). Other python blocks are fragments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import voicestate_crewai
from voicestate.testing.docs_examples import check_public_names, run_example, runnable_examples

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "integrations" / "crewai.md"
EXAMPLES = runnable_examples(PAGE)


def test_the_page_has_its_runnable_example() -> None:
    assert [t for t, _, _ in EXAMPLES] == ["A runnable example"]


@pytest.mark.parametrize(("title", "code", "expected"), EXAMPLES, ids=[t for t, _, _ in EXAMPLES])
def test_example_runs_and_prints_what_the_page_shows(title: str, code: str, expected: str, tmp_path: Path) -> None:
    run_example(title, code, expected, tmp_path)


def test_the_page_uses_public_names_only() -> None:
    check_public_names(PAGE, "voicestate_crewai", voicestate_crewai.__all__)


def test_the_page_is_in_the_site() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^\s+- CrewAI: integrations/crewai\.md$", config, re.M), config
