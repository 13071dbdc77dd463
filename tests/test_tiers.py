"""Tiers: the deciding tier, write-through caches, behind tiers, faults in each.

Real backends throughout: ``memory://`` (cache) -> ``sqlite:///decide.db``
(deciding) -> ``sqlite:///archive.db?write=behind``. Faults are injected with
``flaky://name``, a thin wrapper around a real backend that raises
``BackendUnavailable`` while its switch is down (or slows or drops replies).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

import voicestate as vs
import voicestate.plugins as vsp
from voicestate import (
    AgentSpoke,
    BackendUnavailable,
    ConfigError,
    FencedError,
    Note,
    SlotsSet,
    Store,
    ToolCalled,
    UnknownBackend,
    UserSpoke,
)
from voicestate.backend import StoredEvent, genesis, open_backend, verify_chain

KEYS = "t1:tiers-test-secret-0123456789abcdef"
_names = itertools.count()


def fresh_memory() -> str:
    return f"memory://tiers-{next(_names)}"


# --- fault injection: flaky://name wraps a real backend --------------------------------


class Switch:
    """The state of one flaky backend; the wrapped backend is real."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = False
        self.delay = 0.0  # seconds slept before each write_at (a slow tier)
        self.lose_reply = False  # the next append is stored, then its reply is lost
        self.calls: list[tuple[int, str, tuple[Any, ...]]] = []  # (thread id, method, args)


_SWITCHES: dict[str, Switch] = {}


class FlakyBackend:
    def __init__(self, url: str, switch: Switch) -> None:
        self.url = url
        self.switch = switch
        self.capabilities = switch.inner.capabilities

    def _do(self, method: str, *args: Any) -> Any:
        sw = self.switch
        sw.calls.append((threading.get_ident(), method, args))
        if sw.down:
            raise BackendUnavailable(f"{self.url}: connection refused (switched off by the test)")
        if method == "write_at" and sw.delay:
            time.sleep(sw.delay)
        result = getattr(sw.inner, method)(*args)
        if method == "append" and sw.lose_reply:
            sw.lose_reply = False
            raise BackendUnavailable(f"{self.url}: connection reset while reading the reply")
        return result

    # Every protocol method goes through _do, so switching the tier off fails them all.
    def get_meta(self, *args: Any) -> Any:
        return self._do("get_meta", *args)

    def append(self, *args: Any) -> Any:
        return self._do("append", *args)

    def load(self, *args: Any) -> Any:
        return self._do("load", *args)

    def write_at(self, *args: Any) -> Any:
        return self._do("write_at", *args)

    def high_water(self, *args: Any) -> Any:
        return self._do("high_water", *args)

    def delete(self, *args: Any) -> Any:
        return self._do("delete", *args)

    def renew(self, *args: Any) -> Any:
        return self._do("renew", *args)

    def list_calls(self, *args: Any) -> Any:
        return self._do("list_calls", *args)

    def wait_for(self, *args: Any) -> Any:
        return self._do("wait_for", *args)

    def put_snapshot(self, *args: Any) -> Any:
        return self._do("put_snapshot", *args)

    def get_snapshot(self, *args: Any) -> Any:
        return self._do("get_snapshot", *args)

    def close(self) -> None:
        pass  # the wrapped backend may be shared; the fixture closes it

    def __getattr__(self, name: str) -> Any:
        # The async twins run the sync ones in a thread, as a blocking client library would.
        if name.startswith("a") and name != "aclose" and hasattr(type(self), name[1:]):
            sync = getattr(self, name[1:])

            async def twin(*args: Any) -> Any:
                return await asyncio.to_thread(sync, *args)

            return twin
        raise AttributeError(name)

    async def aclose(self) -> None:
        pass


def _flaky_factory(url: str, params: Mapping[str, str]) -> FlakyBackend:
    if params:
        raise ConfigError(f"flaky:// does not take {sorted(params)}")
    name = url.split("://", 1)[1]
    return FlakyBackend(url, _SWITCHES[name])


vsp.register_backend("flaky", _flaky_factory)


# --- fixtures and helpers ---------------------------------------------------------------


class Files:
    def __init__(self, root: Path) -> None:
        self.decide = root / "decide.db"
        self.archive = root / "archive.db"

    @property
    def decide_url(self) -> str:
        return f"sqlite:///{self.decide}"

    @property
    def archive_url(self) -> str:
        return f"sqlite:///{self.archive}?write=behind"

    def urls(self, hot: str | None = None) -> tuple[str, str, str]:
        return (hot or fresh_memory(), self.decide_url, self.archive_url)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


@pytest.fixture
def flaky() -> Iterator[Callable[[Any], tuple[str, Switch]]]:
    made: list[str] = []

    def make(inner: Any) -> tuple[str, Switch]:
        name = f"flaky-{next(_names)}"
        _SWITCHES[name] = sw = Switch(inner)
        made.append(name)
        return f"flaky://{name}", sw

    yield make
    for name in made:
        _SWITCHES.pop(name).inner.close()


@pytest.fixture
def opener(flaky: Any) -> Iterator[Callable[..., Store]]:
    """open_store with the test keys; every store is closed (faults cleared) afterwards."""
    stores: list[Store] = []

    def open_(*urls: str, **options: Any) -> Store:
        store = vs.open_store(*urls, signing_keys=KEYS, **options)
        stores.append(store)
        return store

    yield open_
    for sw in _SWITCHES.values():
        sw.down, sw.delay, sw.lose_reply = False, 0.0, False
    for store in stores:
        store.config = attrs.evolve(store.config, barrier_timeout=10.0)
        store.close()


def hot(store: Store) -> Any:
    return store.tiers.hot[0].backend


def deciding(store: Store) -> Any:
    return store.tiers.deciding.backend


def behind(store: Store) -> Any:
    return store.tiers.behind[0].backend


def stored_log(path: Path, call_id: str) -> list[StoredEvent]:
    """What a SQLite file holds for the call, read afresh (e.g. after its store closed)."""
    backend = open_backend(f"sqlite:///{path}")
    try:
        return backend.load(call_id)
    finally:
        backend.close()


def raw_event_bytes(path: Path) -> list[bytes]:
    """Every stored event's bytes in a SQLite file, whatever the call."""
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT data FROM vs_events")]
    finally:
        conn.close()


def assert_full_log(log: list[StoredEvent], call_id: str, seq: int) -> None:
    assert [e.seq for e in log] == list(range(1, seq + 1))
    assert len({e.id for e in log}) == len(log)
    assert verify_chain(genesis(call_id), log) == -1


def texts(state: vs.CallState) -> list[str]:
    return [t.text for t in state.turns]


def triage(store: Store, call_id: str, agent: str = "triage") -> vs.Session:
    s = store.open(call_id, agent=agent, meta={"channel": "sip"})
    s.record(UserSpoke("I was charged twice"))
    s.record(AgentSpoke("Let me pull up your invoices"))
    s.record(ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))
    s.record(SlotsSet({"account_id": "A-77"}))
    return s


# --- 1. roles and configuration ---------------------------------------------------------


def test_roles_of_a_three_tier_store(opener: Any, files: Files) -> None:
    urls = files.urls()
    store = opener(*urls)
    tiers = store.tiers
    assert [t.url for t in tiers.hot] == [urls[0]]
    assert [t.write for t in tiers.hot] == ["through"]
    assert tiers.deciding.url == files.decide_url
    assert tiers.deciding.write == "through"
    assert [t.url for t in tiers.behind] == [f"sqlite:///{files.archive}"]
    assert [t.write for t in tiers.behind] == ["behind"]
    assert tiers.all == (*tiers.hot, tiers.deciding, *tiers.behind)
    assert hot(store).url.startswith("memory://")
    assert deciding(store).url.startswith("sqlite://") and behind(store).url.startswith("sqlite://")
    assert tiers.writer is not None


def test_roles_without_behind_tiers(opener: Any, files: Files) -> None:
    single = opener(files.decide_url)
    assert (single.tiers.hot, single.tiers.behind, single.tiers.writer) == ((), (), None)
    assert single.tiers.deciding.url == files.decide_url
    # the coldest through tier decides, even when every tier is in memory
    a, b = fresh_memory(), fresh_memory()
    two = opener(a, b)
    assert [t.url for t in two.tiers.hot] == [a]
    assert two.tiers.deciding.url == b


def test_behind_tier_before_the_deciding_tier_is_refused(files: Files) -> None:
    with pytest.raises(ConfigError, match="after the deciding"):
        vs.open_store(fresh_memory(), f"sqlite:///{files.archive}?write=behind", files.decide_url, signing_keys=KEYS)


def test_every_tier_behind_is_refused(files: Files) -> None:
    with pytest.raises(ConfigError, match="deciding"):
        vs.open_store(f"{fresh_memory()}?write=behind", files.archive_url, signing_keys=KEYS)
    with pytest.raises(ConfigError):
        vs.open_store(files.archive_url, signing_keys=KEYS)


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("redis://127.0.0.1:6379/0", "voicestate-redis"),
        ("rediss://cache.example:6380/0", "voicestate-redis"),
        ("dynamodb://calls?region=us-east-1", "voicestate-dynamodb"),
    ],
)
def test_known_plugin_schemes_hint_the_distribution(files: Files, url: str, hint: str) -> None:
    with pytest.raises(UnknownBackend, match=hint):
        vs.open_store(fresh_memory(), url, signing_keys=KEYS)


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(UnknownBackend) as err:
        vs.open_store("nosuch://x", signing_keys=KEYS)
    assert "memory://" in str(err.value) and "sqlite://" in str(err.value)


def test_bad_write_mode_is_refused(files: Files) -> None:
    with pytest.raises(ConfigError, match="sideways"):
        vs.open_store(fresh_memory(), f"{files.decide_url}?write=sideways", signing_keys=KEYS)


@pytest.mark.parametrize("query", ["journal_mode=off", "timeout=soon", "pool=4&timeout=5"])
def test_sqlite_refuses_parameters_it_does_not_take(files: Files, query: str) -> None:
    with pytest.raises(ConfigError):
        vs.open_store(f"{files.decide_url}?{query}", signing_keys=KEYS)


def test_sqlite_takes_timeout_and_memory_takes_nothing(opener: Any, files: Files) -> None:
    store = opener(f"{files.decide_url}?timeout=5")
    assert store.tiers.deciding.url == files.decide_url
    with pytest.raises(ConfigError, match="size"):
        vs.open_store(f"{fresh_memory()}?size=10", signing_keys=KEYS)


# --- 2. write-through ------------------------------------------------------------------------


def test_record_writes_the_cache_and_the_deciding_tier(opener: Any, files: Files) -> None:
    store = opener(*files.urls())
    s = store.open("call-wt", agent="triage")
    batches: list[list[vs.Event]] = [
        [UserSpoke("hello")],
        [AgentSpoke("hi, how can I help")],
        [ToolCalled("t1", "lookup", {"a": 1}), SlotsSet({"k": "v"})],
        [Note("a note")],
    ]
    for batch in batches:
        seq = s.record(*batch)
        cache, decided = hot(store).load("call-wt"), deciding(store).load("call-wt")
        assert cache == decided
        assert_full_log(decided, "call-wt", seq)
    assert seq == 1 + sum(len(b) for b in batches)
    assert deciding(store).get_meta("call-wt").head == s.state.chain


def test_flush_all_tiers_fills_the_behind_tier_byte_for_byte(opener: Any, files: Files) -> None:
    store = opener(*files.urls())
    s = triage(store, "call-bt")
    for i in range(10):
        s.record(UserSpoke(f"utterance {i}"), AgentSpoke(f"answer {i}"))
    s.flush(all_tiers=True)
    decided = deciding(store).load("call-bt")
    archived = behind(store).load("call-bt")
    assert archived == decided  # seq, id, data, chain, epoch, final: byte for byte
    assert_full_log(archived, "call-bt", s.seq)
    assert [type(x) for x in (archived[0].data, archived[0].chain)] == [bytes, bytes]
    assert stored_log(files.archive, "call-bt") == decided


@pytest.mark.parametrize("barrier", ["flush_all_tiers", "end", "close"])
def test_barriers_wait_for_a_slow_behind_tier(opener: Any, flaky: Any, files: Files, barrier: str) -> None:
    url, sw = flaky(open_backend(f"sqlite:///{files.archive}"))
    sw.delay = 0.1
    store = opener(fresh_memory(), files.decide_url, f"{url}?write=behind")
    s = store.open("call-slow", agent="triage")
    for i in range(4):
        s.record(UserSpoke(f"u{i}"))
    if barrier == "flush_all_tiers":
        s.flush(all_tiers=True)
    elif barrier == "end":
        s.end("resolved")
    else:
        store.close()
    archived = stored_log(files.archive, "call-slow")
    expected = stored_log(files.decide, "call-slow")
    assert archived == expected
    assert_full_log(archived, "call-slow", len(expected))
    if barrier == "end":
        assert archived[-1].final


def test_plain_flush_does_not_wait_for_behind_tiers(opener: Any, flaky: Any, files: Files) -> None:
    url, sw = flaky(open_backend(f"sqlite:///{files.archive}"))
    sw.down = True
    store = opener(fresh_memory(), files.decide_url, f"{url}?write=behind", barrier_timeout=5.0)
    s = triage(store, "call-pf")
    t0 = time.monotonic()
    s.flush()
    packet = s.handoff(to="billing")  # a handoff is a through-tier barrier only
    assert time.monotonic() - t0 < 2.0
    assert store.resume(packet, agent="billing").state.owner == "billing"


# --- 3. a rejected event is applied nowhere ---------------------------------------------------


def test_fenced_zombie_write_is_in_no_tier(opener: Any, files: Files) -> None:
    first = opener(*files.urls())
    second = opener(*files.urls())
    a = triage(first, "call-z")
    packet = a.handoff(to="billing")
    b = second.resume(packet, agent="billing")
    before = a.state
    zombie = [UserSpoke("zombie utterance"), Note("zombie note")]
    with pytest.raises(FencedError, match="no longer owns"):
        a.record(*zombie)
    with pytest.raises(FencedError):
        a.record(Note("zombie again"))
    b.record(Note("billing here"))
    b.flush(all_tiers=True)
    a.flush(all_tiers=True)  # the zombie's own behind queue, drained too

    zombie_ids = {ev.id for ev in zombie}
    for store in (first, second):
        for tier in store.tiers.all:
            log = tier.backend.load("call-z")
            assert not any(b"zombie" in e.data for e in log), tier.url
            assert not zombie_ids & {e.id for e in log}, tier.url
    for path in (files.decide, files.archive):
        assert not any(b"zombie" in data for data in raw_event_bytes(path)), path

    st = a.state
    assert not any("zombie" in t for t in texts(st))
    assert not any("zombie" in n.text for n in st.notes)
    assert not a.owner and (st.owner, st.epoch) == ("billing", 2)
    assert st.seq == before.seq + 1  # it learned of the OwnerChanged, nothing of its own
    refreshed = a.refresh()
    assert refreshed == second.load("call-z")
    assert [n.text for n in refreshed.notes] == ["billing here"]


def test_write_after_end_is_in_no_tier(opener: Any, files: Files) -> None:
    store = opener(*files.urls())
    s = triage(store, "call-e")
    seq = s.end("resolved")
    with pytest.raises(FencedError, match="ended"):
        s.record(Note("after the end"))
    s.flush(all_tiers=True)
    for tier in store.tiers.all:
        log = tier.backend.load("call-e")
        assert len(log) == seq and not any(b"after the end" in e.data for e in log), tier.url
    assert s.state.seq == seq and s.state.status == "ended"


# --- 4. reads -----------------------------------------------------------------------------------


def test_second_store_refills_its_cache_from_the_deciding_tier(opener: Any, files: Files) -> None:
    first = opener(*files.urls())
    second = opener(*files.urls())
    a = triage(first, "call-r")
    assert hot(second).load("call-r") == []
    st = second.load("call-r")
    assert st == first.load("call-r") and st.seq == a.seq
    assert texts(st) == texts(a.state)
    assert hot(second).load("call-r") == deciding(first).load("call-r")  # refilled by the read

    a.record(UserSpoke("are you still there?"))
    packet = a.handoff(to="billing")
    b = second.resume(packet, agent="billing")
    assert texts(b.state)[-1] == "are you still there?"
    assert [t.call_id for t in b.state.pending_tools()] == ["t1"]
    assert hot(second).load("call-r") == deciding(second).load("call-r")
    assert_full_log(hot(second).load("call-r"), "call-r", b.seq)


def test_reads_take_events_from_the_hottest_tier(opener: Any, flaky: Any, files: Files) -> None:
    first = opener(*files.urls())
    url, sw = flaky(open_backend(f"sqlite:///{files.decide}"))
    second = opener(fresh_memory(), url, files.archive_url)
    a = triage(first, "call-h")
    second.load("call-h")  # cold: the events come from the deciding tier and fill the cache
    me = threading.get_ident()

    sw.calls.clear()
    assert second.load("call-h").seq == a.seq
    assert [m for t, m, _ in sw.calls if t == me] == ["get_meta"]  # one small metadata read

    a.record(UserSpoke("one more"), AgentSpoke("and another"))
    sw.calls.clear()
    st = second.load("call-h")
    assert st.seq == a.seq and texts(st)[-2:] == ["one more", "and another"]
    loads = [args for t, m, args in sw.calls if t == me and m == "load"]
    assert loads == [("call-h", a.seq - 1, a.seq)]  # only what the cache lacked
    assert hot(second).load("call-h") == deciding(first).load("call-h")


@pytest.mark.parametrize("new_events", [2, 6, 12])  # shorter than, as long as, longer than the stale copy
def test_stale_cache_of_a_recreated_call_is_purged(opener: Any, files: Files, new_events: int) -> None:
    first = opener(*files.urls())
    second = opener(*files.urls())
    old = first.open("call-s", agent="first", meta={"v": "old"})
    for i in range(5):
        old.record(UserSpoke(f"old {i}"))
    old.flush(all_tiers=True)
    first.load("call-s")
    stale = hot(first).load("call-s")
    assert len(stale) == 6

    assert second.delete("call-s") is True
    new = second.open("call-s", agent="second", meta={"v": "new"})
    for i in range(new_events - 1):
        new.record(UserSpoke(f"new {i}"))
    assert hot(first).load("call-s") == stale  # precondition: the first store's cache is stale

    st = first.load("call-s")
    assert (st.owner, dict(st.meta), st.seq) == ("second", {"v": "new"}, new_events)
    assert texts(st) == [f"new {i}" for i in range(new_events - 1)]
    assert st == second.load("call-s")
    cache = hot(first).load("call-s")
    assert cache == deciding(second).load("call-s")  # purged, then refilled with the new call
    assert not any(b"old " in e.data for e in cache)
    new.flush(all_tiers=True)
    assert behind(second).load("call-s") == deciding(second).load("call-s")


def test_session_of_a_deleted_call_cannot_write_into_its_recreation(opener: Any, files: Files) -> None:
    first = opener(*files.urls())
    second = opener(*files.urls())
    ghost = first.open("call-g2", agent="first")
    for i in range(3):
        ghost.record(UserSpoke(f"old {i}"))
    assert second.delete("call-g2") is True
    new = second.open("call-g2", agent="second")  # same id, same epoch 1 ...
    for i in range(3):
        new.record(UserSpoke(f"new {i}"))  # ... and the same seq as the ghost expects
    with pytest.raises(vs.VoiceStateError):
        ghost.record(Note("ghost of the deleted call"))
    st = second.load("call-g2")
    assert texts(st) == ["new 0", "new 1", "new 2"] and st.seq == 4
    for store in (first, second):
        for tier in store.tiers.all:
            assert not any(b"ghost" in e.data for e in tier.backend.load("call-g2")), tier.url


# --- 5. behind queue backpressure --------------------------------------------------------------


def test_behind_queue_overflow_loses_nothing(opener: Any, files: Files) -> None:
    store = opener(*files.urls(), behind_queue=5)
    s = store.open("call-q", agent="triage")
    for i in range(5):
        s.record(*[UserSpoke(f"burst {i}-{j}") for j in range(10)])  # each batch alone overflows the queue
    writer = store.tiers.writer
    assert writer is not None and writer.dropped > 0
    s.flush(all_tiers=True)
    archived = behind(store).load("call-q")
    assert archived == deciding(store).load("call-q")
    assert_full_log(archived, "call-q", 51)


def test_behind_queue_overflow_with_a_slow_tier(opener: Any, flaky: Any, files: Files) -> None:
    url, sw = flaky(open_backend(f"sqlite:///{files.archive}"))
    sw.delay = 0.1
    store = opener(fresh_memory(), files.decide_url, f"{url}?write=behind", behind_queue=5)
    s = store.open("call-q1", agent="triage")
    t0 = time.monotonic()
    for i in range(50):
        s.record(UserSpoke(f"quick {i}"))
    assert time.monotonic() - t0 < 3.0  # the append path did not wait for the slow tier
    writer = store.tiers.writer
    assert writer is not None and writer.dropped > 0
    s.flush(all_tiers=True)
    archived = stored_log(files.archive, "call-q1")
    assert archived == deciding(store).load("call-q1")
    assert_full_log(archived, "call-q1", 51)


# --- 6. a dead process's queue is backfilled at the next barrier -------------------------------


def test_dead_process_queue_is_backfilled(opener: Any, flaky: Any, files: Files) -> None:
    url, dead = flaky(open_backend(f"sqlite:///{files.archive}"))
    dead.down = True  # the dying process never reaches its behind tier: its queue dies with it
    doomed = opener(fresh_memory(), files.decide_url, f"{url}?write=behind")
    s = triage(doomed, "call-d")
    for i in range(5):
        s.record(UserSpoke(f"before the crash {i}"))
    assert stored_log(files.archive, "call-d") == []

    heir = opener(*files.urls())
    r = heir.resume("call-d", agent="recovery", takeover=True, force=True)
    r.flush(all_tiers=True)
    archived = behind(heir).load("call-d")
    assert archived == deciding(heir).load("call-d")
    assert_full_log(archived, "call-d", r.seq)

    # A note written through the dead store reaches the archive at the heir's next barrier,
    # though the heir itself writes nothing.
    seq = doomed.append("call-d", Note("supervisor: call back tomorrow"))
    assert behind(heir).high_water("call-d") == seq - 1
    r.flush(all_tiers=True)
    archived = stored_log(files.archive, "call-d")
    assert archived == deciding(heir).load("call-d")
    assert_full_log(archived, "call-d", seq)
    assert b"call back tomorrow" in archived[-1].data


def test_gap_left_by_a_store_without_the_behind_tier_is_backfilled(opener: Any, files: Files) -> None:
    heir = opener(*files.urls())
    b = triage(heir, "call-g")
    packet = b.handoff(to="elsewhere")
    b.flush(all_tiers=True)
    # another process on the same deciding tier, configured without the archive
    other = opener(fresh_memory(), files.decide_url)
    o = other.resume(packet, agent="elsewhere")
    for i in range(4):
        o.record(UserSpoke(f"elsewhere {i}"))
    back = o.handoff(to="triage", kind="return")
    assert behind(heir).high_water("call-g") < o.seq

    t = heir.resume(back, agent="triage")
    t.flush(all_tiers=True)
    archived = behind(heir).load("call-g")
    assert archived == deciding(heir).load("call-g")
    assert_full_log(archived, "call-g", t.seq)


# --- 7. a behind tier down ------------------------------------------------------------------------


def test_behind_tier_down_then_back(opener: Any, flaky: Any, files: Files) -> None:
    url, sw = flaky(open_backend(f"sqlite:///{files.archive}"))
    sw.down = True
    store = opener(fresh_memory(), files.decide_url, f"{url}?write=behind", barrier_timeout=0.5)
    t0 = time.monotonic()
    s = store.open("call-bd", agent="triage")
    for i in range(20):
        s.record(UserSpoke(f"during the outage {i}"))
    assert time.monotonic() - t0 < 2.0  # neither slowed down nor failed
    assert s.seq == 21
    assert deciding(store).get_meta("call-bd").seq == 21
    assert hot(store).load("call-bd") == deciding(store).load("call-bd")

    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable) as err:
        s.flush(all_tiers=True)
    assert time.monotonic() - t0 < 3.0
    message = str(err.value)
    assert "check" in message and "write=behind" in message
    writer = store.tiers.writer
    assert writer is not None and writer.failures > 0
    assert s.record(Note("still writing")) == 22  # a failed barrier does not break the session

    sw.down = False
    store.config = attrs.evolve(store.config, barrier_timeout=10.0)  # the writer may be in its retry backoff
    s.flush(all_tiers=True)
    archived = stored_log(files.archive, "call-bd")
    assert archived == deciding(store).load("call-bd")
    assert_full_log(archived, "call-bd", 22)


# --- 8. the hot cache down -----------------------------------------------------------------------------


def test_hot_cache_down_records_and_reads_go_to_the_deciding_tier(opener: Any, flaky: Any, files: Files) -> None:
    url, sw = flaky(open_backend("memory://hot-down"))
    sw.down = True
    store = opener(url, files.decide_url, files.archive_url)
    s = triage(store, "call-hd")
    seq = s.record(UserSpoke("cache is down"))
    assert seq == 6
    assert sw.inner.load("call-hd") == []
    assert_full_log(deciding(store).load("call-hd"), "call-hd", seq)

    st = store.load("call-hd")
    assert st == s.state and texts(st)[-1] == "cache is down"
    assert [e.seq for e in store.events("call-hd")] == list(range(1, seq + 1))
    b = store.resume(s.handoff(to="billing"), agent="billing")
    assert texts(b.state) == texts(s.state) and b.state.owner == "billing"

    sw.down = False  # back up, empty: the next write refills it
    b.record(Note("cache is back"))
    assert sw.inner.load("call-hd") == deciding(store).load("call-hd")
    assert store.load("call-hd") == b.state
    b.flush(all_tiers=True)
    assert behind(store).load("call-hd") == deciding(store).load("call-hd")


def test_hot_cache_down_midway_is_refilled_on_read(opener: Any, flaky: Any, files: Files) -> None:
    url, sw = flaky(open_backend("memory://hot-mid"))
    store = opener(url, files.decide_url, files.archive_url)
    s = triage(store, "call-hm")
    sw.down = True
    s.record(UserSpoke("missed by the cache"), AgentSpoke("also missed"))
    assert store.load("call-hm") == s.state
    sw.down = False
    assert sw.inner.high_water("call-hm") == 5
    st = store.load("call-hm")
    assert texts(st)[-2:] == ["missed by the cache", "also missed"]
    assert sw.inner.load("call-hm") == deciding(store).load("call-hm")


# --- 9. async twins ---------------------------------------------------------------------------------------


def test_async_twins_over_three_tiers(opener: Any, files: Files) -> None:
    first = opener(*files.urls())
    second = opener(*files.urls())

    async def go() -> None:
        async with first.aopen("call-a", agent="triage", meta={"channel": "webrtc"}) as s:
            turn = await s.arecord(AgentSpoke("Let me check that for"))
            await s.arecord(vs.Interrupted(turn=turn, heard="Let me", heard_ms=400))
            await s.arecord(UserSpoke("hurry"), ToolCalled("t9", "refund", {"amount": 5}))
            ids = [s.record_nowait(UserSpoke(f"nowait {i}")) for i in range(3)]
            await s.aflush(all_tiers=True)
            decided = deciding(first).load("call-a")
            assert {e.id for e in decided} >= set(ids)
            assert hot(first).load("call-a") == decided == behind(first).load("call-a")
            assert_full_log(decided, "call-a", s.seq)
            packet = await s.ahandoff(to="billing")

        async with second.aresume(packet, agent="billing") as b:
            assert b.state.owner == "billing" and b.state.turns[0].heard == "Let me"
            assert [t.call_id for t in b.state.pending_tools()] == ["t9"]
            assert hot(second).load("call-a") == deciding(second).load("call-a")
            await b.arecord(Note("async billing"))
            await b.aflush(all_tiers=True)
            assert behind(second).load("call-a") == deciding(second).load("call-a")
            seq = await b.aend("refunded")

        loaded = await first.aload("call-a")
        assert (loaded.status, loaded.seq) == ("ended", seq)
        assert hot(first).load("call-a") == deciding(first).load("call-a")
        await first.aclose()
        await second.aclose()

    asyncio.run(go())
    archived = stored_log(files.archive, "call-a")
    assert archived == stored_log(files.decide, "call-a")
    assert archived[-1].final


def test_async_resume_by_call_id_refills_the_cache(opener: Any, files: Files) -> None:
    first = opener(*files.urls())
    second = opener(*files.urls())
    triage(first, "call-ai")

    async def go() -> int:
        r = await second.aresume("call-ai", agent="recovery", takeover=True, force=True)
        await r.arecord(UserSpoke("resumed"))
        await r.aflush(all_tiers=True)
        return r.seq

    seq = asyncio.run(go())
    assert_full_log(hot(second).load("call-ai"), "call-ai", seq)
    assert behind(second).load("call-ai") == deciding(second).load("call-ai")


# --- 10. the deciding tier down ---------------------------------------------------------------------------


def test_deciding_tier_down_fails_the_write_and_recovers(opener: Any, flaky: Any, files: Files) -> None:
    url, sw = flaky(open_backend(f"sqlite:///{files.decide}"))
    store = opener(fresh_memory(), url, files.archive_url)
    s = triage(store, "call-dd")
    before = s.state
    sw.down = True
    during = UserSpoke("during the outage")
    with pytest.raises(BackendUnavailable):
        s.record(during)
    with pytest.raises(BackendUnavailable):
        s.record(Note("also during"))
    with pytest.raises(BackendUnavailable):
        store.load("call-dd")  # a read needs the deciding tier's metadata
    with pytest.raises(BackendUnavailable):
        store.open("call-other", agent="x")
    assert s.state == before and "during the outage" not in texts(s.state)
    assert len(hot(store).load("call-dd")) == before.seq  # not applied in the cache either

    sw.down = False
    assert s.record(during) == before.seq + 1  # the same event, retried
    assert s.record(Note("after")) == before.seq + 2
    log = deciding(store).load("call-dd")
    assert_full_log(log, "call-dd", before.seq + 2)
    assert not any(b"also during" in e.data for e in log)
    assert store.load("call-dd") == s.state
    assert texts(s.state)[-1] == "during the outage"
    assert hot(store).load("call-dd") == log
    packet = s.handoff(to="billing")
    assert store.resume(packet, agent="billing").state.seq == before.seq + 4
    s.flush(all_tiers=True)
    assert behind(store).load("call-dd") == deciding(store).load("call-dd")


def test_deciding_tier_loses_the_reply(opener: Any, flaky: Any, files: Files) -> None:
    url, sw = flaky(open_backend(f"sqlite:///{files.decide}"))
    store = opener(fresh_memory(), url, files.archive_url)
    s = triage(store, "call-lr")
    before = s.state
    ev = UserSpoke("stored, but the reply was lost")
    sw.lose_reply = True
    with pytest.raises(BackendUnavailable):
        s.record(ev)
    assert s.state == before  # not acknowledged: not applied locally
    assert s.record(ev) == before.seq + 1  # the retry finds it stored: once
    assert s.record(Note("next")) == before.seq + 2
    log = deciding(store).load("call-lr")
    assert_full_log(log, "call-lr", before.seq + 2)
    assert [e.id for e in log].count(ev.id) == 1
    assert store.load("call-lr") == s.state
    assert texts(s.state)[-1] == "stored, but the reply was lost"
    assert hot(store).load("call-lr") == log
    s.flush(all_tiers=True)
    assert behind(store).load("call-lr") == log


# --- 10. deletion and re-creation across tiers (Core IV) -------------------------------------


def test_a_late_behind_queue_never_brings_a_deleted_call_back(opener: Any, flaky: Any, files: Files) -> None:
    url, slow = flaky(open_backend(f"sqlite:///{files.archive}"))
    writer = opener(fresh_memory(), files.decide_url, f"{url}?write=behind")
    other = opener(fresh_memory(), files.decide_url, files.archive_url)
    for run in range(10):
        call_id = f"call-del-{run}"
        s = triage(writer, call_id)
        s.flush(all_tiers=True)
        slow.delay = 0.05  # the next batch is still queued (or being written) when the call goes
        for i in range(3):
            s.record(UserSpoke(f"late {i}"))
        assert other.delete(call_id) is True  # from every tier, the behind one included
        writer.tiers.writer.drain(10)  # type: ignore[union-attr]
        slow.delay = 0.0
        assert stored_log(files.archive, call_id) == [], f"run {run}: the behind tier resurrected the call"
        assert deciding(other).get_meta(call_id) is None
        with pytest.raises(vs.CallNotFound):
            other.load(call_id)


def test_a_recreated_call_replaces_the_old_log_in_the_behind_tier(opener: Any, files: Files) -> None:
    full = opener(*files.urls())
    old = triage(full, "call-re")
    for i in range(4):
        old.record(UserSpoke(f"old {i}"))
    old.flush(all_tiers=True)
    assert behind(full).high_water("call-re") == old.seq
    # another process, configured without the archive, deletes the call and creates it anew
    bare = opener(fresh_memory(), files.decide_url)
    assert bare.delete("call-re")
    bare.open("call-re", agent="triage").record(UserSpoke("a new call"))
    assert behind(full).load("call-re") != deciding(full).load("call-re")
    s = full.resume("call-re", agent="recovery", takeover=True, force=True)  # its barrier backfills
    s.flush(all_tiers=True)
    archived = stored_log(files.archive, "call-re")
    assert archived == deciding(full).load("call-re")
    assert_full_log(archived, "call-re", s.seq)
    assert not any(b"old " in e.data for e in archived)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://app:s3cret@host:6379/0?prefix=x", "redis://app:***@host:6379/0?prefix=x"),
        ("rediss://:s3cret@host:6380/1", "rediss://:***@host:6380/1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_a_password_in_a_store_url_is_masked_where_it_is_shown(url: str, shown: str) -> None:
    store = vs.open_store("memory://", signing_keys=KEYS)
    store.tiers.deciding.backend.url = url  # type: ignore[misc]  # as a Redis backend would report it
    assert store.tiers.deciding.url == shown
    assert "s3cret" not in repr(store) and shown in repr(store)
    store.close()
