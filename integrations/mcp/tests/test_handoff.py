"""End to end, across three OS processes: a triage agent hands a call off; an MCP client acting
as "billing" (the server over stdio) redeems the token, reads what the caller heard, finishes
the pending tool, and hands off to a human, whose session sees it all."""

from __future__ import annotations

import asyncio
import json
import sys

from kit import HEARD, UNHEARD, error, result
from mcp import Client, StdioServerParameters
from test_transports import _env, _script

import voicestate as vs

TRIAGE = f"""
import asyncio, sys
import voicestate as vs
HEARD, UNHEARD = {HEARD!r}, {UNHEARD!r}

async def main():
    store = vs.open_store(sys.argv[1], require_packet=True)
    async with store.aopen("call-9", agent="triage", meta={{"channel": "sip"}}) as s:
        await s.arecord(vs.UserSpoke("I was charged twice for my March invoice"))
        turn = await s.arecord(vs.AgentSpoke(HEARD + " " + UNHEARD))
        await s.arecord(vs.Interrupted(turn=turn, heard=HEARD, heard_ms=910))
        await s.arecord(vs.ToolCalled("t1", "lookup_invoices", {{"account": "A-77"}}))
        await s.arecord(vs.SlotsSet({{"account_id": "A-77"}}))
        packet = await s.ahandoff("billing", reason="double charge")
        print(packet.to_token(), flush=True)
        async for ev in s.awatch():  # the old owner learns that billing took the call
            if isinstance(ev, vs.OwnerChanged):
                print(f"taken by {{ev.owner}} at epoch {{ev.epoch}}; fenced={{s.fenced}}", flush=True)
                break
    await store.aclose()

asyncio.run(main())
"""


async def test_triage_to_mcp_billing_to_human(url: str) -> None:
    triage = await asyncio.create_subprocess_exec(
        sys.executable, "-c", TRIAGE, url, env=_env(), stdout=asyncio.subprocess.PIPE
    )
    assert triage.stdout is not None
    token = (await asyncio.wait_for(triage.stdout.readline(), 30)).decode().strip()
    assert token.startswith("vs1.")

    billing = StdioServerParameters(
        command=_script(), args=["--store", url, "--agent", "billing", "--require-packet"], env=_env()
    )
    async with Client(billing) as c:
        check = result(await c.call_tool("verify_packet", {"packet": token, "agent": "billing"}))
        assert check["verdict"] == "valid" and check["from_agent"] == "triage"
        assert "packet" in error(await c.call_tool("redeem_handoff", {"packet": "call-9"})).lower()  # require_packet

        brief = result(await c.call_tool("redeem_handoff", {"packet": token}))
        assert (brief["epoch"], brief["handoff_reason"]) == (2, "double charge")
        assert [t["tool_call_id"] for t in brief["pending_tools"]] == ["t1"]

        ctx = result(await c.call_tool("get_context", {"call_id": "call-9"}))
        said = [m.get("content") for m in ctx["context"] if m["role"] == "assistant"]
        assert HEARD in said and all(UNHEARD not in (m or "") for m in said)  # only what the caller heard
        assert UNHEARD not in json.dumps(ctx["context"])

        done = result(
            await c.call_tool(
                "deliver_tool_result",
                {"call_id": "call-9", "tool_call_id": "t1", "result": {"charges": ["INV-3 $40", "INV-3 $40"]}},
            )
        )
        assert done["accepted"] is True
        result(
            await c.call_tool(
                "record_turn",
                {"call_id": "call-9", "speaker": "agent", "text": "I see the duplicate; a colleague will refund it."},
            )
        )
        result(await c.call_tool("set_slots", {"call_id": "call-9", "values": {"duplicate": "INV-3"}}))
        offered = result(
            await c.call_tool(
                "hand_off", {"call_id": "call-9", "to_agent": "human", "kind": "escalate", "reason": "refund approval"}
            )
        )

        # triage, in its own process, learned that billing took the call
        line = (await asyncio.wait_for(triage.stdout.readline(), 30)).decode().strip()
        assert line == "taken by billing at epoch 2; fenced=True"
        assert await asyncio.wait_for(triage.wait(), 30) == 0

        store = vs.open_store(url, require_packet=True)
        with store.resume(offered["token"], agent="human") as human:
            state = human.state
            assert (state.owner, state.epoch) == ("human", 3)
            assert state.tools["t1"].status == "ok" and state.tools["t1"].agent == "triage"
            assert state.slots == {"account_id": "A-77", "duplicate": "INV-3"}
            assert [t.agent for t in state.turns if t.role == "agent"] == ["triage", "billing"]
            assert state.owner_handoff is not None and state.owner_handoff.reason == "refund approval"
            messages = human.context("openai")
            text = json.dumps(messages)
            assert "INV-3 $40" in text  # the finished tool, with its result
            assert "a colleague will refund it" in text and UNHEARD not in text
            assert any(m.get("name") == "billing" for m in messages if m["role"] == "assistant")

        # billing's server learns it was fenced at its next owner write, and lets the call go
        fenced = error(await c.call_tool("set_slots", {"call_id": "call-9", "values": {"late": 1}}))
        # (its lease renewal may have learnt it first: then the session is already let go)
        assert "FencedError" in fenced or "does not own" in fenced
        assert result(await c.call_tool("get_call", {"call_id": "call-9"}))["held_by_this_server"] is False
    assert "late" not in store.load("call-9").slots
    store.close()
