"""voicestate-redis on a Redis Cluster: the key layout, sharded notifications, listing across
buckets, and a call whose slot moves to another node in the middle of the call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

import voicestate as vs
import voicestate.backend as vsb
from voicestate.testing import make_events

KEYS = "k1:a-secret-of-16-bytes-or-more"


def _update(tenant: str | None = None) -> vsb.MetaUpdate:
    now = time.time()
    return vsb.MetaUpdate("a", None, now + 60, now + 3600, now, tenant)


@pytest.fixture
def backend(cluster_store_url: str) -> Iterator[Any]:
    b = vsb.open_backend(cluster_store_url)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def admin(cluster_url: str) -> Iterator[RedisCluster]:
    parts = urlsplit(cluster_url)
    client = RedisCluster(host=parts.hostname, port=parts.port or 6379, socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


def _node_client(admin: RedisCluster, node: Any) -> redis.Redis:
    return redis.Redis(host=node.host, port=node.port, socket_timeout=5)


def test_a_call_and_its_index_entry_share_one_slot(backend: Any, admin: RedisCluster, cluster_store_url: str) -> None:
    prefix = cluster_store_url.split("prefix=", 1)[1]
    for call_id in ("call-1", "we}ird{id%7D", "ünïcode call"):
        evs = make_events(call_id, [vs.CallStarted()])
        assert backend.append(call_id, evs, 0, 1, None, _update(tenant="t")).status == "ok"
        keys = backend._keys(call_id, "t")
        assert len({key_slot(k.encode()) for k in [*keys, backend._channel(call_id)]}) == 1
        assert admin.exists(*keys[:3]) == 3
        assert call_id.encode() in admin.zrange(keys[5], 0, -1)
        assert call_id.encode() in admin.zrange(keys[6], 0, -1)
        assert keys[0].startswith(f"{prefix}:{{b")
    assert [c for c, _ in backend.list_calls("t", None, 10)] == sorted(["call-1", "we}ird{id%7D", "ünïcode call"])


def test_listing_merges_the_buckets_in_call_id_order(cluster_url: str) -> None:
    b = vsb.open_backend(f"{cluster_url}?prefix=lst{time.time_ns()}&buckets=16")
    try:
        ids = [f"c{i:03d}" for i in range(150)]
        for call_id in ids:
            b.append(call_id, make_events(call_id, [vs.CallStarted()]), 0, 1, None, _update())
        assert len({b._bucket(c) for c in ids}) == 16
        assert [c for c, _ in b.list_calls(None, None, 1000)] == ids
        got, after = [], None
        while True:
            page = [c for c, _ in b.list_calls(None, after, 7)]
            if not page:
                break
            got += page
            after = page[-1]
        assert got == ids
        assert b.delete("c005") and [c for c, _ in b.list_calls(None, "c003", 3)] == ["c004", "c006", "c007"]
    finally:
        b.close()


def test_watchers_are_woken_by_a_sharded_publish(backend: Any, admin: RedisCluster) -> None:
    evs = make_events("w1", [vs.CallStarted()])
    backend.append("w1", evs, 0, 1, None, _update())
    node = admin.get_node_from_key(backend._keys("w1")[0])
    client = _node_client(admin, node)
    before = int(client.info("commandstats").get("cmdstat_spublish", {}).get("calls", 0))
    nxt = make_events("w1", [vs.UserSpoke("hi")], start_seq=1, head=evs[-1].chain)
    timer = threading.Timer(0.2, lambda: backend.append("w1", nxt, 1, 1, evs[-1].chain, None))
    t0 = time.monotonic()
    timer.start()
    meta = backend.wait_for("w1", 1, 5.0)
    timer.join()
    assert meta is not None and meta.seq == 2 and time.monotonic() - t0 < 2.0
    assert int(client.info("commandstats")["cmdstat_spublish"]["calls"]) > before
    client.close()


def test_a_standalone_only_option_and_a_database_are_refused(cluster_url: str) -> None:
    with pytest.raises(vs.ConfigError, match="database 0"):
        vsb.open_backend(f"{cluster_url}/3")
    with pytest.raises(vs.ConfigError, match="buckets"):
        vsb.open_backend(f"{cluster_url}?buckets=0")


def _move_slot(admin: RedisCluster, slot: int, *, during: Any) -> None:
    """Move ``slot`` to another master the way ``redis-cli --cluster reshard`` does (SETSLOT
    IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE on every master), calling ``during()`` once
    the slot is MIGRATING; the keys move 0.3 s later and the slot 0.3 s after that."""
    source = admin.nodes_manager.get_node_from_slot(slot)
    target = next(n for n in admin.get_primaries() if n.name != source.name)
    src, dst = _node_client(admin, source), _node_client(admin, target)
    try:
        src_id = src.execute_command("CLUSTER", "MYID").decode()
        dst_id = dst.execute_command("CLUSTER", "MYID").decode()
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        during()
        time.sleep(0.3)
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10_000)
        assert keys
        src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
        assert src.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        time.sleep(0.3)
        for node in admin.get_primaries():
            c = _node_client(admin, node)
            c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            c.close()
    finally:
        src.close()
        dst.close()


def test_a_call_whose_slot_moves_mid_call_loses_and_duplicates_nothing(
    cluster_store_url: str, admin: RedisCluster
) -> None:
    store = vs.open_store(cluster_store_url, signing_keys=KEYS)
    raw = vsb.open_backend(cluster_store_url)
    try:
        s = store.open("moving-call", agent="triage")
        said: list[str] = []
        acked: list[int] = []

        def turns(tag: str, n: int) -> None:
            for i in range(n):
                said.append(f"{tag} {i}")
                acked.append(s.record(vs.UserSpoke(said[-1])))

        turns("before", 3)
        key = raw._keys("moving-call")[0]
        slot = key_slot(key.encode())
        old = admin.get_node_from_key(key).name
        # an append issued while the slot is MIGRATING: the server answers TRYAGAIN (the call's
        # keys are mid-move) and redis-py retries until the move is over, then follows MOVED
        mid = threading.Thread(target=turns, args=("during", 1))
        _move_slot(admin, slot, during=mid.start)
        mid.join(10)
        assert not mid.is_alive()
        turns("after", 3)  # the writer's slot map was stale: MOVED, followed
        s.record(vs.CallEnded())
        assert admin.cluster_keyslot(key) == slot
        fresh = RedisCluster(host=admin.get_default_node().host, port=admin.get_default_node().port)
        assert fresh.get_node_from_key(key).name != old  # the call lives on another master now
        fresh.close()

        check = vs.open_store(cluster_store_url, signing_keys=KEYS)
        texts = [t.text for t in check.load("moving-call").turns]  # loading verifies the chain
        assert texts == said  # every acknowledged event, once, in order
        assert acked == list(range(2, 2 + len(said)))
        log = raw.load("moving-call")
        assert [e.seq for e in log] == list(range(1, len(log) + 1))  # gapless
        assert len({e.id for e in log}) == len(log)  # no duplicate
        assert [c for c, _ in raw.list_calls(None, None, 10)] == ["moving-call"]  # the index moved with it
        check.close()
    finally:
        raw.close()
        store.close()
