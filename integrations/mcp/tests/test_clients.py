"""The server as voice frameworks reach it, through their own MCP client classes, offline:
LiveKit Agents' `MCPToolset` / `MCPServerHTTP` over streamable HTTP with the bearer token, and
the OpenAI Agents SDK's `MCPServerStdio` and `MCPServerStreamableHttp`."""

from __future__ import annotations

import json

import pytest
from agents.mcp import MCPServerStdio, MCPServerStreamableHttp
from kit import HEARD, UNHEARD, triage_call
from livekit.agents import Agent, llm
from livekit.agents import mcp as lk_mcp
from mcp.shared.exceptions import MCPError
from test_transports import TOKEN, _env, _script, http_server

import voicestate as vs

BEARER = {"Authorization": f"Bearer {TOKEN}"}
TOOLS = 16  # on a server started with --agent


async def test_livekit_toolset_over_streamable_http(store: vs.Store, url: str) -> None:
    packet = triage_call(store)
    with http_server(url, "--agent", "billing") as endpoint:
        toolset = lk_mcp.MCPToolset(id="voicestate", mcp_server=lk_mcp.MCPServerHTTP(url=endpoint, headers=BEARER))
        await toolset.setup()
        try:
            tools = {t.info.name: t for t in toolset.tools}  # type: ignore[union-attr]
            assert len(tools) == TOOLS
            Agent(instructions="You are billing.", tools=[toolset])  # what the docs show
            brief = json.loads(json.loads(await tools["redeem_handoff"]({"packet": packet.to_token()}))["text"])
            assert (brief["agent"], brief["epoch"]) == ("billing", 2)
            context = await tools["get_context"]({"call_id": "call-1"})
            assert HEARD in context and UNHEARD not in context
            with pytest.raises(llm.ToolError, match="Next: list the calls"):
                await tools["get_call"]({"call_id": "nope"})
        finally:
            await toolset.aclose()
        assert store.load("call-1").owner == "billing"

        bare = lk_mcp.MCPToolset(id="no-token", mcp_server=lk_mcp.MCPServerHTTP(url=endpoint))
        with pytest.raises(ExceptionGroup) as refused:  # the 401, through the SDK's task groups
            await bare.setup()
        assert refused.group_contains(MCPError, match="error response")
        await bare.aclose()


async def test_openai_agents_over_stdio_and_streamable_http(store: vs.Store, url: str) -> None:
    packet = triage_call(store)
    stdio = MCPServerStdio(
        params={"command": _script(), "args": ["--store", url, "--agent", "billing"], "env": _env()},
        name="voicestate",
        use_structured_content=True,
    )
    async with stdio:
        assert len(await stdio.list_tools()) == TOOLS
        brief = await stdio.call_tool("redeem_handoff", {"packet": packet.to_token()})
        assert brief.structured_content is not None and brief.structured_content["epoch"] == 2
        context = await stdio.call_tool("get_context", {"call_id": "call-1"})
        assert context.structured_content is not None
        text = json.dumps(context.structured_content["context"])
        assert HEARD in text and UNHEARD not in text
        said = await stdio.call_tool("record_turn", {"call_id": "call-1", "speaker": "agent", "text": "On it."})
        assert not said.is_error
        wrong = await stdio.call_tool("get_call", {"call_id": "nope"})
        assert wrong.is_error and "Next: list the calls" in wrong.content[0].text  # type: ignore[union-attr]
    assert store.load("call-1").turns[-1].text == "On it."

    with http_server(url) as endpoint:
        remote = MCPServerStreamableHttp(params={"url": endpoint, "headers": BEARER}, name="voicestate")
        async with remote:
            assert len(await remote.list_tools()) == 8  # no --agent: reading and outside writes only
            refused = await remote.call_tool("set_slots", {"call_id": "call-1", "values": {"a": 1}})
            assert refused.is_error  # no such tool on a server with no agent
            check = await remote.call_tool("verify_packet", {"packet": packet.to_token()})
            assert check.structured_content is not None
            assert (check.structured_content["verdict"], check.structured_content["redeemed_by"]) == (
                "redeemed",
                "billing",
            )
