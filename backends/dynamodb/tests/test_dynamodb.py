"""voicestate-dynamodb's own behaviour: requests per append, a call well past 400 KB,
URL options, expiry, and ``voicestate dynamodb create-table``."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import voicestate as vs
import voicestate.backend as vsb
from voicestate.testing import make_events


def _update(*, expires_in: float = 3600.0, tenant: str | None = None) -> vsb.MetaUpdate:
    now = time.time()
    return vsb.MetaUpdate("a", None, now + 60, now + expires_in, now, tenant)


@pytest.fixture
def backend(store_url: str) -> Iterator[Any]:
    b = vsb.open_backend(store_url)
    try:
        yield b
    finally:
        b.close()


class _Requests:
    """Counts the requests a botocore client sends (its ``before-send`` event)."""

    def __init__(self, client: Any) -> None:
        self.ops: list[str] = []
        client.meta.events.register("before-send.dynamodb", self._seen)

    def _seen(self, request: Any, **_: Any) -> None:
        self.ops.append(request.headers.get("X-Amz-Target", b"").decode().rsplit(".", 1)[-1])


def test_one_request_per_append(backend: Any) -> None:
    evs = make_events("rt", [vs.CallStarted()])
    assert backend.append("rt", evs, 0, 1, None, _update()).status == "ok"
    seen = _Requests(backend.client)
    head, seq = evs[-1].chain, 1
    for i in range(20):
        more = make_events("rt", [vs.Note(f"n{i}"), vs.UserSpoke("hello " * 50)], start_seq=seq, head=head)
        before = len(seen.ops)
        assert backend.append("rt", more, seq, 1, head, _update()).status == "ok"
        assert seen.ops[before:] == ["TransactWriteItems"]  # one request, however long the call
        head, seq = more[-1].chain, more[-1].seq
    assert [e.seq for e in backend.load("rt")] == list(range(1, seq + 1))


def test_a_duplicate_costs_a_request_and_reports_its_seq(backend: Any) -> None:
    evs = make_events("dup", [vs.CallStarted(), vs.Note("x")])
    assert backend.append("dup", evs, 0, 1, None, _update()).status == "ok"
    seen = _Requests(backend.client)
    result = backend.append("dup", evs[1:], 1, 1, evs[0].chain, _update())
    assert result.status == "duplicate" and result.duplicates == {evs[1].id: 2}
    assert len(seen.ops) <= 3


def test_a_call_of_2400_events_well_past_400_kb(backend: Any) -> None:
    """The benchmark's shape: 1,000 turns (user, agent, a tool call now and then), byte for byte."""
    call_id = f"long-{uuid.uuid4().hex[:6]}"
    kinds: list[vs.Event] = [vs.CallStarted()]
    for t in range(1000):
        kinds.append(vs.UserSpoke(f"turn {t}: " + "what the caller said, at some length. " * 4))
        kinds.append(vs.Note(f"agent {t}: " + "what the agent answered, at some length too. " * 4))
        if t % 5 == 0 or t % 5 == 2:
            kinds.append(vs.Note(f"tool {t}"))
    kinds = kinds[:2400]
    evs = make_events(call_id, kinds)
    assert len(evs) == 2400 and sum(len(e.data) for e in evs) > 400_000
    seq, head = 0, None
    # appends of 20 events: moto copies the table at every transaction (its cost grows with
    # the table, DynamoDB's does not), and one append per event would take minutes here
    for i in range(0, len(evs), 20):
        batch = evs[i : i + 20]
        assert backend.append(call_id, batch, seq, 1, head, _update()).status == "ok"
        seq, head = batch[-1].seq, batch[-1].chain
    assert backend.load(call_id) == evs
    assert backend.load(call_id, 1000, 1010) == evs[999:1010]
    # and a single write of all 2,400 (a backfill), into another call
    copy = make_events("copy", kinds)
    assert backend.write_at("copy", copy, _update()) == 2400
    assert backend.load("copy") == copy
    assert backend.high_water("copy") == 2400


def test_large_events_and_snapshots_split_across_items(backend: Any) -> None:
    big = vs.Note("x" * 600_000)  # over the 400 KB item limit on its own
    evs = make_events("big", [vs.CallStarted(), big])
    assert backend.append("big", evs, 0, 1, None, _update()).status == "ok"
    assert backend.load("big") == evs
    snap = vsb.Snapshot(2, evs[-1].chain, b"s" * 900_000)
    backend.put_snapshot("big", snap)
    assert backend.get_snapshot("big") == snap


def test_an_expired_call_is_absent_before_ttl_deletes_it(backend: Any) -> None:
    evs = make_events("exp", [vs.CallStarted()])
    assert backend.append("exp", evs, 0, 1, None, _update(expires_in=0.5)).status == "ok"
    assert backend.get_meta("exp") is not None
    time.sleep(0.7)
    assert backend.get_meta("exp") is None and backend.load("exp") == [] and backend.list_calls(None, None, 10) == []
    again = make_events("exp", [vs.CallStarted(), vs.Note("new")])
    assert backend.append("exp", again, 0, 1, None, _update()).status == "ok"
    assert backend.load("exp") == again


@pytest.mark.parametrize("query", ["nope=1", "timeout=abc", "timeout=0", "tombstone_ttl=inf", "ttl_slack=nan"])
def test_bad_url_options_are_refused(dynamodb_url: str, query: str) -> None:
    with pytest.raises(vs.ConfigError):
        vsb.open_backend(f"{dynamodb_url}&{query}")


def test_the_url_reopens_the_backend(store_url: str) -> None:
    b = vsb.open_backend(store_url)
    try:
        assert b.append("u", make_events("u", [vs.CallStarted()]), 0, 1).status == "ok"
        again = vsb.open_backend(b.url)  # what the multi-process suites do in their children
        try:
            assert again.url == b.url and again.get_meta("u") == b.get_meta("u")
        finally:
            again.close()
    finally:
        b.close()


def test_create_table_from_the_cli(dynamodb_url: str) -> None:
    if "endpoint_url=" not in dynamodb_url:
        pytest.skip("creates a table: only against the test server")
    table = f"cli{uuid.uuid4().hex[:8]}"
    url = dynamodb_url.replace("dynamodb://calls?", f"dynamodb://{table}?")
    out = subprocess.run(
        [sys.executable, "-m", "voicestate", "dynamodb", "create-table", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert table in out.stdout
    b = vsb.open_backend(url)
    try:
        ttl = b.client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")
        desc = b.client.describe_table(TableName=table)["Table"]
        assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert b.append("c", make_events("c", [vs.CallStarted()]), 0, 1).status == "ok"
    finally:
        b.close()
