"""A tier outage is a tested scenario: the real redis-server (the deciding tier, append-only file
with ``appendfsync always``) is killed with SIGKILL in the middle of a call, or frozen with
SIGSTOP, and a process writing a call is killed before its behind queue drained.

What is asserted, from every tier read back alone (``memory://`` through the store, Redis and
DynamoDB each by a client of its own):

- the error surfaces within the bound the Redis URL implies, ``(retries + 1) × timeout``
  (docs/backends/redis.md), plus a margin for a loaded machine;
- nothing acknowledged is lost: after a new server process starts on the same data, every
  acknowledged event is in Redis and, after the next barrier, in DynamoDB;
- nothing unacknowledged appears in any tier, except an append whose outcome was genuinely in
  doubt (the server applied it, the reply was lost), which appears at most once;
- after Redis returns the same session goes on, and ``flush(all_tiers=True)`` leaves DynamoDB
  equal to Redis, byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _support import (
    Gate,
    assert_full_log,
    behind_tier,
    ids,
    is_prefix,
    record_then_wait,
    redis_tier,
    tier_log,
)

import voicestate as vs
from voicestate.backend import StoredEvent
from voicestate_redis.testing import RedisServer

Opener = Callable[..., vs.Store]

TIMEOUT = 0.5  # the Redis URL's timeout= (seconds)
RETRIES = 1  # and retries=
BOUND = (RETRIES + 1) * TIMEOUT  # docs/backends/redis.md: BackendUnavailable within about this
MARGIN = 1.0  # for a loaded 2-core machine


def tiers(server: RedisServer, dynamodb_url: str) -> tuple[str, str, str]:
    return (
        "memory://",
        redis_tier(server.url, timeout=TIMEOUT, retries=RETRIES),
        behind_tier(dynamodb_url),
    )


def hot_log(store: vs.Store, call_id: str) -> list[StoredEvent]:
    return list(store.tiers.hot[0].backend.load(call_id))


def assert_every_tier_agrees(store: vs.Store, urls: tuple[str, str, str], call_id: str, seq: int) -> None:
    decided = tier_log(urls[1], call_id)
    assert_full_log(decided, call_id, seq)
    assert tier_log(urls[2], call_id) == decided  # DynamoDB, byte for byte
    assert hot_log(store, call_id) == decided  # the memory tier


# -- SIGKILL between two appends ------------------------------------------------------------------


def test_sigkill_redis_between_appends(opener: Opener, redis_server: RedisServer, dynamodb_url: str) -> None:
    urls = tiers(redis_server, dynamodb_url)
    store = opener(*urls)
    call_id = "call-kill"
    s = store.open(call_id, agent="triage", meta={"channel": "sip"})
    acked: list[str] = []
    for text in ("I want to cancel my plan", "the premium one"):
        ev = vs.UserSpoke(text)
        s.record(ev)
        acked.append(ev.id)
    turn_ev = vs.AgentSpoke("I can help you cancel, but first let me check your contract")
    turn = s.record(turn_ev)
    cut = vs.Interrupted(turn=turn, heard="I can help you cancel", heard_ms=1200)
    tool = vs.ToolCalled("t1", "contract_terms", {"plan": "premium"})
    s.record(cut, tool)
    acked += [turn_ev.id, cut.id, tool.id]
    before = s.state
    assert s.seq == 1 + len(acked)

    redis_server.kill()  # SIGKILL mid-call: no chance to write anything more

    lost = vs.UserSpoke("said while Redis was dead")
    t0 = time.monotonic()
    with pytest.raises(vs.BackendUnavailable):
        s.record(lost)
    took = time.monotonic() - t0
    print(f"\n[figure] record after SIGKILL raised BackendUnavailable in {took * 1000:.1f} ms (bound {BOUND:g} s)")
    assert took < BOUND + MARGIN
    t0 = time.monotonic()
    with pytest.raises(vs.BackendUnavailable):
        store.append(call_id, vs.Note("a supervisor's note while Redis was dead"))
    took = time.monotonic() - t0
    print(f"[figure] store.append after SIGKILL raised in {took * 1000:.1f} ms")
    assert took < BOUND + MARGIN
    t0 = time.monotonic()
    with pytest.raises(vs.BackendUnavailable):
        store.load(call_id)  # a read needs the deciding tier's metadata
    assert time.monotonic() - t0 < BOUND + MARGIN
    assert s.state == before  # not acknowledged: not applied locally either
    assert lost.id not in ids(hot_log(store, call_id))  # nor in the memory tier

    redis_server.start()  # a new server process, same port and append-only file
    decided = tier_log(urls[1], call_id)
    assert ids(decided)[1:] == acked  # every acknowledged event, in order, and nothing else
    assert_full_log(decided, call_id, len(acked) + 1)
    assert is_prefix(tier_log(urls[2], call_id), decided)
    assert hot_log(store, call_id) == decided

    # the call goes on in the same session: the refused event is recorded again, once
    assert s.record(lost) == len(acked) + 2
    s.record(vs.ToolReturned("t1", result={"notice_days": 30}))
    seq = s.record(vs.AgentSpoke("Your plan ends in 30 days"))
    s.flush(all_tiers=True)
    assert_every_tier_agrees(store, urls, call_id, seq)
    decided = tier_log(urls[1], call_id)
    assert ids(decided).count(lost.id) == 1
    state = store.load(call_id)
    assert state == s.state
    assert state.turns[2].heard == "I can help you cancel" and state.tools["t1"].status == "ok"


# -- SIGKILL at a random moment while a thread records -----------------------------------------------


@pytest.mark.slow
def test_sigkill_redis_at_a_random_moment_while_recording(
    opener: Opener, redis_server: RedisServer, dynamodb_url: str
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    urls = tiers(redis_server, dynamodb_url)
    store = opener(*urls)
    call_id = "call-race"
    s = store.open(call_id, agent="triage")
    acked: list[str] = []  # event ids whose record returned
    doubtful: list[str] = []  # event ids whose record raised (refused, or stored and the reply lost)
    in_doubt_seen = 0

    def talk(
        round_: int, stop: threading.Event, failed: list[vs.Event], raised_at: list[float], errors: list[BaseException]
    ) -> None:
        i = 0
        while not stop.is_set():
            ev: vs.Event
            if i % 3 == 0:
                ev = vs.UserSpoke(f"r{round_} caller {i}")
            elif i % 3 == 1:
                ev = vs.AgentSpoke(f"r{round_} agent {i}")
            else:
                ev = vs.SlotsSet({f"k{i % 5}": i})
            try:
                s.record(ev)
            except vs.BackendUnavailable:
                raised_at.append(time.monotonic())
                failed.append(ev)
                return
            except BaseException as exc:  # anything else fails the test
                errors.append(exc)
                return
            acked.append(ev.id)
            i += 1

    for round_ in range(3):
        failed: list[vs.Event] = []
        errors: list[BaseException] = []
        raised_at: list[float] = []
        stop = threading.Event()
        thread = threading.Thread(target=talk, args=(round_, stop, failed, raised_at, errors), name=f"talker-{round_}")
        thread.start()
        time.sleep(rng.uniform(0.05, 0.4))
        killed_at = time.monotonic()
        redis_server.kill()
        thread.join(BOUND + MARGIN + 1.0)
        alive = thread.is_alive()
        stop.set()
        thread.join(10)
        assert not alive, f"seed {seed}: a record did not return within the bound after SIGKILL"
        assert not errors, errors
        assert len(failed) == 1 and raised_at, f"seed {seed}: the talker never failed"
        took = raised_at[0] - killed_at
        print(f"\n[figure] round {round_}: error surfaced {took * 1000:.1f} ms after SIGKILL (bound {BOUND:g} s)")
        assert took < BOUND + MARGIN
        ev = failed[0]
        doubtful.append(ev.id)
        assert ev.id not in ids(hot_log(store, call_id)), "an unacknowledged event is in the memory tier"

        redis_server.start()
        decided = tier_log(urls[1], call_id)
        got = ids(decided)
        # every acknowledged event survived SIGKILL, in the order acknowledged ...
        assert [i for i in got if i in set(acked)] == acked, f"seed {seed}"
        # ... and besides them only the in-doubt appends (the server applied one, the reply was lost)
        extra = [i for i in got[1:] if i not in set(acked)]
        assert set(extra) <= set(doubtful) and len(extra) == len(set(extra)), f"seed {seed}: {extra}"
        in_doubt_seen += ev.id in got
        assert_full_log(decided, call_id, len(decided))
        # every other tier holds a prefix of the deciding tier's log: same ids, bytes, order
        assert is_prefix(hot_log(store, call_id), decided), f"seed {seed}: memory tier"
        assert is_prefix(tier_log(urls[2], call_id), decided), f"seed {seed}: DynamoDB"

        # the same session goes on: the failed event again, stored once whichever way it went
        s.record(ev)
        acked.append(ev.id)
        after = ids(tier_log(urls[1], call_id))
        assert after.count(ev.id) == 1, f"seed {seed}"
        assert after[1:] == acked, f"seed {seed}: the log is not the acknowledged sequence"

    print(f"[figure] seed {seed}: {len(acked)} events acknowledged, {in_doubt_seen} of 3 failed appends in doubt")
    seq = s.record(vs.Note("after three outages"))
    s.flush(all_tiers=True)
    assert_every_tier_agrees(store, urls, call_id, seq)
    assert store.load(call_id) == s.state


# -- SIGSTOP: a hung server, an append in doubt ----------------------------------------------------------


@pytest.mark.slow
def test_sigstop_redis_the_append_in_doubt_is_stored_once(
    opener: Opener, redis_server: RedisServer, dynamodb_url: str
) -> None:
    urls = tiers(redis_server, dynamodb_url)
    store = opener(*urls)
    call_id = "call-stop"
    s = store.open(call_id, agent="triage")
    s.record(vs.UserSpoke("hello?"))
    before = s.state
    assert redis_server.proc is not None
    pid = redis_server.proc.pid
    ev = vs.AgentSpoke("sent to a frozen server: its reply never came")
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(vs.BackendUnavailable):
            s.record(ev)
        took = time.monotonic() - t0
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"\n[figure] record to a SIGSTOPped server raised after {took:.2f} s (bound {BOUND:g} s)")
    assert took < BOUND + MARGIN
    assert s.state == before
    assert ev.id not in ids(hot_log(store, call_id))

    deadline = time.monotonic() + 5
    while True:  # the server, woken, runs what it had received
        decided = tier_log(urls[1], call_id)
        if ev.id in ids(decided) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    print(f"[figure] the in-doubt append is in Redis after SIGCONT: {ev.id in ids(decided)}")
    assert ids(decided).count(ev.id) <= 1
    assert_full_log(decided, call_id, len(decided))
    assert is_prefix(hot_log(store, call_id), decided)
    assert is_prefix(tier_log(urls[2], call_id), decided)

    assert s.record(ev) == 3  # the retry (same event id) finds it or stores it: once
    seq = s.record(vs.UserSpoke("that took a while"))
    s.flush(all_tiers=True)
    assert_every_tier_agrees(store, urls, call_id, seq)
    assert ids(tier_log(urls[1], call_id)).count(ev.id) == 1
    assert [t.text for t in s.state.turns] == ["hello?", ev.text, "that took a while"]


# -- a process killed before its behind queue drained ---------------------------------------------------


@pytest.mark.slow
def test_a_killed_process_gap_is_backfilled_at_the_next_barrier(
    opener: Opener, redis_server: RedisServer, dynamodb_url: str, gate: Gate
) -> None:
    call_id = "call-dead"
    redis_url = redis_tier(redis_server.url, timeout=TIMEOUT, retries=RETRIES)
    # the child reaches DynamoDB through the gate, which the test closes halfway through
    child_urls = ["memory://", redis_url, behind_tier(dynamodb_url, endpoint=gate.endpoint, timeout=2.0)]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    child = ctx.Process(target=record_then_wait, args=(child_urls, call_id, out, go), daemon=True)
    child.start()
    try:
        kind, phase1 = out.get(timeout=60)
        assert kind == "phase1", phase1
        assert tier_log(dynamodb_url, call_id) == tier_log(redis_url, call_id)  # all tiers held it
        gate.set("closed")  # the child's DynamoDB is out of reach from now on
        go.set()
        kind, acked = out.get(timeout=60)
        assert kind == "acked", acked
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)  # its behind queue dies with it
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
    finally:
        if child.is_alive():
            child.kill()
            child.join(10)

    decided = tier_log(redis_url, call_id)
    last = acked[-1][1]
    assert [(e.id, e.seq) for e in decided[phase1:]] == [tuple(a) for a in acked]  # every acknowledged event
    assert_full_log(decided, call_id, last)
    archived = tier_log(dynamodb_url, call_id)
    assert len(archived) == phase1 and is_prefix(archived, decided)  # the gap the dead process left

    # a recovery worker in this process: the dead owner's lease (1 s) runs out, it takes over
    store = opener("memory://", redis_url, behind_tier(dynamodb_url))
    deadline = time.monotonic() + 10
    while call_id not in [c.call_id for c in store.calls(stale=True)]:
        assert time.monotonic() < deadline, "the dead owner's lease never ran out"
        time.sleep(0.1)
    r = store.resume(call_id, agent="recovery", takeover=True, from_epoch=1)
    assert [t.call_id for t in r.state.pending_tools()] == ["t7"]
    assert r.state.turns[1].heard == "Let me look"
    t0 = time.monotonic()
    r.flush(all_tiers=True)  # the barrier backfills the gap from Redis
    print(f"\n[figure] backfill of the dead process's gap at the next barrier: {time.monotonic() - t0:.2f} s")
    assert_every_tier_agrees(store, ("memory://", redis_url, behind_tier(dynamodb_url)), call_id, r.seq)
    archived = tier_log(dynamodb_url, call_id)
    assert {a[0] for a in acked} <= set(ids(archived))
    seq = r.end("recovered")
    assert tier_log(dynamodb_url, call_id) == tier_log(redis_url, call_id)
    assert tier_log(dynamodb_url, call_id)[-1].seq == seq


# -- the call goes on after Redis returns ----------------------------------------------------------------


def test_the_first_write_after_redis_returns_goes_through_with_default_retries(
    opener: Opener, redis_server: RedisServer, dynamodb_url: str
) -> None:
    """Redis restarts between two utterances (nobody wrote during the outage). The server is
    back and holds the call, so the next record should be stored: a server that is up is not
    a "lost or hung server" (docs/backends/redis.md)."""
    urls = ("memory://", redis_tier(redis_server.url, timeout=TIMEOUT, retries=0), behind_tier(dynamodb_url))
    store = opener(*urls)
    s = store.open("call-back", agent="triage")
    s.record(vs.UserSpoke("before the restart"))
    redis_server.kill()
    redis_server.start()
    assert s.record(vs.UserSpoke("after the restart")) == 3


# -- async: record_nowait across an outage ------------------------------------------------------------------


def test_record_nowait_across_a_sigkill_stays_queued_and_is_stored_once_in_order(
    opener: Opener, redis_server: RedisServer, dynamodb_url: str
) -> None:
    urls = tiers(redis_server, dynamodb_url)
    store = opener(*urls)
    call_id = "call-async"

    async def go() -> tuple[list[str], int]:
        async with store.aopen(call_id, agent="triage") as s:
            await s.arecord(vs.UserSpoke("can you hear me"))
            redis_server.kill()
            queued = [s.record_nowait(vs.AgentSpoke(f"queued while Redis was dead {i}")) for i in range(3)]
            assert [t.text for t in s.state.turns][-1] == "queued while Redis was dead 2"  # applied locally
            t0 = time.monotonic()
            with pytest.raises(vs.BackendUnavailable):
                await s.aflush()
            took = time.monotonic() - t0
            print(f"\n[figure] aflush with record_nowait events queued raised after {took * 1000:.1f} ms")
            assert took < BOUND + MARGIN
            held = [ids(hot_log(store, call_id)), ids(tier_log(urls[2], call_id))]
            assert not any(q in tier for tier in held for q in queued)  # queued is not stored
            await asyncio.to_thread(redis_server.start)
            assert not set(queued) & set(ids(tier_log(urls[1], call_id)))
            await s.aflush(all_tiers=True)  # the events stayed queued: stored now, in order
            return queued, s.seq

    queued, seq = asyncio.run(go())
    decided = tier_log(urls[1], call_id)
    assert ids(decided)[2:] == queued
    assert_every_tier_agrees(store, urls, call_id, seq)


# -- Redis without persistence: what the behind tier keeps -------------------------------------------------


@pytest.mark.slow
def test_a_volatile_redis_coming_back_empty_does_not_erase_the_behind_copy(
    opener: Opener, tmp_path: Path, dynamodb_url: str
) -> None:
    """docs/backends/redis.md, Durability: "without persistence, everything goes with the
    server ... Make the coldest durable tier (write=behind) something else if that matters."
    Here it is DynamoDB: it held every acknowledged event before Redis died."""
    (tmp_path / "volatile").mkdir()
    server = RedisServer(tmp_path / "volatile", persist=False)
    server.start()
    store: vs.Store | None = None
    try:
        urls = ("memory://", redis_tier(server.url, timeout=TIMEOUT, retries=RETRIES), behind_tier(dynamodb_url))
        store = opener(*urls, barrier_timeout=0.5)
        call_id = "call-volatile"
        s = store.open(call_id, agent="triage")
        for i in range(5):
            s.record(vs.UserSpoke(f"acknowledged {i}"))
        s.flush(all_tiers=True)
        archived = tier_log(urls[2], call_id)
        assert_full_log(archived, call_id, 6)
        server.kill()
        with pytest.raises(vs.BackendUnavailable):
            s.flush(all_tiers=True)  # e.g. the end of a worker's turn, during the outage
        server.start()  # a new process, no data
        time.sleep(2.5)  # the behind writer retries its backfill (backoff up to 1 s)
        assert tier_log(urls[2], call_id) == archived, "DynamoDB lost the acknowledged events"
    finally:
        if store is not None:  # while its server is still there
            with contextlib.suppress(vs.BackendUnavailable):
                store.close()
        server.stop()
