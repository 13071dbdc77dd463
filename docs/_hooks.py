"""mkdocs hooks (a built-in mkdocs feature, no plugin): docs/changelog.md shows CHANGELOG.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHANGELOG = Path(__file__).resolve().parent.parent / "CHANGELOG.md"
MARKER = "<!-- include: CHANGELOG.md -->"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri != "changelog.md":
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/changelog.md lost its marker {MARKER!r}")
    return markdown.replace(MARKER, CHANGELOG.read_text(encoding="utf-8"))
