"""voicestate.plugins.twin / run_flow / arun_flow: one body drives a sync and an async twin."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import voicestate.plugins as vsp


class Box:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def get(self, key: str) -> str:
        self.calls.append(f"get {key}")
        if key == "missing":
            raise KeyError(key)
        return key.upper()

    async def aget(self, key: str) -> str:
        self.calls.append(f"aget {key}")
        if key == "missing":
            raise KeyError(key)
        return key.upper()


def _lookup(box: Box, keys: list[str]) -> vsp.Flow[list[str]]:
    out = []
    for key in keys:
        try:
            out.append((yield vsp.twin(box.get, box.aget, key)))
        except KeyError:  # an error of the call is thrown into the flow
            out.append("?")
    return out


def test_the_same_flow_runs_sync_and_async() -> None:
    box = Box()
    assert vsp.run_flow(_lookup(box, ["a", "missing", "b"])) == ["A", "?", "B"]
    assert asyncio.run(vsp.arun_flow(_lookup(box, ["c"]))) == ["C"]
    assert box.calls == ["get a", "get missing", "get b", "aget c"]


def test_an_error_the_flow_does_not_catch_propagates() -> None:
    def flow(box: Box) -> vsp.Flow[Any]:
        return (yield vsp.twin(box.get, box.aget, "missing"))

    with pytest.raises(KeyError):
        vsp.run_flow(flow(Box()))
    with pytest.raises(KeyError):
        asyncio.run(vsp.arun_flow(flow(Box())))
