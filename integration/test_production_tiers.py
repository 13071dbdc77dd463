"""Tiers in production shape: ``memory://`` (cache) -> a real redis-server (deciding) ->
DynamoDB on moto's server (``write=behind``), end to end, with every tier read back alone.

The behind tier's faults are real network faults: its endpoint is a TCP gate (``Gate``) that
the test hangs or closes; nothing of the storage is mocked.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import attrs
import boto3  # type: ignore[import-untyped]
import pytest
import redis
from _support import (
    PREFIX,
    Gate,
    assert_full_log,
    behind_tier,
    ids,
    redis_tier,
    resume_in_another_process,
    seq_of,
    tier_log,
    tier_meta,
)

import voicestate as vs
from voicestate.backend import open_backend
from voicestate.testing import spawn
from voicestate_dynamodb.testing import REGION
from voicestate_redis.testing import RedisServer

Opener = Callable[..., vs.Store]


def three_tiers(server: RedisServer, dynamodb_url: str, **behind: Any) -> tuple[str, str, str]:
    return ("memory://", redis_tier(server.url, timeout=0.5), behind_tier(dynamodb_url, **behind))


def lranges(server: RedisServer) -> int:
    """How many LRANGEs (reads of a call's events; scripts' commands included) the server ran."""
    client = redis.Redis(port=server.port)
    try:
        stats: dict[str, Any] = client.info("commandstats")
        return int(stats.get("cmdstat_lrange", {}).get("calls", 0))
    finally:
        client.close()


def billing_call(store: vs.Store, call_id: str) -> vs.Session:
    """A call as triage records it: a barge-in, a tool call still running, a fact."""
    s = store.open(call_id, agent="triage", meta={"channel": "sip", "caller": "+15550100"})
    s.record(vs.UserSpoke("I was charged twice"))
    turn = s.record(vs.AgentSpoke("Let me pull up your invoices and check both charges"))
    s.record(vs.Interrupted(turn=turn, heard="Let me pull up your", heard_ms=910))
    s.record(vs.UserSpoke("it was on the third"))
    s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}), vs.SlotsSet({"account_id": "A-77"}))
    return s


def ddb_event_ranges(dynamodb_url: str, call_id: str) -> list[tuple[int, int]]:
    """(first seq, last seq) of every event item DynamoDB holds for the call, in key order."""
    table = dynamodb_url.split("://", 1)[1].split("?", 1)[0]
    endpoint = dynamodb_url.split("endpoint_url=", 1)[1].split("&", 1)[0]
    client = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    items = client.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :e)",
        ExpressionAttributeValues={":pk": {"S": call_id}, ":e": {"S": "e#"}},
        ConsistentRead=True,
    )["Items"]
    out = []
    for item in items:
        first = int(item["sk"]["S"].split("#")[2])
        if item["sk"]["S"].endswith("#000"):
            out.append((first, int(item["last"]["N"])))
    return out


def assert_written_once_in_order(dynamodb_url: str, call_id: str, seq: int) -> None:
    """DynamoDB's event items cover 1..seq exactly once, each write after the one before."""
    ranges = ddb_event_ranges(dynamodb_url, call_id)
    assert ranges, "no event items"
    assert ranges[0][0] == 1 and ranges[-1][1] == seq, ranges
    for (_, last), (first, _) in itertools.pairwise(ranges):
        assert first == last + 1, f"a gap or an overlap between writes: {ranges}"


# -- 1. end to end, no faults -----------------------------------------------------------------------


def test_a_call_end_to_end_over_memory_redis_and_dynamodb(
    opener: Opener, redis_server: RedisServer, dynamodb_url: str
) -> None:
    urls = three_tiers(redis_server, dynamodb_url)
    redis_url, ddb_url = urls[1], urls[2]
    front = opener(*urls)
    call_id = "call-e2e"
    a = billing_call(front, call_id)
    assert [t.write for t in front.tiers.all] == ["through", "through", "behind"]
    assert front.tiers.deciding.url.startswith(redis_server.url)

    # write-through: the cache holds what the deciding tier accepted, byte for byte
    decided = tier_log(redis_url, call_id)
    assert_full_log(decided, call_id, a.seq)
    assert front.tiers.hot[0].backend.load(call_id) == decided

    # read-through: a fresh store's memory tier is empty, a read refills it from Redis ...
    reader = opener(*urls)
    assert reader.tiers.hot[0].backend.load(call_id) == []
    before = lranges(redis_server)
    assert ids(reader.events(call_id)) == ids(decided)
    assert lranges(redis_server) == before + 1
    assert reader.tiers.hot[0].backend.load(call_id) == decided
    # ... and the next read takes the events from it: Redis is asked for the metadata only
    assert reader.load(call_id) == a.state
    assert ids(reader.events(call_id)) == ids(decided)
    assert lranges(redis_server) == before + 1

    # a handoff is a through-tier barrier; the receiver is another store object
    packet = a.handoff(to="billing", reason="double charge")
    assert seq_of(redis_url, call_id) == a.seq
    receiver = opener(*urls)
    b = receiver.resume(packet.to_json(), agent="billing")
    st = b.state
    assert (st.owner, st.epoch) == ("billing", 2)
    assert [t.text for t in st.turns][:2] == [
        "I was charged twice",
        "Let me pull up your invoices and check both charges",
    ]
    assert (st.turns[1].interrupted, st.turns[1].heard, st.turns[1].heard_ms) == (True, "Let me pull up your", 910)
    assert [t.call_id for t in st.pending_tools()] == ["t1"]
    assert st.slots == {"account_id": "A-77"}
    assert receiver.tiers.hot[0].backend.load(call_id) == tier_log(redis_url, call_id)  # refilled

    # the old owner is fenced: its write is refused and lands in no tier
    zombie = vs.Note("zombie: the old owner still talking")
    with pytest.raises(vs.FencedError):
        a.record(zombie)

    b.record(vs.ToolReturned("t1", result={"charges": 2}))
    b.record(vs.AgentSpoke("I see two charges on the third; one is a duplicate"))
    b.flush(all_tiers=True)  # every tier, the behind one included
    decided = tier_log(redis_url, call_id)
    assert_full_log(decided, call_id, b.seq)
    assert tier_log(ddb_url, call_id) == decided  # seq, id, bytes, chain, epoch, final
    assert receiver.tiers.hot[0].backend.load(call_id) == decided

    # the first store's cache is behind now: a read refills what it lacks
    assert front.load(call_id) == b.state
    assert front.tiers.hot[0].backend.load(call_id) == decided

    # ordered replay: a watcher from seq 0 gets the whole log in seq order, then the end
    end_seq = b.end("resolved")
    watched = list(reader.watch(call_id, after=0, timeout=5))
    assert [e.seq for e in watched] == list(range(1, end_seq + 1))
    assert isinstance(watched[-1], vs.CallEnded)

    decided = tier_log(redis_url, call_id)
    assert [e.id for e in watched] == ids(decided)
    assert_full_log(decided, call_id, end_seq)
    assert decided[-1].final
    assert tier_log(ddb_url, call_id) == decided  # end() waited for the behind tier
    assert_written_once_in_order(dynamodb_url, call_id, end_seq)
    for store in (front, reader, receiver):  # nobody's tier holds the fenced write
        for tier in store.tiers.all:
            assert zombie.id not in ids(tier.backend.load(call_id)), tier.url


@pytest.mark.slow
def test_a_handoff_to_another_os_process(opener: Opener, redis_server: RedisServer, dynamodb_url: str) -> None:
    urls = three_tiers(redis_server, dynamodb_url)
    store = opener(*urls)
    call_id = "call-proc"
    a = billing_call(store, call_id)
    packet = a.handoff(to="billing", reason="double charge")

    [seen] = spawn(resume_in_another_process, [(list(urls), packet.to_json())], timeout=60)
    assert not (isinstance(seen, tuple) and seen[0] == "error"), seen
    assert seen["empty_before"] is True  # the child's memory tier started empty ...
    assert seen["refilled"] is True  # ... and held the whole log once it resumed
    assert (seen["owner"], seen["epoch"]) == ("billing", 2)
    assert seen["heard"][1] == "Let me pull up your" and seen["interrupted"][1] is True
    assert seen["pending"] == ["t1"] and seen["slots"] == {"account_id": "A-77"}

    with pytest.raises(vs.FencedError):  # the child redeemed the packet
        a.record(vs.Note("too late"))
    decided = tier_log(urls[1], call_id)
    assert ids(decided) == seen["ids"]
    assert_full_log(decided, call_id, seen["end_seq"])
    assert decided[-1].final
    assert tier_log(urls[2], call_id) == decided  # the child's end() waited for DynamoDB
    state = store.load(call_id)
    assert (state.status, state.seq) == ("ended", seen["end_seq"])
    assert state.tools["t1"].status == "ok"
    assert store.tiers.hot[0].backend.load(call_id) == decided  # this process's cache refilled


# -- deletion ---------------------------------------------------------------------------------------


def test_delete_reaches_every_tier_and_leaves_only_tombstones(
    opener: Opener, redis_server: RedisServer, dynamodb_url: str
) -> None:
    urls = three_tiers(redis_server, dynamodb_url)
    store = opener(*urls)
    call_id = "call-del"
    s = billing_call(store, call_id)
    s.flush(all_tiers=True)
    old = tier_log(urls[1], call_id)
    assert tier_log(urls[2], call_id) == old and len(old) == s.seq

    assert store.delete(call_id) is True
    with pytest.raises(vs.CallNotFound):
        store.load(call_id)
    assert call_id not in [c.call_id for c in store.calls()]
    hot = store.tiers.hot[0].backend
    assert hot.get_meta(call_id) is None and hot.load(call_id) == []
    for url in urls[1:]:
        assert tier_meta(url, call_id) is None, url
        assert tier_log(url, call_id) == [], url

    # Redis: of the call's keys only the tombstone is left (the first event's chain value)
    client = redis.Redis(port=redis_server.port)
    keys = sorted(k.decode() for k in client.scan_iter(match=f"{PREFIX}:{{{call_id}}}:*"))
    assert keys == [f"{PREFIX}:{{{call_id}}}:x"]
    assert client.get(keys[0]) == old[0].chain
    assert client.pttl(keys[0]) > 0  # it goes after tombstone_ttl
    client.close()
    # DynamoDB: only the tomb item, holding the first event's chain value
    table = dynamodb_url.split("://", 1)[1].split("?", 1)[0]
    endpoint = dynamodb_url.split("endpoint_url=", 1)[1].split("&", 1)[0]
    ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    items = ddb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": call_id}},
        ConsistentRead=True,
    )["Items"]
    assert [i["sk"]["S"] for i in items] == ["tomb"]
    assert items[0]["chain"]["B"] == old[0].chain

    # a late write of the old log (a straggling behind writer) does not bring it back
    for url in urls[1:]:
        backend = open_backend(url.replace("&write=behind", ""))
        try:
            assert backend.write_at(call_id, old, None) == 0, url
            assert backend.get_meta(call_id) is None, url
        finally:
            backend.close()

    # the session of the deleted call writes nowhere
    with pytest.raises((vs.CallNotFound, vs.FencedError)):
        s.record(vs.Note("after the delete"))
    for url in urls[1:]:
        assert tier_log(url, call_id) == [], url

    # a new call of the same id is another log; every tier ends up holding it, not the old one
    again = store.open(call_id, agent="triage")
    again.record(vs.UserSpoke("a new call, same id"))
    again.flush(all_tiers=True)
    new = tier_log(urls[1], call_id)
    assert_full_log(new, call_id, 2)
    assert new[0].chain != old[0].chain
    assert tier_log(urls[2], call_id) == new
    assert hot.load(call_id) == new


@pytest.mark.slow
def test_a_behind_write_in_flight_elsewhere_does_not_bring_a_deleted_call_back(
    opener: Opener, redis_server: RedisServer, dynamodb_url: str, gate: Gate
) -> None:
    """One process (``writer``) creates the call while its link to DynamoDB is slow, so its
    behind writer still holds the call's first batch; another process (``admin``) deletes the
    call from every tier meanwhile. Documented (concepts.md, "Listing and retention"): a behind
    writer still holding a queued batch of the deleted call, in this process or another, is
    refused."""
    gate.delay = 0.4  # every request from the writer's process reaches DynamoDB 0.4 s late
    slow = three_tiers(redis_server, dynamodb_url, endpoint=gate.endpoint)
    writer = opener(*slow)
    admin = opener(*three_tiers(redis_server, dynamodb_url))
    call_id = "call-late"
    s = writer.open(call_id, agent="triage")
    s.record(vs.UserSpoke("please forget me"))
    assert tier_meta(dynamodb_url, call_id) is None  # nothing reached DynamoDB yet

    assert admin.delete(call_id) is True
    writer.config = attrs.evolve(writer.config, barrier_timeout=20.0)
    t0 = time.monotonic()
    writer.close()  # waits for the writer's behind queue
    assert time.monotonic() - t0 < 15
    with pytest.raises(vs.CallNotFound):
        admin.load(call_id)
    assert tier_meta(slow[1], call_id) is None
    assert tier_log(dynamodb_url, call_id) == [], "the deleted call is back in DynamoDB"
    assert tier_meta(dynamodb_url, call_id) is None


# -- 2. the behind queue's backpressure ---------------------------------------------------------------


@pytest.mark.slow
def test_behind_queue_backpressure_then_backfill_in_seq_order(
    opener: Opener, redis_server: RedisServer, dynamodb_url: str, gate: Gate
) -> None:
    limit = 8
    gate.set("hung")  # DynamoDB accepts connections and never answers
    urls = three_tiers(redis_server, dynamodb_url, endpoint=gate.endpoint, timeout=1.0)
    store = opener(*urls, behind_queue=limit, barrier_timeout=1.0)
    writer = store.tiers.writer
    assert writer is not None
    call_id = "call-bp"
    s = store.open(call_id, agent="triage")
    n = 40
    latencies = []
    for i in range(n):
        t0 = time.monotonic()
        s.record(vs.UserSpoke(f"said while DynamoDB hangs {i}"))
        latencies.append(time.monotonic() - t0)
    print(f"\n[figure] record latency with the behind tier hung: max {max(latencies) * 1000:.1f} ms")
    assert max(latencies) < 0.5  # the append path never waits for the behind tier
    # the queue never held more than `limit` events: the rest were not queued but marked for
    # backfill (at most two queue-fulls can have left it: one being written, one queued)
    assert writer.dropped >= (n + 1) - 2 * limit, writer.dropped
    assert writer.pending() <= limit + 3

    t0 = time.monotonic()
    s.flush()  # through tiers only: returns at once
    assert time.monotonic() - t0 < 0.5
    t0 = time.monotonic()
    with pytest.raises(vs.BackendUnavailable, match="write=behind"):
        s.flush(all_tiers=True)
    waited = time.monotonic() - t0
    print(f"[figure] flush(all_tiers=True) with the behind tier hung raised after {waited:.2f} s (barrier_timeout 1.0)")
    assert 0.9 < waited < 1.0 + 1.5
    assert s.record(vs.Note("a failed barrier does not break the session")) == n + 2

    direct = dynamodb_url  # DynamoDB read past the gate: the gap is there
    assert tier_meta(direct, call_id) is None
    assert seq_of(urls[1], call_id) == n + 2

    gate.set("open")
    store.config = attrs.evolve(store.config, barrier_timeout=30.0)
    t0 = time.monotonic()
    s.flush(all_tiers=True)
    caught_up = time.monotonic() - t0
    print(f"[figure] backfill of {n + 2} events once DynamoDB answered again: {caught_up:.2f} s")
    decided = tier_log(urls[1], call_id)
    assert_full_log(decided, call_id, n + 2)
    assert tier_log(direct, call_id) == decided
    assert_written_once_in_order(dynamodb_url, call_id, n + 2)

    s.record(vs.UserSpoke("and the call goes on"))
    seq = s.end("resolved")
    decided = tier_log(urls[1], call_id)
    assert_full_log(decided, call_id, seq)
    assert tier_log(direct, call_id) == decided and decided[-1].final
    assert_written_once_in_order(dynamodb_url, call_id, seq)
