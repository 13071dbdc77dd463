"""voicestate-mcp: what a tool call costs, in-process and over streamable HTTP, against the same
operation through the Python API, in one run, on one SQLite store.

- get_context of a 200-turn call (the Python API: ``aload`` + ``context("openai")``);
- a handoff as the receiving agent does it: redeem the packet's token, then hand the call on
  (the Python API: ``aresume(token)`` + ``ahandoff``), on a 200-turn call. The other agent
  redeems and hands back between samples, untimed.

The MCP server over HTTP is ``voicestate-mcp --transport streamable-http`` in a child process
on loopback, with its bearer token; the in-process one is the same server behind
``mcp.Client(server)``. A tool call that reads no store (``release_call`` of a call the
server does not hold) gives each transport's own cost.

    python -m vsbench.mcp_tools [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import voicestate as vs

from .common import KEYS, Figure, build_call, fresh, percentiles_us, timed_figure, unmeasured

TURNS = 200
TOKEN = "bench-bearer-token-0123456789abcdef"
ARMS = ("Python API", "MCP in-process", "MCP streamable HTTP")


def _missing() -> str | None:
    try:
        import mcp  # noqa: F401

        import voicestate_mcp  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install ./integrations/mcp)"
    return None


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _http_server(url: str) -> Iterator[str]:
    import httpx2

    port = _port()
    script = shutil.which("voicestate-mcp", path=str(Path(sys.executable).parent)) or "voicestate-mcp"
    env = {**os.environ, "VOICESTATE_MCP_TOKEN": TOKEN, "VOICESTATE_SIGNING_KEYS": KEYS}
    proc = subprocess.Popen(
        [script, "--store", url, "--agent", "billing", "--transport", "streamable-http", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx2.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
                break
            except httpx2.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("voicestate-mcp did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def _ok(r: Any) -> Any:
    if r.is_error:
        raise RuntimeError(r.content[0].text)
    return r.structured_content


async def _timed(fn: Callable[[], Awaitable[Any]]) -> int:
    t0 = time.perf_counter_ns()
    await fn()
    return time.perf_counter_ns() - t0


async def _measure(url: str, endpoint: str, samples: int, handoffs: int) -> dict[str, dict[str, list[int]]]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from voicestate_mcp import create_server

    store = vs.open_store(url, signing_keys=KEYS)
    out: dict[str, dict[str, list[int]]] = {op: {a: [] for a in ARMS} for op in ("context", "handoff", "ping")}
    # one call per arm, built alike; "triage" hands each to billing, its receiver
    tokens: dict[str, str] = {}
    for arm in ARMS:
        s = build_call(store, f"ctx-{arm}", TURNS)
        s.flush()
        s = build_call(store, f"ho-{arm}", TURNS)
        tokens[arm] = s.handoff("billing").to_token()
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    async with (
        Client(create_server(store, agent="billing")) as local,
        Client(streamable_http_client(endpoint, http_client=http)) as remote,
    ):
        clients = {"MCP in-process": local, "MCP streamable HTTP": remote}

        async def noop(arm: str) -> Any:
            return _ok(await clients[arm].call_tool("release_call", {"call_id": "not-held"}))

        async def context(arm: str) -> Any:
            cid = f"ctx-{arm}"
            if arm == "Python API":
                return (await store.aload(cid)).context("openai")
            return _ok(await clients[arm].call_tool("get_context", {"call_id": cid}))

        async def handoff(arm: str) -> str:
            """billing redeems and hands the call back to triage; returns the token for triage."""
            if arm == "Python API":
                s = await store.aresume(tokens[arm], agent="billing")
                packet = await s.ahandoff("triage")
                await s.__aexit__(None, None, None)
                return packet.to_token()
            client = clients[arm]
            _ok(await client.call_tool("redeem_handoff", {"packet": tokens[arm]}))
            offered = _ok(await client.call_tool("hand_off", {"call_id": f"ho-{arm}", "to_agent": "triage"}))
            return str(offered["token"])

        async def back(arm: str, token: str) -> None:
            """triage takes the call back and offers it to billing again (untimed)."""
            s = await store.aresume(token, agent="triage")
            tokens[arm] = (await s.ahandoff("billing")).to_token()
            await s.__aexit__(None, None, None)

        for arm in ARMS:  # warm up every path
            await context(arm)
            await back(arm, await handoff(arm))
        for _ in range(samples):
            for arm in ARMS:  # interleaved, so drift in the machine's load hits every arm alike
                out["context"][arm].append(await _timed(lambda arm=arm: context(arm)))
                if arm != "Python API":  # a tool call that touches no store: the transport's own cost
                    out["ping"][arm].append(await _timed(lambda arm=arm: noop(arm)))
        for _ in range(handoffs):
            for arm in ARMS:
                t0 = time.perf_counter_ns()
                token = await handoff(arm)
                out["handoff"][arm].append(time.perf_counter_ns() - t0)
                await back(arm, token)
    await http.aclose()
    await store.aclose()
    return out


def run(tmp: Path, samples: int = 200, handoffs: int = 100) -> list[Figure]:
    why = _missing()
    if why is not None:
        return [unmeasured("MCP tool calls", f"{TURNS} turns", why)]
    fresh()
    url = f"sqlite:///{tmp / 'mcp-bench.db'}"
    vs.open_store(url, signing_keys=KEYS).close()
    with _http_server(url) as endpoint:
        got = asyncio.run(_measure(url, endpoint, samples, handoffs))
    figures: list[Figure] = []
    names = {
        "context": f"get_context, {TURNS} turns",
        "handoff": f"redeem + hand off, {TURNS} turns",
    }
    transport = "a tool call that reads no store (release_call) on this transport"
    for op, title in names.items():
        for arm in ARMS:
            ping = percentiles_us(got["ping"][arm])["p50"] if arm != "Python API" else None
            figures.append(
                timed_figure(
                    f"MCP: {title}, {arm}",
                    f"{TURNS} turns",
                    got[op][arm],
                    got[op]["Python API"],
                    floor="the same operation through the Python API",
                    note=f"{transport}: p50 {ping:.0f} us" if ping is not None else "",
                )
            )
    return figures


def main() -> int:
    import argparse
    import tempfile

    from .report import markdown

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vsbench-mcp-") as tmp:
        figures = run(Path(tmp), *((30, 15) if args.quick else (200, 100)))
    print(markdown(figures, title="MCP tool calls", quick=args.quick, seconds=time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
