"""A documentation page's examples, run as tests: the members' ``tests/test_docs.py`` use it.

A runnable example is a python block whose next fenced block is a text block (the convention
of docs/patterns.md); it runs alone, in a fresh interpreter started in an empty directory with
no ``VOICESTATE_*`` variables, and must print exactly the text block and leave no file behind.
Other python blocks are fragments. A page must not import private modules (``voicestate._x``,
``voicestate_x._y``) and must name every public name of its package.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DocsPageTests", "check_public_names", "run_example", "runnable_examples"]


def runnable_examples(page: Path) -> list[tuple[str, str, str]]:
    """``(section title, code, expected output)`` for each python block followed by a text block."""
    out = []
    for section in re.split(r"^##+ ", page.read_text(encoding="utf-8"), flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        blocks = re.findall(r"^```(\w*)\n(.*?)^```", section, re.S | re.M)
        for i, (lang, code) in enumerate(blocks):
            following = blocks[i + 1] if i + 1 < len(blocks) else ("", "")
            if lang == "python" and following[0] == "text":
                out.append((title, code, following[1]))
    return out


def run_example(title: str, code: str, expected: str, cwd: Path, *, timeout: float = 120.0) -> None:
    """Run ``code`` in a fresh interpreter in the empty directory ``cwd``; assert what it prints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICESTATE_")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{title!r} failed:\n{done.stderr}"
    printed = [line.rstrip() for line in done.stdout.splitlines()]
    assert printed == expected.splitlines(), f"{title!r} printed:\n{done.stdout}\nthe page shows:\n{expected}"
    assert list(cwd.iterdir()) == [], f"{title!r} left files in the current directory"


def check_public_names(page: Path, package: str, names: Iterable[str]) -> None:
    """Assert that ``page`` imports no private module and names each of ``package``'s ``names``."""
    text = page.read_text(encoding="utf-8")
    private = re.findall(rf"\b(?:voicestate|{re.escape(package)})\._\w+", text)
    assert not private, f"the page imports private modules: {sorted(set(private))}"
    missing = [name for name in names if name not in text]
    assert not missing, f"public names missing from the page: {missing}"


class DocsPageTests:
    """A member's documentation page as tests, by subclassing (as the conformance suites)::

        class TestDocsPage(DocsPageTests):
            page = ROOT / "docs" / "integrations" / "crewai.md"
            package = "voicestate_crewai"
            nav = "CrewAI"  # its entry in mkdocs.yml's nav

    The page has exactly ``examples`` runnable examples (titles), each runs as written,
    it imports no private module, names every public name of ``package``, and is in the site.
    """

    page: Path
    package: str
    nav: str
    examples: tuple[str, ...] = ("A runnable example",)

    def test_the_page_has_its_runnable_examples(self) -> None:
        assert tuple(t for t, _, _ in runnable_examples(self.page)) == self.examples

    def test_each_example_runs_and_prints_what_the_page_shows(self, tmp_path: Path) -> None:
        for i, (title, code, expected) in enumerate(runnable_examples(self.page)):
            cwd = tmp_path / str(i)
            cwd.mkdir()
            run_example(title, code, expected, cwd)

    def test_the_page_uses_public_names_only(self) -> None:
        import importlib

        check_public_names(self.page, self.package, importlib.import_module(self.package).__all__)

    def test_the_page_is_in_the_site(self) -> None:
        config = (self.page.parents[2] / "mkdocs.yml").read_text(encoding="utf-8")
        rel = self.page.relative_to(self.page.parents[1]).as_posix()
        assert re.search(rf"^\s+- {re.escape(self.nav)}: {re.escape(rel)}$", config, re.M), config
