"""Resources, the prompt, and subscriptions fed by the store's watch: an append by another
process reaches a listening client as notifications/resources/updated, with no polling."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest
from kit import HEARD, UNHEARD, next_update, triage_call
from mcp import Client
from mcp.shared.exceptions import MCPError

import voicestate as vs
from voicestate_mcp import create_server


async def test_resources_and_templates(store: vs.Store) -> None:
    triage_call(store)
    async with Client(create_server(store, agent="billing")) as c:
        listed = {str(r.uri) for r in (await c.list_resources()).resources}
        assert listed == {"voicestate://calls"}
        templates = {t.uri_template for t in (await c.list_resource_templates()).resource_templates}
        assert templates == {
            "voicestate://calls/{call_id}",
            "voicestate://calls/{call_id}/context",
            "voicestate://calls/{call_id}/timeline",
        }
        calls = json.loads((await c.read_resource("voicestate://calls")).contents[0].text)
        assert [x["call_id"] for x in calls["calls"]] == ["call-1"]
        call = json.loads((await c.read_resource("voicestate://calls/call-1")).contents[0].text)
        assert call["pending_handoff"]["to_agent"] == "billing" and call["seq"] == 9
        context = (await c.read_resource("voicestate://calls/call-1/context")).contents[0].text
        assert HEARD in context and UNHEARD not in context
        timeline = (await c.read_resource("voicestate://calls/call-1/timeline")).contents[0].text
        assert "barges in" in timeline and f'caller heard only "{HEARD}"' in timeline
        with pytest.raises(MCPError, match="list_calls"):  # the server's not-found error, what to do next
            await c.read_resource("voicestate://calls/nope")


async def test_receive_handoff_prompt(store: vs.Store) -> None:
    triage_call(store)
    async with Client(create_server(store, agent="billing")) as c:
        prompts = {p.name: p for p in (await c.list_prompts()).prompts}
        assert [a.name for a in prompts["receive_handoff"].arguments or []] == ["call_id"]
        got = await c.get_prompt("receive_handoff", {"call_id": "call-1"})
        text = got.messages[0].content.text
    assert "from 'triage'" in text and "double charge" in text
    assert "account_id" in text and "A-77" in text  # the facts
    assert "t1: lookup_invoices" in text  # the tool still running
    assert 'not answered yet: "It\'s account A-77"' in text
    assert "triage_score" not in text  # triage's private facts stay private
    assert "redeem_handoff" in text


async def test_subscription_sees_another_process_append(store: vs.Store, url: str) -> None:
    triage_call(store)
    async with Client(create_server(store)) as c:
        async with c.listen(resource_subscriptions=["voicestate://calls/call-1/context"]) as sub:
            assert sub.honored.resource_subscriptions == ["voicestate://calls/call-1/context"]
            await asyncio.sleep(0.3)  # the watch is set up (it starts at the call's current seq)
            started = time.monotonic()
            writer = (
                "import sys, voicestate as vs\n"
                "s = vs.open_store(sys.argv[1])\n"
                "s.append('call-1', vs.ToolReturned('t1', result={'invoices': 2}))\n"
                "s.close()\n"
            )
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", writer, url)
            assert await proc.wait() == 0
            event = await next_update(sub, timeout=10)
            waited = time.monotonic() - started
        assert event.uri == "voicestate://calls/call-1/context"
        fresh = (await c.read_resource("voicestate://calls/call-1/context")).contents[0].text
    assert "invoices" in fresh  # refetched after the update: the late result is there
    assert waited < 10


async def test_subscription_to_the_call_list(store: vs.Store, url: str) -> None:
    triage_call(store)
    async with Client(create_server(store)) as c, c.listen(resource_subscriptions=["voicestate://calls"]) as sub:
        await asyncio.sleep(0.2)
        subprocess.run(  # another call starts, in another process
            [
                sys.executable,
                "-c",
                "import sys, voicestate as vs\ns = vs.open_store(sys.argv[1])\n"
                "with s.open('call-2', agent='triage'): pass\ns.close()",
                url,
            ],
            check=True,
        )
        event = await next_update(sub, timeout=10)
    assert event.uri == "voicestate://calls"
