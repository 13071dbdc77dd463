"""Defects a review found, each reproduced here: private facts in the timeline, writes through a
deposed session, a handoff whose token cannot be made, connections sharing one server, errors
of resources and the prompt, subscriptions to calls not yet started or ended, racing results."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

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
        before = store.events("call-1")
        assert "redeem_handoff" in error(
            await c.call_tool("take_over_call", {"call_id": packet.to_token(), "force": True})
        )
        assert store.events("call-1") == before
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


# -- a second review ------------------------------------------------------------------


async def test_overlapping_takeovers_leave_one_session_and_no_orphan_lease(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = vs.open_store(url, lease=0.6)
    triage_call(store)
    leave = vs.Session.__aexit__

    async def slow_leave(self: vs.Session, *exc: object) -> None:
        await asyncio.sleep(0.3)  # a remote store's flush
        await leave(self, *exc)  # type: ignore[arg-type]

    monkeypatch.setattr(vs.Session, "__aexit__", slow_leave)
    async with Client(create_server(store, agent="billing")) as c:
        assert result(await c.call_tool("take_over_call", {"call_id": "call-1", "force": True}))["epoch"] == 2

        async def take(after: float) -> Any:
            await asyncio.sleep(after)
            return await c.call_tool("take_over_call", {"call_id": "call-1", "force": True})

        takes = await asyncio.gather(take(0), take(0.1))  # the second while the first lets go, slowly
        won = [result(t)["epoch"] for t in takes if not t.is_error]
        assert won and all("changed hands" in error(t) for t in takes if t.is_error)  # a lost race is refused
        call = result(await c.call_tool("get_call", {"call_id": "call-1"}))
        assert (call["epoch"], call["held_by_this_server"]) == (max(won), True)  # the newest is the one held
        result(await c.call_tool("record_turn", {"call_id": "call-1", "speaker": "agent", "text": "held"}))
        assert result(await c.call_tool("release_call", {"call_id": "call-1"}))["released"] is True
        await asyncio.sleep(1.2)  # no session left renewing the lease: the call goes stale
        assert [i.call_id for i in store.calls(stale=True)] == ["call-1"]
    store.close()


async def test_reading_the_resource_does_not_keep_an_idle_call(url: str) -> None:
    store = vs.open_store(url, lease=0.6)
    packet = triage_call(store)
    async with Client(create_server(store, agent="billing", idle_release=0.8)) as c:
        result(await c.call_tool("redeem_handoff", {"packet": packet.to_token()}))
        for _ in range(8):  # a dashboard re-reading the call
            json.loads((await c.read_resource("voicestate://calls/call-1")).contents[0].text)
            await asyncio.sleep(0.3)
        call = json.loads((await c.read_resource("voicestate://calls/call-1")).contents[0].text)
        assert call["held_by_this_server"] is False  # let go all the same
        store.resume("call-1", agent="ops", takeover=True, force=True)
        call = json.loads((await c.read_resource("voicestate://calls/call-1")).contents[0].text)
        assert (call["owner"], call["held_by_this_server"]) == ("ops", False)
    store.close()


async def test_a_watch_survives_the_store_being_down_for_a_moment(
    store: vs.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    triage_call(store)
    real = vs.Store.awatch
    failures = [vs.BackendUnavailable("the store is down for a moment")]

    def flaky(self: vs.Store, call_id: str, *, after: int = 0) -> Any:
        if failures:
            raise failures.pop()
        return real(self, call_id, after=after)

    monkeypatch.setattr(vs.Store, "awatch", flaky)
    async with (
        Client(create_server(store)) as c,
        c.listen(resource_subscriptions=["voicestate://calls/call-1"]) as sub,
    ):
        assert (await next_update(sub)).uri == "voicestate://calls/call-1"  # "refetch": it was down
        await asyncio.sleep(0.3)
        store.append("call-1", vs.Note("back"))
        assert (await next_update(sub)).uri == "voicestate://calls/call-1"
    assert not failures


def test_subscription_uris_match_the_templates_strictly() -> None:
    from voicestate_mcp._watch import _wanted

    uris = ["voicestate://calls/a?x=1", "voicestate://calls/a#f", "voicestate://calls/a/", "voicestate://calls/b"]
    assert _wanted({"notifications": {"resourceSubscriptions": uris}}) == {"b": ["voicestate://calls/b"]}


def test_the_cli_refuses_what_would_serve_the_wrong_thing(url: str, tmp_path: Path) -> None:
    binary = tmp_path / "token"
    binary.write_bytes(b"\xff\xfe" * 20)
    http = ["--transport", "streamable-http"]
    for args, said in [
        (["--store", ""], "--store is empty"),
        (["--store", url, "--tenant", " "], "--tenant is empty"),
        (["--store", url, "--release-idle", "nan"], "--release-idle nan"),
        (["--store", url, *http, "--token-file", str(binary)], "is not text"),
    ]:
        ran = subprocess.run([_script(), *args], env=_env(), capture_output=True, text=True, timeout=60)
        assert ran.returncode == 1 and said in ran.stderr and "Traceback" not in ran.stderr, (args, ran.stderr)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        ran = subprocess.run(
            [_script(), "--store", url, *http, "--port", port],
            env=_env(VOICESTATE_MCP_TOKEN="a-test-bearer-token-0123456789abcdef"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ran.returncode == 1 and "pass another --port" in ran.stderr


def test_dns_rebinding_is_refused_on_any_loopback_address(url: str) -> None:
    with http_server(url, "--host", "127.0.0.2", host="127.0.0.2") as endpoint:
        headers = {"Authorization": "Bearer a-test-bearer-token-0123456789abcdef"}
        evil = httpx2.post(endpoint, json={}, headers={**headers, "Host": "evil.example"})
        assert evil.status_code == 421
