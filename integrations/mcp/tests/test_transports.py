"""The server as users run it: `voicestate-mcp` in a child process, over stdio and over
streamable HTTP on loopback (a bearer token required before anything else)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from conftest import KEYS, free_port
from kit import HEARD, UNHEARD, result, triage_call
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

import voicestate as vs

TOKEN = "a-test-bearer-token-0123456789abcdef"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICESTATE_")}
    env["VOICESTATE_SIGNING_KEYS"] = KEYS
    env.update(extra)
    return env


def _script() -> str:
    found = shutil.which("voicestate-mcp", path=str(Path(sys.executable).parent))
    assert found, "the console script voicestate-mcp is installed beside the interpreter"
    return found


async def test_stdio_subprocess(store: vs.Store, url: str) -> None:
    packet = triage_call(store)
    params = StdioServerParameters(command=_script(), args=["--store", url, "--agent", "billing"], env=_env())
    async with Client(params) as c:
        brief = result(await c.call_tool("redeem_handoff", {"packet": packet.to_token()}))
        assert brief["epoch"] == 2
        ctx = result(await c.call_tool("get_context", {"call_id": "call-1"}))
        assert HEARD in str(ctx["context"]) and UNHEARD not in str(ctx["context"])
        result(await c.call_tool("set_slots", {"call_id": "call-1", "values": {"refund": "ok"}}))
    # the child process is gone; what it wrote as the owner is in the shared store
    state = store.load("call-1")
    assert (state.owner, state.epoch, state.slots["refund"]) == ("billing", 2, "ok")


@contextlib.contextmanager
def http_server(url: str, *args: str, token: str | None = TOKEN, host: str = "127.0.0.1") -> Iterator[str]:
    port = free_port()
    env = _env(**({"VOICESTATE_MCP_TOKEN": token} if token else {}))
    cmd = [sys.executable, "-m", "voicestate", "mcp", "serve", "--store", url, "--transport", "streamable-http"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), *args], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx2.get(f"http://{host}:{port}/mcp", timeout=1)
                break
            except httpx2.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = proc.stderr.read() if proc.stderr else ""
                    raise AssertionError(f"the server did not start: {why}") from None
                time.sleep(0.1)
        yield f"http://{host}:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def _client(endpoint: str, token: str | None) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(streamable_http_client(endpoint, http_client=httpx2.AsyncClient(headers=headers, timeout=30)))


async def test_streamable_http_needs_the_token(store: vs.Store, url: str) -> None:
    packet = triage_call(store)
    with http_server(url, "--agent", "billing") as endpoint:
        for token in (None, "wrong-token-0123456789abcdef"):
            bare = httpx2.post(
                endpoint,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Authorization": f"Bearer {token}"} if token else {},
            )
            assert bare.status_code == 401 and "WWW-Authenticate" in bare.headers
            with pytest.raises(ExceptionGroup) as refused:  # the SDK's task groups wrap the refusal
                async with _client(endpoint, token) as c:
                    await c.call_tool("redeem_handoff", {"packet": packet.to_token()})
            assert refused.group_contains(MCPError, match="error response")
        assert store.load("call-1").owner == "triage"  # nothing got through
        async with _client(endpoint, TOKEN) as c:
            brief = result(await c.call_tool("redeem_handoff", {"packet": packet.to_token()}))
            assert brief["agent"] == "billing"
            listed = result(await c.call_tool("list_calls", {}))
            assert listed["calls"][0]["owner"] == "billing"
    assert store.load("call-1").owner == "billing"


def test_http_refuses_to_start_without_a_token(url: str, tmp_path: Path) -> None:
    cmd = [_script(), "--store", url, "--transport", "streamable-http", "--port", str(free_port())]
    ran = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1
    assert "needs a bearer token" in ran.stderr and "VOICESTATE_MCP_TOKEN" in ran.stderr
    weak = tmp_path / "token"
    weak.write_text("short\n")
    ran = subprocess.run([*cmd, "--token-file", str(weak)], env=_env(), capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1 and "at least 16 characters" in ran.stderr
    ran = subprocess.run([*cmd, "--token-file", str(tmp_path / "absent")], env=_env(), capture_output=True, text=True)
    assert ran.returncode == 1 and "cannot read the token file" in ran.stderr


def test_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicestate_mcp._auth import load_token

    path = tmp_path / "token"
    path.write_text(TOKEN + "\nignored\n")
    monkeypatch.setenv("VOICESTATE_MCP_TOKEN", "from-the-environment-0123456789")
    assert load_token(str(path)) == TOKEN  # the file wins over the environment
    assert load_token(None) == "from-the-environment-0123456789"
    monkeypatch.delenv("VOICESTATE_MCP_TOKEN")
    assert load_token(None) is None


def test_the_cli_lists_the_command(url: str) -> None:
    ran = subprocess.run([sys.executable, "-m", "voicestate", "mcp", "serve", "--help"], capture_output=True, text=True)
    assert ran.returncode == 0
    for option in ("--store", "--agent", "--transport", "--host", "--port", "--token-file", "--require-packet"):
        assert option in ran.stdout
