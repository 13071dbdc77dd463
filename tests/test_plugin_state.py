"""Plugin event types that fold into the state: ``STATE`` names a namespace of
``CallState.plugin_state``, ``changes()`` says what the event sets there (None deletes)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

import voicestate as vs
import voicestate.plugins as vsp

KEYS = "t1:plugin-state-test-secret-0123456789"


@vsp.register_event_type
@attrs.frozen
class Remembered(vs.Event):
    TYPE: ClassVar[str] = "acme.Remembered"
    STATE: ClassVar[str | None] = "acme"
    key: str = ""
    value: Any = None

    def changes(self) -> Mapping[str, Any]:
        return {self.key: self.value}


@vsp.register_event_type
@attrs.frozen
class Plain(vs.Event):  # a plugin event that folds nowhere
    TYPE: ClassVar[str] = "acme.Plain"
    text: str = ""


def test_a_plugin_event_folds_into_plugin_state_and_earlier_states_keep_theirs() -> None:
    store = vs.open_store("memory://", signing_keys=KEYS)
    s = store.open("c", agent="triage")
    assert dict(s.state.plugin_state) == {}
    s.record(Remembered(key="refund", value={"amount": 42.5}), Plain(text="x"))
    before = s.state
    s.record(Remembered(key="card", value="4242"), Remembered(key="refund", value=None))  # None deletes
    assert {ns: dict(v) for ns, v in s.state.plugin_state.items()} == {"acme": {"card": "4242"}}
    assert dict(before.plugin_state["acme"]) == {"refund": {"amount": 42.5}}  # a snapshot does not move
    assert dict(store.load("c").plugin_state["acme"]) == {"card": "4242"}
    s.record(Remembered(key="card", value=None))
    assert "acme" not in store.load("c").plugin_state  # an emptied namespace is not listed


def test_plugin_state_survives_a_stored_snapshot_and_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = vs.open_store(url, signing_keys=KEYS, snapshot_every=3)
    s = store.open("c", agent="triage")
    for i in range(8):  # snapshots are written along the way
        s.record(Remembered(key=f"k{i % 3}", value=i))
    s.record(vs.UserSpoke("after the last snapshot"))
    store.close()
    code = (
        "import sys, voicestate as vs\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import test_plugin_state\n"  # registers the event types, as an installed plugin would
        f"store = vs.open_store({url!r}, signing_keys={KEYS!r})\n"
        "print(sorted(store.load('c').plugin_state['acme'].items()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[('k0', 6), ('k1', 7), ('k2', 5)]"


def test_a_refused_write_leaves_no_plugin_state() -> None:
    store = vs.open_store("memory://", signing_keys=KEYS)
    s = store.open("c", agent="triage")
    store.resume("c", agent="rescuer", takeover=True, force=True)
    with pytest.raises(vs.FencedError):
        s.record(Remembered(key="zombie", value=1))
    assert "acme" not in s.state.plugin_state
    assert "acme" not in store.load("c").plugin_state


def test_changes_that_are_not_json_are_refused_when_recorded() -> None:
    @attrs.frozen
    class Bad(vs.Event):
        TYPE: ClassVar[str] = "acme.Bad"
        STATE: ClassVar[str | None] = "acme"

        def changes(self) -> Mapping[str, Any]:
            return {"when": object()}

    store = vs.open_store("memory://", signing_keys=KEYS)
    s = store.open("c", agent="triage")
    with pytest.raises(vs.InvalidEvent, match="acme"):
        s.record(Bad())
    assert len(store.events("c")) == 1


def test_a_folding_event_that_does_not_keep_the_contract_is_refused_when_recorded() -> None:
    @attrs.frozen
    class Nameless(vs.Event):  # STATE must name a namespace
        TYPE: ClassVar[str] = "acme.Nameless"
        STATE: ClassVar[str | None] = ""

    @attrs.frozen
    class Raises(vs.Event):
        TYPE: ClassVar[str] = "acme.Raises"
        STATE: ClassVar[str | None] = "acme"

        def changes(self) -> Mapping[str, Any]:
            raise KeyError("oops")

    @attrs.frozen
    class Listed(vs.Event):
        TYPE: ClassVar[str] = "acme.Listed"
        STATE: ClassVar[str | None] = "acme"

        def changes(self) -> Mapping[str, Any]:
            return [("k", 1)]  # type: ignore[return-value]

    store = vs.open_store("memory://", signing_keys=KEYS)
    s = store.open("c", agent="triage")
    for bad, said in ((Nameless(), "non-empty str"), (Raises(), "raised KeyError"), (Listed(), "returns a mapping")):
        with pytest.raises(vs.InvalidEvent, match=said):
            s.record(bad)
    assert len(store.events("c")) == 1 and dict(s.state.plugin_state) == {}


def test_a_fold_with_events_it_cannot_read_writes_no_snapshot(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = vs.open_store(url, signing_keys=KEYS, snapshot_every=2)
    s = store.open("c", agent="crew")
    s.record(Remembered(key="refund", value=42.5))
    s.handoff(to="triage")
    store.close()
    # a process without the plugin resumes the call and writes on: its fold has no plugin_state
    code = (
        "import voicestate as vs\n"
        f"store = vs.open_store({url!r}, signing_keys={KEYS!r}, snapshot_every=2)\n"
        "s = store.resume('c', agent='triage')\n"
        "for i in range(6):\n"
        "    s.record(vs.UserSpoke(f'turn {i}'))\n"
        "s.handoff(to='crew')\n"
        "store.close()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "ok"
    # a process with the plugin still finds the plugin's state: no snapshot hid it
    store = vs.open_store(url, signing_keys=KEYS)
    assert dict(store.load("c").plugin_state["acme"]) == {"refund": 42.5}
    assert dict(store.resume("c", agent="crew").state.plugin_state["acme"]) == {"refund": 42.5}


def test_sync_writes_from_several_threads_go_one_at_a_time() -> None:
    import threading

    store = vs.open_store("memory://", signing_keys=KEYS)
    s = store.open("c", agent="crew")
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(100):
                s.record(Remembered(key=f"{n}-{i}", value=i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.load("c").plugin_state["acme"]) == 400
    assert [e.seq for e in store.events("c")] == list(range(1, 402))


def test_reading_the_state_while_another_thread_records() -> None:
    """session.state settles what record() left unsettled: under the same lock, never halfway."""
    import sys
    import threading

    store = vs.open_store("memory://", signing_keys=KEYS)
    s = store.open("c", agent="app")
    errors: list[BaseException] = []
    writing = True

    def write() -> None:
        try:
            for i in range(5000):
                s.record(vs.AgentSpoke(f"turn {i}"))
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            while writing:
                s.state  # noqa: B018 - the read is the point
        except BaseException as exc:
            errors.append(exc)

    writer, reader = threading.Thread(target=write), threading.Thread(target=read)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often, so a race shows
    try:
        reader.start()
        writer.start()
        writer.join()
        writing = False
        reader.join()
    finally:
        sys.setswitchinterval(switch)
    assert errors == []
    assert store.load("c").seq == 5001
