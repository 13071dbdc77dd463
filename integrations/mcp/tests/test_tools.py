"""The tools through the SDK's real client, in-process: typed results, errors that say what to
do next, owner writes fenced, bad input changing nothing stored."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kit import HEARD, UNHEARD, error, result, triage_call
from mcp import Client

import voicestate as vs
import voicestate.plugins as vsp
from voicestate_mcp import create_server

READING = {"list_calls", "get_call", "get_context", "get_timeline", "verify_packet"}
OUTSIDE = {"add_note", "deliver_tool_result", "end_call"}
AGENT = {
    "redeem_handoff",
    "take_over_call",
    "set_slots",
    "record_turn",
    "record_tool_call",
    "hand_off",
    "cancel_handoff",
    "release_call",
}


async def test_tool_lists_and_result_schemas(store: vs.Store) -> None:
    async with Client(create_server(store)) as reader:
        tools = {t.name: t for t in (await reader.list_tools()).tools}
    assert set(tools) == READING | OUTSIDE  # no owner tools on a server that acts for no agent
    async with Client(create_server(store, agent="billing")) as agent:
        tools = {t.name: t for t in (await agent.list_tools()).tools}
    assert set(tools) == READING | OUTSIDE | AGENT
    for name, tool in tools.items():
        assert tool.description and len(tool.description) > 60, name
        schema = tool.output_schema
        assert schema is not None and schema["type"] == "object" and schema["properties"], name
    assert tools["get_call"].annotations.read_only_hint is True
    assert "pending_tools" in tools["get_call"].output_schema["properties"]
    assert "token" in tools["hand_off"].output_schema["properties"]


async def test_reading_a_call(store: vs.Store) -> None:
    packet = triage_call(store)
    triage_call(store, "call-2", to="sales")
    async with Client(create_server(store)) as c:
        listed = result(await c.call_tool("list_calls", {}))
        assert [x["call_id"] for x in listed["calls"]] == ["call-1", "call-2"]
        assert listed["calls"][0]["pending_to"] == "billing" and listed["calls"][0]["owner"] == "triage"
        page = result(await c.call_tool("list_calls", {"limit": 1}))
        assert page["next_after"] == "call-1"
        rest = result(await c.call_tool("list_calls", {"limit": 1, "after": "call-1"}))
        assert [x["call_id"] for x in rest["calls"]] == ["call-2"]
        assert result(await c.call_tool("list_calls", {"owner": "nobody"}))["calls"] == []

        call = result(await c.call_tool("get_call", {"call_id": "call-1"}))
        assert (call["owner"], call["epoch"], call["status"], call["seq"]) == ("triage", 1, "active", 9)
        assert call["slots"] == {"account_id": "A-77"} and call["own_slots"] == {}  # triage's stay private
        assert [t["tool_call_id"] for t in call["pending_tools"]] == ["t1"]
        cut = call["turns"][1]
        assert (cut["interrupted"], cut["heard"], cut["heard_ms"]) == (True, HEARD, 910)
        assert call["pending_handoff"]["packet_id"] == packet.packet_id
        assert call["pending_handoff"]["to_agent"] == "billing"
        assert call["meta"] == {"channel": "sip"}

        ctx = result(await c.call_tool("get_context", {"call_id": "call-1"}))
        text = json.dumps(ctx["context"])
        assert HEARD in text and UNHEARD not in text  # heard only
        assert ctx["seq"] == 9 and ctx["format"] == "openai"
        full = result(await c.call_tool("get_context", {"call_id": "call-1", "heard_only": False}))
        assert UNHEARD in json.dumps(full["context"])
        last = result(await c.call_tool("get_context", {"call_id": "call-1", "last_turns": 1, "summary": False}))
        assert "I was charged twice" not in json.dumps(last["context"])
        assert "lookup_invoices" in json.dumps(last["context"])  # a running tool call always stays

        tl = result(await c.call_tool("get_timeline", {"call_id": "call-1", "limit": 4}))
        assert [e["seq"] for e in tl["entries"]] == [1, 2, 3, 4] and tl["next_after"] == 4
        assert tl["entries"][3]["what"] == "barges in" and tl["entries"][3]["event"]["heard"] == HEARD
        tail = result(await c.call_tool("get_timeline", {"call_id": "call-1", "after": 4}))
        assert [e["type"] for e in tail["entries"]][-1] == "HandedOff" and tail["next_after"] is None


async def test_outside_writes(store: vs.Store) -> None:
    triage_call(store)
    async with Client(create_server(store)) as c:
        note = result(await c.call_tool("add_note", {"call_id": "call-1", "text": "VIP customer"}))
        assert note["seq"] == 10 and note["owner"] == "triage"
        late = result(
            await c.call_tool("deliver_tool_result", {"call_id": "call-1", "tool_call_id": "t1", "result": {"n": 2}})
        )
        assert (late["accepted"], late["status"]) == (True, "ok")
        again = result(
            await c.call_tool("deliver_tool_result", {"call_id": "call-1", "tool_call_id": "t1", "error": "x"})
        )
        assert again["accepted"] is False and again["status"] == "ok"  # the first result wins, nothing written
        ended = result(await c.call_tool("end_call", {"call_id": "call-1", "reason": "caller hung up"}))
        assert ended["status"] == "ended" and ended["owner"] is None
        assert result(await c.call_tool("end_call", {"call_id": "call-1"}))["seq"] == ended["seq"]
        result(await c.call_tool("add_note", {"call_id": "call-1", "text": "QA: fine"}))  # notes after the end
    state = store.load("call-1")
    assert state.tools["t1"].result == {"n": 2} and state.ended_reason == "caller hung up"
    assert [n.text for n in state.notes] == ["VIP customer", "QA: fine"]
    assert len(store.events("call-1")) == 13


async def test_acting_as_an_agent(store: vs.Store) -> None:
    packet = triage_call(store)
    async with Client(create_server(store, agent="billing")) as c:
        brief = result(await c.call_tool("redeem_handoff", {"packet": packet.to_token()}))
        assert (brief["agent"], brief["epoch"], brief["handoff_reason"]) == ("billing", 2, "double charge")
        assert "lookup_invoices" in brief["summary"] and brief["facts"] == {"account_id": "A-77"}
        assert brief["unanswered"] == "It's account A-77"
        assert [t["tool_call_id"] for t in brief["pending_tools"]] == ["t1"]
        assert result(await c.call_tool("get_call", {"call_id": "call-1"}))["held_by_this_server"] is True

        result(await c.call_tool("set_slots", {"call_id": "call-1", "values": {"refund": "pending"}}))
        result(await c.call_tool("set_slots", {"call_id": "call-1", "values": {"mood": "calm"}, "private": True}))
        said = "I see two charges on March 3rd and I will refund one"
        turn = result(
            await c.call_tool(
                "record_turn",
                {"call_id": "call-1", "speaker": "agent", "text": said, "heard": "I see two charges", "heard_ms": 700},
            )
        )
        result(await c.call_tool("record_turn", {"call_id": "call-1", "speaker": "caller", "text": "Great"}))
        tool = result(
            await c.call_tool("record_tool_call", {"call_id": "call-1", "name": "refund", "arguments": {"n": 1}})
        )
        offered = result(
            await c.call_tool(
                "hand_off", {"call_id": "call-1", "to_agent": "human", "kind": "escalate", "reason": "refund"}
            )
        )
        assert offered["token"].startswith("vs1.") and offered["to_agent"] == "human"
        assert result(await c.call_tool("cancel_handoff", {"call_id": "call-1"}))["owner"] == "billing"
        again = result(await c.call_tool("hand_off", {"call_id": "call-1", "to_agent": "human", "kind": "escalate"}))
        state = store.load("call-1")
        assert state.owner == "billing" and state.slots["refund"] == "pending"
        assert state.private_slots["billing"] == {"mood": "calm"}
        cut = next(t for t in state.turns if t.seq == turn["seq"] - 1)
        assert (cut.text, cut.heard, cut.heard_ms) == (said, "I see two charges", 700)
        assert state.tools[next(iter(t for t in state.tools if t != "t1"))].seq == tool["seq"]
        assert state.pending_handoff is not None and state.pending_handoff.packet_id != offered["packet_id"]

        # The human redeems: this server is fenced; its next owner write is refused and lets go.
        human = store.resume(again["token"], agent="human")
        text = error(await c.call_tool("set_slots", {"call_id": "call-1", "values": {"late": True}}))
        # FencedError; or, if its lease renewal learnt it first, the session is already let go
        assert "FencedError" in text or "does not own" in text, text
        before = store.events("call-1")
        assert "does not own" in error(
            await c.call_tool("record_turn", {"call_id": "call-1", "speaker": "caller", "text": "x"})
        )
        assert store.events("call-1") == before  # nothing stored
        assert result(await c.call_tool("get_call", {"call_id": "call-1"}))["held_by_this_server"] is False
        assert human.state.owner == "human"


async def test_errors_say_what_to_do_and_change_nothing(store: vs.Store) -> None:
    packet = triage_call(store)
    before = store.events("call-1")
    async with Client(create_server(store, agent="billing")) as c:
        assert "list_calls" in error(await c.call_tool("get_call", {"call_id": "nope"}))
        assert "verify_packet" in error(await c.call_tool("redeem_handoff", {"packet": "vs1.AAAA"}))
        forged = packet.to_json().replace("double charge", "triple charge")
        assert "PacketError" in error(await c.call_tool("redeem_handoff", {"packet": forged}))
        # a write to a call another agent owns: this server holds no session for it
        for name, args in [
            ("set_slots", {"values": {"a": 1}}),
            ("record_turn", {"speaker": "agent", "text": "hi"}),
            ("hand_off", {"to_agent": "human"}),
            ("cancel_handoff", {}),
        ]:
            assert "redeem_handoff" in error(await c.call_tool(name, {"call_id": "call-1", **args}))
        assert "take_over" in error(await c.call_tool("take_over_call", {"call_id": "call-1"}))  # lease is live
        assert "no tool call 'zz'" in error(
            await c.call_tool("deliver_tool_result", {"call_id": "call-1", "tool_call_id": "zz", "result": 1})
        )
        assert "exactly one" in error(
            await c.call_tool(
                "deliver_tool_result", {"call_id": "call-1", "tool_call_id": "t1", "result": 1, "error": "e"}
            )
        )
        assert error(await c.call_tool("get_call", {"call_id": "call-1", "last_turns": -1}))  # argument validation
        assert "drop for_agent" in error(await c.call_tool("get_context", {"call_id": "call-1", "for_agent": "triage"}))
    assert store.events("call-1") == before
    # the packet is still good after all that
    assert store.verify(packet, agent="billing").verdict == "valid"


async def test_verify_packet(store: vs.Store) -> None:
    packet = triage_call(store)
    async with Client(create_server(store)) as c:
        ok = result(await c.call_tool("verify_packet", {"packet": packet.to_token(), "agent": "billing"}))
        assert (ok["verdict"], ok["redeemable"], ok["to_agent"], ok["owner"]) == ("valid", True, "billing", "triage")
        wrong = result(await c.call_tool("verify_packet", {"packet": packet.to_json(), "agent": "sales"}))
        assert (wrong["verdict"], wrong["reason"]) == ("invalid", "wrong_target")
        store.resume(packet, agent="billing")
        spent = result(await c.call_tool("verify_packet", {"packet": packet.to_token()}))
        assert (spent["verdict"], spent["redeemed_by"], spent["epoch"]) == ("redeemed", "billing", 2)
        junk = result(await c.call_tool("verify_packet", {"packet": "hello"}))
        assert (junk["verdict"], junk["reason"]) == ("invalid", "malformed")


async def test_require_packet(url: str) -> None:
    store = vs.open_store(url, require_packet=True)
    packet = triage_call(store)
    async with Client(create_server(store, agent="billing")) as c:
        text = error(await c.call_tool("redeem_handoff", {"packet": "call-1"}))
        assert "packet" in text.lower()
        assert store.load("call-1").owner == "triage"
        result(await c.call_tool("redeem_handoff", {"packet": packet.to_token()}))
    store.close()


async def test_takeover_and_leases_renewed_while_held(url: str) -> None:
    store = vs.open_store(url, lease=0.6)
    triage_call(store)  # triage's session is gone: its lease runs out
    await asyncio.sleep(0.8)
    async with Client(create_server(store, agent="recovery")) as c:
        stale = result(await c.call_tool("list_calls", {"stale": True}))
        assert [x["call_id"] for x in stale["calls"]] == ["call-1"] and stale["calls"][0]["stale"] is True
        brief = result(await c.call_tool("take_over_call", {"call_id": "call-1", "from_epoch": 1}))
        assert (brief["epoch"], brief["summary"]) == (2, None)
        await asyncio.sleep(1.5)  # 2.5 leases with no write: the held session renews its lease
        assert result(await c.call_tool("list_calls", {"stale": True}))["calls"] == []
        released = result(await c.call_tool("release_call", {"call_id": "call-1"}))
        assert released["released"] is True
        await asyncio.sleep(0.8)
        assert [x["call_id"] for x in result(await c.call_tool("list_calls", {"stale": True}))["calls"]] == ["call-1"]
        assert "redeem_handoff" in error(await c.call_tool("set_slots", {"call_id": "call-1", "values": {"a": 1}}))
        assert result(await c.call_tool("release_call", {"call_id": "call-1"}))["released"] is False
    store.close()


async def test_an_idle_call_is_let_go(url: str) -> None:
    """An agent that went away without releasing its call must not keep the lease alive."""
    store = vs.open_store(url, lease=0.6)
    packet = triage_call(store)
    async with Client(create_server(store, agent="billing", idle_release=0.8)) as c:
        result(await c.call_tool("redeem_handoff", {"packet": packet.to_token()}))
        await asyncio.sleep(0.5)
        result(await c.call_tool("set_slots", {"call_id": "call-1", "values": {"a": 1}}))  # in use: kept
        await asyncio.sleep(0.5)
        assert result(await c.call_tool("get_call", {"call_id": "call-1"}))["held_by_this_server"] is True
        await asyncio.sleep(2.0)  # idle: let go, and its lease runs out
        assert [i.call_id for i in store.calls(stale=True)] == ["call-1"]
        assert "redeem_handoff" in error(await c.call_tool("set_slots", {"call_id": "call-1", "values": {"b": 1}}))
    assert store.load("call-1").slots["a"] == 1 and "b" not in store.load("call-1").slots
    store.close()


def test_bad_settings_are_refused(store: vs.Store) -> None:
    create_server(store, agent="x" * 128)  # the core's limit
    bad_settings = ({"agent": ""}, {"agent": "x" * 129}, {"agent": "a\tb"}, {"idle_release": 0})
    for bad in (*bad_settings, {"idle_release": "5"}, {"idle_release": float("nan")}):
        with pytest.raises(vs.ConfigError):
            create_server(store, **bad)  # type: ignore[arg-type]
    with pytest.raises(vs.ConfigError, match="16 characters"):
        create_server(store, bearer_token="short")


async def test_a_format_that_is_not_json_is_refused(store: vs.Store) -> None:
    triage_call(store)

    class Objects:
        @vsp.hookimpl
        def register_formats(self, register: Any) -> None:
            register("objects", lambda state, policy, agent=None: [object()])

    plugin = Objects()
    vsp.register_plugin(plugin, name="objects-format")
    try:
        async with Client(create_server(store)) as c:
            text = error(await c.call_tool("get_context", {"call_id": "call-1", "format": "objects"}))
            assert "not JSON" in text and "'openai'" in text
            unknown = error(await c.call_tool("get_context", {"call_id": "call-1", "format": "nope"}))
            assert "unknown context format 'nope'" in unknown
    finally:
        vsp.unregister_plugin(plugin)


async def test_ending_a_held_call_lets_it_go(store: vs.Store) -> None:
    packet = triage_call(store)
    async with Client(create_server(store, agent="billing")) as c:
        result(await c.call_tool("redeem_handoff", {"packet": packet.to_json()}))
        ended = result(await c.call_tool("end_call", {"call_id": "call-1", "reason": "resolved"}))
        assert ended["status"] == "ended"
        assert result(await c.call_tool("get_call", {"call_id": "call-1"}))["held_by_this_server"] is False
        assert "has ended" in error(await c.call_tool("redeem_handoff", {"packet": "call-1"}))
    assert store.load("call-1").ended_reason == "resolved"
