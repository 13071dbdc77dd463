"""Calls the tests start from: a triage agent that records a barge-in and a running tool, then hands off."""

from __future__ import annotations

import asyncio
from typing import Any

from mcp.shared.subscriptions import ResourceUpdated

import voicestate as vs

HEARD = "Let me pull up"
UNHEARD = "your invoices and refund the second charge"


def triage_call(store: vs.Store, call_id: str = "call-1", to: str = "billing", **handoff: Any) -> vs.HandoffPacket:
    """A call in which the caller cut triage off, a lookup is still running, and triage handed off."""
    with store.open(call_id, agent="triage", meta={"channel": "sip"}) as s:
        s.record(vs.UserSpoke("I was charged twice for my March invoice"))
        turn = s.record(vs.AgentSpoke(f"{HEARD} {UNHEARD}"))
        s.record(vs.Interrupted(turn=turn, heard=HEARD, heard_ms=910))
        s.record(vs.UserSpoke("It's account A-77"))
        s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))
        s.record(vs.SlotsSet({"account_id": "A-77"}))
        s.record(vs.SlotsSet({"triage_score": 3}, scope="agent:triage"))
        return s.handoff(to, reason="double charge", **handoff)


def result(r: Any) -> Any:
    """A tool call's structured result; fails the test, with the error text, if the tool failed."""
    assert not r.is_error, r.content[0].text if r.content else r
    return r.structured_content


def error(r: Any) -> str:
    """A tool call's error text; fails the test if the tool succeeded."""
    assert r.is_error, r.structured_content
    assert r.structured_content is None
    text: str = r.content[0].text
    assert "Traceback" not in text
    return text


async def next_update(sub: Any, timeout: float = 10) -> ResourceUpdated:
    """The next resource update a listen stream delivers, within ``timeout`` seconds."""

    async def first() -> ResourceUpdated:
        async for event in sub:
            if isinstance(event, ResourceUpdated):
                return event
        raise AssertionError("the listen stream ended")

    return await asyncio.wait_for(first(), timeout)
