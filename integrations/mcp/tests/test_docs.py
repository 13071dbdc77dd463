"""docs/integrations/mcp.md runs as written (voicestate.testing.docs_examples.DocsPageTests),
and its result schemas are the server's."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mcp import Client

import voicestate as vs
from voicestate.testing.docs_examples import DocsPageTests
from voicestate_mcp import create_server

PAGE = Path(__file__).resolve().parents[3] / "docs" / "integrations" / "mcp.md"


class TestDocsPage(DocsPageTests):
    page = PAGE
    package = "voicestate_mcp"
    nav = "MCP"


def schema_section(tools: list) -> str:  # type: ignore[type-arg]
    """The page's "Result schemas" section for these tools (one block per result model)."""
    by_model: dict[str, tuple[dict, list[str]]] = {}  # type: ignore[type-arg]
    for t in tools:
        by_model.setdefault(t.output_schema["title"], (t.output_schema, []))[1].append(t.name)
    return "\n".join(
        f"### {title}\n\nReturned by "
        + ", ".join(f"`{n}`" for n in names)
        + ".\n\n```json\n"
        + json.dumps(schema, indent=1)
        + "\n```\n"
        for title, (schema, names) in by_model.items()
    )


async def test_the_result_schemas_are_the_servers() -> None:
    store = vs.open_store("memory://")
    async with Client(create_server(store, agent="billing")) as c:
        tools = (await c.list_tools()).tools
    store.close()
    text = PAGE.read_text(encoding="utf-8")
    documented = text.split("## Result schemas\n", 1)[1].split("\n", 4)[-1]
    expected = schema_section(tools)
    assert documented.strip() == expected.strip(), "regenerate the section from schema_section():\n" + expected
    for t in tools:  # every tool is in the page's table
        assert re.search(rf"^\| `{t.name}\(", text, re.M), t.name
