"""docs/integrations/crewai.md runs as written (voicestate.testing.docs_examples.DocsPageTests)."""

from __future__ import annotations

from pathlib import Path

from voicestate.testing.docs_examples import DocsPageTests


class TestDocsPage(DocsPageTests):
    page = Path(__file__).resolve().parents[3] / "docs" / "integrations" / "crewai.md"
    package = "voicestate_crewai"
    nav = "CrewAI"
