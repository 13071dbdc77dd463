"""Defects a review found, each reproduced here: private facts in the timeline, writes through a
deposed session, a handoff whose token cannot be made, connections sharing one server, errors
of resources and the prompt, subscriptions to calls not yet started or ended, racing results."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx2
import pytest
from kit import error, next_update, result, triage_call
from mcp import Client
from mcp.shared.exceptions import MCPError
from test_transports import _env, _script, http_server

import voicestate as vs
from voicestate_mcp import create_server


async def test_the_timeline_shows_other_agents_private_facts_by_key_only(store: vs.Store) -> None:
    triage_call(store)  # triage set {"triage_score": 3} privately
    async with Client(create_server(store, agent="billing")) as c:
        tl = result(await c.call_tool("get_timeline", {"call_id": "call-1"}))
        private = next(e for e in tl["entries"] if e["event"].get("scope") == "agent:triage")
        assert private["event"]["values"] == {"triage_score": "(private)"}
        assert "3" not in " ".join(private["detail"])
        text = (await c.read_resource("voicestate://calls/call-1/timeline")).contents[0].text
        assert "triage_score" in text and "triage_score=3" not in text
    async with Client(create_server(store, agent="triage")) as own:  # its own facts: in full
        tl = result(await own.call_tool("get_timeline", {"call_id": "call-1"}))
        mine = next(e for e in tl["entries"] if e["event"].get("scope") == "agent:triage")
        assert mine["event"]["values"] == {"triage_score": 3}


async def test_writes_anyone_may_make_survive_a_deposed_session(store: vs.Store) -> None:
    packet = triage_call(store)
    async with Client(create_server(store, agent="billing")) as c:
        result(await c.call_tool("redeem_handoff", {"packet": packet.to_token()}))
        store.resume("call-1", agent="ops", takeover=True, force=True)  # billing does not know yet
        assert result(await c.call_tool("add_note", {"call_id": "call-1", "text": "seen"}))["owner"] == "ops"
        done = result(
            await c.call_tool("deliver_tool_result", {"call_id": "call-1", "tool_call_id": "t1", "result": [1]})
        )
        assert done["accepted"] is True
        call = result(await c.call_tool("get_call", {"call_id": "call-1"}))
        assert (call["owner"], call["held_by_this_server"]) == ("ops", False)
        ended = result(await c.call_tool("end_call", {"call_id": "call-1", "reason": "done"}))
        assert ended["status"] == "ended"
    state = store.load("call-1")
    assert [n.text for n in state.notes] == ["seen"] and state.tools["t1"].result == [1]
    assert state.ended_reason == "done"


async def test_end_call_on_an_ended_call_returns_the_seq_of_its_end(store: vs.Store) -> None:
    triage_call(store)
    async with Client(create_server(store)) as c:
        first = result(await c.call_tool("end_call", {"call_id": "call-1"}))
        result(await c.call_tool("add_note", {"call_id": "call-1", "text": "after"}))
        again = result(await c.call_tool("end_call", {"call_id": "call-1"}))
    assert again["seq"] == first["seq"] == 10


async def test_a_handoff_whose_token_would_be_too_long_still_gives_its_packet(store: vs.Store) -> None:
    long_id = "é" * 128  # a valid call id; its token would exceed 256 characters
    packet = triage_call(store, long_id)
    async with Client(create_server(store, agent="billing")) as c:
        result(await c.call_tool("redeem_handoff", {"packet": packet.to_json()}))
        offered = result(await c.call_tool("hand_off", {"call_id": long_id, "to_agent": "human"}))
    assert offered["token"] is None and offered["packet"].startswith("{")
    with store.resume(offered["packet"], agent="human") as human:
        assert human.state.epoch == 3


async def test_connections_share_the_servers_sessions(store: vs.Store) -> None:
    packet = triage_call(store)
    server = create_server(store, agent="billing")
    async with Client(server) as a:
        async with Client(server) as b:
            result(await b.call_tool("redeem_handoff", {"packet": packet.to_token()}))
        # b went away: the server's session stays, and a uses it
        result(await a.call_tool("record_turn", {"call_id": "call-1", "speaker": "agent", "text": "still here"}))
    assert store.load("call-1").turns[-1].text == "still here"


async def test_resource_and_prompt_errors_say_what_to_do(store: vs.Store) -> None:
    async with Client(create_server(store)) as c:
        for uri in ("voicestate://calls/%7Babc", "voicestate://calls/vs1.x/context", "voicestate://calls/nope"):
            with pytest.raises(MCPError, match="Next: "):
                await c.read_resource(uri)
        with pytest.raises(MCPError, match="list_calls"):
            await c.get_prompt("receive_handoff", {"call_id": "nope"})


async def test_subscribing_before_the_call_starts_and_after_it_ends(store: vs.Store, url: str) -> None:
    async with Client(create_server(store)) as c:
        uris = ["voicestate://calls/later", "voicestate://calls/%7Bbad"]  # a malformed id is honoured, inert
        async with c.listen(resource_subscriptions=uris) as sub:
            await asyncio.sleep(0.2)
            with store.open("later", agent="triage") as s:
                s.record(vs.UserSpoke("hello"))
            assert (await next_update(sub)).uri == "voicestate://calls/later"
            s.end("bye")
            await next_update(sub)
            await asyncio.sleep(0.3)
            drained = True
            while drained:  # what the end itself caused
                try:
                    await next_update(sub, timeout=1.5)
                except TimeoutError:
                    drained = False
            writer = "import sys, voicestate as vs\nvs.open_store(sys.argv[1]).append('later', vs.Note('QA'))"
            subprocess.run([sys.executable, "-c", writer, url], check=True, env=_env())
            assert (await next_update(sub)).uri == "voicestate://calls/later"  # a note after the end


async def test_racing_results_store_one_event(store: vs.Store) -> None:
    triage_call(store)
    async with Client(create_server(store)) as c:
        got = await asyncio.gather(
            *(
                c.call_tool("deliver_tool_result", {"call_id": "call-1", "tool_call_id": "t1", "result": n})
                for n in range(3)
            )
        )
        assert "exactly one" in error(
            await c.call_tool("deliver_tool_result", {"call_id": "call-1", "tool_call_id": "t1"})
        )
    accepted = [result(r)["accepted"] for r in got]
    assert accepted.count(True) == 1
    assert sum(isinstance(e, vs.ToolReturned) for e in store.events("call-1")) == 1


async def test_record_tool_call_returns_its_id_and_takeover_refuses_a_packet(store: vs.Store) -> None:
    packet = triage_call(store)
    async with Client(create_server(store, agent="billing")) as c:
        assert "redeem_handoff" in error(
            await c.call_tool("take_over_call", {"call_id": packet.to_token(), "force": True})
        )
        result(await c.call_tool("redeem_handoff", {"packet": packet.to_token()}))
        tool = result(await c.call_tool("record_tool_call", {"call_id": "call-1", "name": "refund"}))
        done = result(
            await c.call_tool(
                "deliver_tool_result", {"call_id": "call-1", "tool_call_id": tool["tool_call_id"], "result": "ok"}
            )
        )
        assert done["accepted"] is True
    assert store.load("call-1").tools[tool["tool_call_id"]].name == "refund"


async def test_no_oauth_metadata_and_a_bad_path(store: vs.Store, url: str) -> None:
    with http_server(url) as endpoint:
        base = endpoint.rsplit("/", 1)[0]
        assert httpx2.get(f"{base}/.well-known/oauth-protected-resource/mcp").status_code == 404
        refused = httpx2.delete(endpoint)
        assert refused.status_code == 401 and "resource_metadata" not in refused.headers["WWW-Authenticate"]
    ran = subprocess.run(
        [_script(), "--store", url, "--transport", "streamable-http", "--path", "mcp"],
        env=_env(VOICESTATE_MCP_TOKEN="a-test-bearer-token-0123456789abcdef"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 1 and "starts with '/'" in ran.stderr
