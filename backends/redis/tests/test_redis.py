"""voicestate-redis's own behaviour: round trips per append, key layout, expiry, listing,
URL options, auth and TLS, and what a lost server does."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.connection
import redis.connection
from redis.crc import key_slot

import voicestate as vs
import voicestate.backend as vsb
from voicestate.testing import make_events
from voicestate_redis.testing import RedisServer, free_port, server_binary

KEYS = "k1:a-secret-of-16-bytes-or-more"


def _update(*, expires_in: float = 3600.0, tenant: str | None = None) -> vsb.MetaUpdate:
    now = time.time()
    return vsb.MetaUpdate("a", None, now + 60, now + expires_in, now, tenant)


def _started(call_id: str) -> list[vsb.StoredEvent]:
    return make_events(call_id, [vs.CallStarted()])


@pytest.fixture
def backend(store_url: str) -> Iterator[Any]:
    b = vsb.open_backend(store_url)
    try:
        yield b
    finally:
        b.close()


def _prefix(url: str) -> str:
    return url.split("prefix=", 1)[1]


def _calls(client: redis.Redis, command: str) -> int:
    """How many times the server has run ``command`` (INFO commandstats)."""
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


# -- one round trip per append -------------------------------------------------------------


class _Counter:
    def __init__(self) -> None:
        self.sent = 0


def test_one_round_trip_and_one_command_per_append(
    backend: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    evs = _started("rt")
    assert backend.append("rt", evs, 0, 1, None, _update()).status == "ok"  # loads the script if needed
    head, seq = evs[-1].chain, 1
    counter = _Counter()
    real = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        counter.sent += 1
        real(self, command, check_health)

    server = redis.Redis.from_url(redis_url)
    before = {c: _calls(server, c) for c in ("evalsha", "eval", "script|load")}
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    n = 50
    for i in range(n):
        nxt = make_events("rt", [vs.UserSpoke(f"turn {i}")], start_seq=seq, head=head)
        assert backend.append("rt", nxt, seq, 1, head, _update()).status == "ok"
        seq, head = seq + 1, nxt[-1].chain
    monkeypatch.undo()
    assert counter.sent == n  # one request written per append, however long the call
    after = {c: _calls(server, c) for c in before}
    # and it is one command on the server: EVALSHA (the commands the script runs are its own)
    assert {c: after[c] - before[c] for c in before} == {"evalsha": n, "eval": 0, "script|load": 0}
    assert len(backend.load("rt")) == n + 1
    server.close()


def test_one_round_trip_per_async_append(backend: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sequential async appends: one write each (the pipe's, or redis.asyncio's on a Cluster)."""
    counter = _Counter()
    real_send = redis.asyncio.connection.AbstractConnection.send_packed_command
    real_write = asyncio.StreamWriter.write

    async def counting_send(self: Any, command: Any, check_health: bool = True) -> None:
        counter.sent += 1
        await real_send(self, command, check_health)

    def counting_write(self: asyncio.StreamWriter, data: Any) -> None:
        counter.sent += 1
        real_write(self, data)

    server = redis.Redis.from_url(redis_url)

    async def go() -> None:
        evs = _started("art")
        assert (await backend.aappend("art", evs, 0, 1, None, _update())).status == "ok"
        head, seq = evs[-1].chain, 1
        before = _calls(server, "evalsha")
        counter.sent = 0
        monkeypatch.setattr(redis.asyncio.connection.AbstractConnection, "send_packed_command", counting_send)
        monkeypatch.setattr(asyncio.StreamWriter, "write", counting_write)
        for i in range(30):
            nxt = make_events("art", [vs.UserSpoke(f"turn {i}")], start_seq=seq, head=head)
            assert (await backend.aappend("art", nxt, seq, 1, head, _update())).status == "ok"
            seq, head = seq + 1, nxt[-1].chain
        monkeypatch.undo()
        assert _calls(server, "evalsha") - before == 30
        await backend.aclose()

    asyncio.run(go())
    assert counter.sent == 30
    server.close()


def test_concurrent_async_appends_share_writes(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Appends started in one loop iteration go out in one write (pipelined on one connection),
    and each caller gets its own reply: a conflict for one call does not leak into another."""
    writes: list[int] = []
    real_write = asyncio.StreamWriter.write

    def counting_write(self: asyncio.StreamWriter, data: Any) -> None:
        writes.append(len(data))
        real_write(self, data)

    async def go() -> None:
        firsts = {f"p{i}": _started(f"p{i}") for i in range(100)}
        results = await asyncio.gather(*(backend.aappend(c, evs, 0, 1, None, _update()) for c, evs in firsts.items()))
        assert {r.status for r in results} == {"ok"}
        monkeypatch.setattr(asyncio.StreamWriter, "write", counting_write)
        appends = []
        for i, (call_id, evs) in enumerate(firsts.items()):
            nxt = make_events(call_id, [vs.UserSpoke("hello")], start_seq=1, head=evs[-1].chain)
            expected = 1 if i % 10 else 7  # every tenth one expects a seq the call does not have
            appends.append(backend.aappend(call_id, nxt, expected, 1, evs[-1].chain, _update()))
        results = await asyncio.gather(*appends)
        monkeypatch.undo()
        assert [r.status for r in results] == ["conflict" if i % 10 == 0 else "ok" for i in range(100)]
        assert all(r.meta is not None and r.meta.seq == 1 for i, r in enumerate(results) if i % 10 == 0)
        assert len(writes) <= 3  # one in the usual case; never one per append
        for i, call_id in enumerate(firsts):
            assert len(await backend.aload(call_id)) == (1 if i % 10 == 0 else 2)
        await backend.aclose()

    asyncio.run(go())


def test_a_session_record_is_one_round_trip(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = vs.open_store(store_url, signing_keys=KEYS)
    s = store.open("rec", agent="triage")
    s.record(vs.UserSpoke("warm up"))
    counter = _Counter()
    real = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        counter.sent += 1
        real(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    for i in range(40):
        s.record(vs.UserSpoke(f"turn {i}"))
    monkeypatch.undo()
    assert counter.sent == 40
    store.close()


def test_a_retried_append_is_stored_once(backend: Any) -> None:
    evs = _started("retry")
    backend.append("retry", evs, 0, 1, None, _update())
    nxt = make_events("retry", [vs.UserSpoke("hello")], start_seq=1, head=evs[-1].chain)
    assert backend.append("retry", nxt, 1, 1, evs[-1].chain, _update()).status == "ok"
    again = backend.append("retry", nxt, 1, 1, evs[-1].chain, _update())  # the reply was lost: sent again
    assert again.status == "duplicate" and dict(again.duplicates) == {nxt[0].id: 2}
    assert [e.seq for e in backend.load("retry")] == [1, 2]


# -- keys ---------------------------------------------------------------------------------------


def test_every_key_of_a_call_shares_one_hash_tag(backend: Any, store_url: str, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = _prefix(store_url)
    for call_id in ("call-1", "we}ird{id%7D", "ünïcode call"):
        evs = _started(call_id)
        backend.append(call_id, evs, 0, 1, None, _update(tenant="acme"))
        backend.put_snapshot(call_id, vsb.Snapshot(1, evs[0].chain, b"fold"))
        keys = [k for k in client.scan_iter(match=f"{prefix}:{{*") if not k.endswith(b":calls")]
        mine = [
            k for k in keys if k.decode().startswith(f"{prefix}:{{{call_id.replace('%', '%25').replace('}', '%7D')}}}")
        ]
        assert sorted(k.rsplit(b":", 1)[1] for k in mine) == [b"e", b"i", b"m", b"s", b"x"]
        assert len({key_slot(k) for k in mine}) == 1
        backend.delete(call_id)
    assert {c for c, _ in backend.list_calls(None, None, 10)} == set()
    client.close()


def test_native_expiry_on_every_key_and_a_longer_tombstone(backend: Any, store_url: str, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = _prefix(store_url)
    evs = _started("exp")
    backend.append("exp", evs, 0, 1, None, _update(expires_in=100))
    backend.put_snapshot("exp", vsb.Snapshot(1, evs[0].chain, b"fold"))
    ttl = {k: client.pttl(f"{prefix}:{{exp}}:{k}") for k in "meisx"}
    assert all(90_000 < ttl[k] <= 100_001 for k in "meis"), ttl
    assert ttl["x"] > 29 * 86400 * 1000  # the tombstone outlives the call
    # an ended call's retention: the store moves expires_at, every key follows
    backend.append(
        "exp", make_events("exp", [vs.Note("n")], start_seq=1, head=evs[0].chain), 1, None, None, _update(expires_in=5)
    )
    assert 0 < client.pttl(f"{prefix}:{{exp}}:e") <= 5_001
    client.close()


def test_expiry_is_set_only_when_it_changes(backend: Any, store_url: str, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = _prefix(store_url)
    evs = _started("ttl")
    now = time.time()
    keep = vsb.MetaUpdate("a", None, now + 60, now + 100, now, None)
    backend.append("ttl", evs, 0, 1, None, keep)
    seq, head = 1, evs[0].chain

    def append(update: vsb.MetaUpdate | None) -> None:
        nonlocal seq, head
        nxt = make_events("ttl", [vs.Note(f"n{seq}")], start_seq=seq, head=head)
        assert backend.append("ttl", nxt, seq, 1, head, update).status == "ok"
        seq, head = seq + 1, nxt[-1].chain

    def ttls() -> dict[str, int]:
        return {k: client.pttl(f"{prefix}:{{ttl}}:{k}") for k in "meix"}

    before = (_calls(client, "pexpireat"), _calls(client, "persist"))
    for _ in range(5):
        append(keep)  # the same expires_at: no PEXPIREAT
        append(None)  # no update: the metadata keeps its expiry
    assert (_calls(client, "pexpireat"), _calls(client, "persist")) == before
    assert all(0 < t <= 100_001 for k, t in ttls().items() if k != "x")
    append(vsb.MetaUpdate("a", None, now + 60, now + 5, now, None))  # moved: every key follows
    assert all(0 < t <= 5_001 for k, t in ttls().items() if k != "x")
    assert 29 * 86400 * 1000 < ttls()["x"] <= 30 * 86400 * 1000 + 5_001
    append(vsb.MetaUpdate("a", None, now + 60, None, now, None))  # no expiry: every key persists
    assert all(t == -1 for t in ttls().values())
    assert backend.get_meta("ttl").expires_at is None
    append(vsb.MetaUpdate("a", None, now + 60, now + 50, now, None))  # and back
    assert all(0 < t <= 50_001 for k, t in ttls().items() if k != "x")
    assert backend.get_meta("ttl").expires_at == pytest.approx(now + 50)
    client.close()


def test_a_conflicting_append_leaves_no_id_behind(backend: Any) -> None:
    evs = _started("undo")
    assert backend.append("undo", evs, 0, 1, None, _update()).status == "ok"
    nxt = make_events("undo", [vs.Note("late")], start_seq=1, head=evs[0].chain)
    assert backend.append("undo", nxt, 5, 1, None, _update()).status == "conflict"  # a wrong seq
    assert backend.append("undo", nxt, 1, 2, None, _update()).status == "conflict"  # a wrong epoch
    assert backend.append("undo", nxt, 1, 1, b"not-the-head", _update()).status == "conflict"
    assert backend.append("undo", nxt, 1, 1, evs[0].chain, _update()).status == "ok"  # not a duplicate
    dup = backend.append("undo", nxt, 2, 1, nxt[0].chain, _update())
    assert (dup.status, dup.duplicates) == ("duplicate", {nxt[0].id: 2})
    assert [e.seq for e in backend.load("undo")] == [1, 2]


def test_listing_drops_gone_calls_from_the_index(backend: Any, store_url: str, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = _prefix(store_url)
    for i in range(5):
        backend.append(f"c{i}", _started(f"c{i}"), 0, 1, None, _update(tenant="t"))
    client.delete(f"{prefix}:{{c1}}:m", f"{prefix}:{{c3}}:m")  # as if Redis had expired them
    assert [c for c, _ in backend.list_calls("t", None, 2)] == ["c0", "c2"]  # a full page
    assert [c for c, _ in backend.list_calls(None, None, 10)] == ["c0", "c2", "c4"]
    assert client.zrange(f"{prefix}:calls", 0, -1) == [b"c0", b"c2", b"c4"]
    client.close()


# -- the URL ----------------------------------------------------------------------------------------


def test_url_options_are_checked(redis_url: str) -> None:
    with pytest.raises(vs.ConfigError, match="unknown parameter"):
        vsb.open_backend(f"{redis_url}?colour=red")
    with pytest.raises(vs.ConfigError, match="rediss://"):
        vsb.open_backend(f"{redis_url}?ssl_ca_certs=/x")
    with pytest.raises(vs.ConfigError, match="bad value"):
        vsb.open_backend(f"{redis_url}?timeout=soon")
    with pytest.raises(vs.ConfigError, match="hash tag"):
        vsb.open_backend(f"{redis_url}?prefix=a{{b}}")
    with pytest.raises(vs.ConfigError, match="buckets= is for"):
        vsb.open_backend(f"{redis_url}?buckets=16")
    with pytest.raises(vs.BackendUnavailable, match="cannot reach the cluster"):  # nothing listens there
        vsb.open_backend(f"redis+cluster://127.0.0.1:{free_port()}?timeout=0.5")
    b = vsb.open_backend(f"{redis_url}?prefix=p1&timeout=0.5&retries=1")
    assert "prefix=p1" in b.url and "timeout=0.5" in b.url  # the URL reopens the same store
    b.close()


def test_acl_user_and_password_from_the_url(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    user, password = f"u{uuid.uuid4().hex[:8]}", "s3cr%t pass"
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    host = redis_url.split("//", 1)[1]
    quoted = password.replace("%", "%25").replace(" ", "%20")
    try:
        b = vsb.open_backend(f"redis://{user}:{quoted}@{host}?prefix=acl{uuid.uuid4().hex[:6]}")
        assert b.append("c", _started("c"), 0, 1).status == "ok"
        assert password not in repr(b)
        b.close()

        async def pipelined() -> None:  # the async lanes authenticate too
            ab = vsb.open_backend(f"redis://{user}:{quoted}@{host}?prefix=acl{uuid.uuid4().hex[:6]}")
            assert (await ab.aappend("c", _started("c"), 0, 1)).status == "ok"
            assert len(await ab.aload("c")) == 1
            await ab.aclose()
            abad = vsb.open_backend(f"redis://{user}:wrong@{host}")
            with pytest.raises(vs.BackendUnavailable) as ainfo:
                await abad.aappend("c", _started("c"), 0, 1)
            assert "wrong" not in str(ainfo.value)
            await abad.aclose()

        asyncio.run(pipelined())
        bad = vsb.open_backend(f"redis://{user}:wrong@{host}")
        with pytest.raises(vs.BackendUnavailable) as info:
            bad.get_meta("c")
        assert "wrong" not in str(info.value)
        bad.close()
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_tls_from_the_url(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [server_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(tmp_path), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}&prefix=tls"
        deadline = time.monotonic() + 10
        b = vsb.open_backend(url)
        while True:
            try:
                b.get_meta("c")
                break
            except vs.BackendUnavailable:
                if proc.poll() is not None:
                    pytest.skip("this redis-server was built without TLS")
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert b.append("c", _started("c"), 0, 1).status == "ok"
        assert len(b.load("c")) == 1
        b.close()

        async def pipelined() -> None:  # the async lanes speak TLS too
            ab = vsb.open_backend(url.replace("prefix=tls", "prefix=atls"))
            assert (await ab.aappend("c", _started("c"), 0, 1)).status == "ok"
            meta = await ab.await_for("c", 0, 1.0)
            assert meta is not None and meta.seq == 1
            assert len(await ab.aload("c")) == 1
            await ab.aclose()

        asyncio.run(pipelined())
        plain = vsb.open_backend(f"redis://127.0.0.1:{port}/0?timeout=0.5")  # TLS required
        with pytest.raises(vs.BackendUnavailable):
            plain.get_meta("c")
        plain.close()
    finally:
        proc.terminate()
        proc.wait(10)


# -- a lost server --------------------------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, persist=True)  # appendonly yes, appendfsync always
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.skipif(os.environ.get("VOICESTATE_TEST_REDIS_URL") is not None, reason="needs its own server")
def test_sigkill_mid_call_errors_in_bound_and_loses_nothing_acknowledged(own_server: RedisServer) -> None:
    bound = 0.5
    url = f"{own_server.url}?prefix=kill&timeout={bound}"
    store = vs.open_store(url, signing_keys=KEYS)
    s = store.open("call-k", agent="triage")
    acked = [s.record(vs.UserSpoke(f"turn {i}")) for i in range(5)]
    assert acked == [2, 3, 4, 5, 6]
    own_server.kill()  # SIGKILL mid-call
    lost = vs.UserSpoke("said while the server was down")
    t0 = time.monotonic()
    with pytest.raises(vs.BackendUnavailable):
        s.record(lost)
    assert time.monotonic() - t0 < bound + 1.0
    own_server.start()  # a new server process on the same port and directory (append-only file)
    check = vs.open_store(url, signing_keys=KEYS)
    state = check.load("call-k")
    texts = [t.text for t in state.turns]
    assert texts == [f"turn {i}" for i in range(5)]  # every acknowledged event, nothing else
    assert lost.text not in texts
    # the call goes on: the session retries what it was refused, stored once
    seq = s.record(lost)
    s.record(vs.UserSpoke("after the restart"))
    log = [t.text for t in check.load("call-k").turns]
    assert log.count(lost.text) == 1 and log[-1] == "after the restart" and seq == 7
    s.close() if hasattr(s, "close") else None
    store.close()
    check.close()


@pytest.mark.skipif(os.environ.get("VOICESTATE_TEST_REDIS_URL") is not None, reason="needs its own server")
def test_a_hung_server_errors_within_the_timeout_and_a_retry_stores_once(own_server: RedisServer) -> None:
    bound = 0.5
    url = f"{own_server.url}?prefix=hang&timeout={bound}"
    store = vs.open_store(url, signing_keys=KEYS)
    s = store.open("call-h", agent="triage")
    s.record(vs.UserSpoke("before"))
    assert own_server.proc is not None
    os.kill(own_server.proc.pid, signal.SIGSTOP)
    ev = vs.UserSpoke("sent, reply never came")
    try:
        t0 = time.monotonic()
        with pytest.raises(vs.BackendUnavailable):
            s.record(ev)
        assert time.monotonic() - t0 < bound * 3 + 1.0
    finally:
        os.kill(own_server.proc.pid, signal.SIGCONT)
    # the script may have run once the server woke: the retry (same event id) is not stored twice
    s.record(ev)
    texts = [t.text for t in store.load("call-h").turns]
    assert texts == ["before", ev.text]
    store.close()


@pytest.mark.skipif(os.environ.get("VOICESTATE_TEST_REDIS_URL") is not None, reason="needs its own server")
def test_async_sigkill_and_hang_error_in_bound_and_the_call_goes_on(own_server: RedisServer) -> None:
    """The pipelined async appends: a killed server and a hung one both raise within the bound,
    every waiting caller gets the error, and after the server is back the calls go on."""
    bound = 0.5
    url = f"{own_server.url}?prefix=akill&timeout={bound}"

    async def go() -> None:
        store = vs.open_store(url, signing_keys=KEYS)
        sessions = [await store.aopen(f"call-{i}", agent="triage") for i in range(5)]
        for s in sessions:
            await s.arecord(vs.UserSpoke("before"))
        own_server.kill()
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(s.arecord(vs.UserSpoke("while down")) for s in sessions), return_exceptions=True
        )
        assert all(isinstance(r, vs.BackendUnavailable) for r in results), results
        assert time.monotonic() - t0 < bound + 1.0
        own_server.start()
        for s in sessions:  # the refused event is retried, stored once
            await s.arecord(vs.UserSpoke("while down"))
        assert own_server.proc is not None
        os.kill(own_server.proc.pid, signal.SIGSTOP)
        hung = [vs.UserSpoke("hung") for _ in sessions]
        try:
            t0 = time.monotonic()
            results = await asyncio.gather(
                *(s.arecord(e) for s, e in zip(sessions, hung, strict=True)), return_exceptions=True
            )
            assert all(isinstance(r, vs.BackendUnavailable) for r in results), results
            assert time.monotonic() - t0 < bound * 3 + 1.0
        finally:
            os.kill(own_server.proc.pid, signal.SIGCONT)
        for s, e in zip(sessions, hung, strict=True):
            await s.arecord(e)  # the same event: applied once the server woke, or now; stored once
        for i in range(5):
            texts = [t.text for t in (await store.aload(f"call-{i}")).turns]
            assert texts == ["before", "while down", "hung"]
        await store.aclose()

    asyncio.run(go())


def test_a_flushed_script_cache_is_reloaded_by_both_lanes(backend: Any, redis_url: str) -> None:
    """A server that lost its scripts (SCRIPT FLUSH, a restart, a failover) answers NOSCRIPT:
    the sync connection and the async pipe load the script again and the append goes through."""
    server = redis.Redis.from_url(redis_url)
    evs = _started("ns")
    server.script_flush()
    assert backend.append("ns", evs, 0, 1, None, _update()).status == "ok"
    server.script_flush()

    async def go() -> None:
        nxt = make_events("ns", [vs.Note("after a flush")], start_seq=1, head=evs[-1].chain)
        assert (await backend.aappend("ns", nxt, 1, 1, evs[-1].chain, _update())).status == "ok"
        await backend.aclose()

    asyncio.run(go())
    assert [e.seq for e in vsb.open_backend(backend.url).load("ns")] == [1, 2]
    server.close()


def test_closing_leaves_no_connection_behind(redis_url: str) -> None:
    """aclose() closes the loop's pipe and subscriber; an append after it is refused without
    connecting again."""
    name = f"vsclose{uuid.uuid4().hex[:8]}"
    server = redis.Redis.from_url(redis_url)

    def ours() -> int:
        return sum(1 for c in server.client_list() if c.get("name") == name)

    async def go() -> None:
        b = vsb.open_backend(f"{redis_url}?prefix={name}&client_name={name}")
        assert (await b.aappend("c", _started("c"), 0, 1)).status == "ok"
        assert (await b.await_for("c", 0, 1.0)) is not None
        assert ours() >= 2  # the pipe and the subscriber
        await b.aclose()
        with pytest.raises(vs.BackendUnavailable):
            await b.aappend("c", _started("c"), 0, 1)

    asyncio.run(go())
    deadline = time.monotonic() + 5
    while ours() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ours() == 0
    server.close()
