"""Every plugin hook, through a plugin registered as a third party would.

The meta-tests at the end check that each hookspec has a ``test_hook_<name>``
here and a heading with its exact signature in docs/plugin-hooks.md.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pluggy
import pytest

import voicestate as vs
import voicestate.plugins as vsp
from voicestate import hookspecs
from voicestate.__main__ import main as cli_main
from voicestate.backend import Backend, open_backend

KEYS = "t1:plugin-tests-secret-0123456789"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugin-hooks.md"


def _store(url: str = "memory://") -> vs.Store:
    return vs.open_store(url, signing_keys=KEYS)


def _call(store: vs.Store, call_id: str = "c") -> vs.Session:
    s = store.open(call_id, agent="triage", meta={"caller": "+1-555-0100", "channel": "sip"})
    s.record(vs.UserSpoke("I was charged twice"))
    s.record(vs.SlotsSet({"account_id": "A-77", "intent": "refund"}))
    s.record(vs.ToolCalled("t1", "lookup_invoices", {"account": "A-77"}))
    return s


# -- one test per hook ---------------------------------------------------------------


def test_hook_register_backends(plugin: Callable[[object], object]) -> None:
    opened: list[str] = []

    class Plugin:
        @vsp.hookimpl
        def register_backends(self, register: Callable[..., None]) -> None:
            def factory(url: str, params: dict[str, str]) -> Backend:
                opened.append(url)
                return open_backend("memory://acme")

            register("acme", factory)

    with pytest.raises(vs.UnknownBackend):
        vs.open_store("acme://x", signing_keys=KEYS)
    plugin(Plugin())
    store = vs.open_store("acme://x", signing_keys=KEYS)
    s = store.open("c", agent="a")
    assert s.record(vs.Note("hi")) == 2
    assert opened == ["acme://x"]


def test_hook_register_formats(plugin: Callable[[object], object]) -> None:
    class Plugin:
        @vsp.hookimpl
        def register_formats(self, register: Callable[..., None]) -> None:
            register(
                "lines",
                lambda state, policy: [f"{t.role}: {t.text}" for t in state.turns],
                lambda lines: [vs.UserSpoke(line.split(": ", 1)[1]) for line in lines],
            )

    plugin(Plugin())
    s = _call(_store())
    assert s.context("lines") == ["user: I was charged twice"]
    events = vs.parse_context("lines", ["user: hello"])
    assert [type(e) for e in events] == [vs.UserSpoke]
    assert events[0].text == "hello"


@attrs.frozen
class Escalated(vs.Event):
    TYPE: ClassVar[str] = "acme.Escalated"
    level: int = 1


def test_hook_register_event_types(plugin: Callable[[object], object]) -> None:
    store = _store("memory://events-hook")
    s = store.open("c", agent="a")
    s.record(Escalated(level=3))

    class Plugin:
        @vsp.hookimpl
        def register_event_types(self, register: Callable[..., None]) -> None:
            register(Escalated)

    plugin(Plugin())
    back = store.events("c")[-1]
    assert isinstance(back, Escalated)
    assert back.level == 3


def test_hook_register_commands(plugin: Callable[[object], object], capsys: pytest.CaptureFixture[str]) -> None:
    class Plugin:
        @vsp.hookimpl
        def register_commands(self, register: Callable[..., None]) -> None:
            def configure(parser: Any) -> None:
                parser.add_argument("name")

            def run(args: Any) -> int:
                print(f"hello {args.name}")
                return 3

            register("hello", run, help="say hello", configure=configure)

    plugin(Plugin())
    assert cli_main(["hello", "dana"]) == 3
    assert capsys.readouterr().out == "hello dana\n"


def test_register_commands_variant_of_a_command(
    plugin: Callable[[object], object], capsys: pytest.CaptureFixture[str]
) -> None:
    class Plugin:
        @vsp.hookimpl
        def register_commands(self, register: Callable[..., None]) -> None:
            def run(args: Any) -> int:
                print(f"framework demo on {args.store}")
                return 4

            register("demo:framework", run, help="the demo through a framework")

    plugin(Plugin())
    assert cli_main(["demo", "--framework", "--store", "sqlite:///x.db"]) == 4
    assert capsys.readouterr().out == "framework demo on sqlite:///x.db\n"


def test_a_variant_of_a_command_nobody_registers_is_a_config_error(
    plugin: Callable[[object], object], capsys: pytest.CaptureFixture[str]
) -> None:
    class Plugin:
        @vsp.hookimpl
        def register_commands(self, register: Callable[..., None]) -> None:
            register("nosuch:flag", lambda args: 0)

    plugin(Plugin())
    assert cli_main(["calls"]) == 1
    assert "variant of 'nosuch'" in capsys.readouterr().err


def test_hook_redact_event(plugin: Callable[[object], object]) -> None:
    class Plugin:
        @vsp.hookimpl
        def redact_event(self, event: vs.Event) -> vs.Event | None:
            if isinstance(event, vs.UserSpoke):
                return attrs.evolve(event, text=event.text.replace("secret", "[redacted]"))
            return None

    plugin(Plugin())
    store = _store()  # the chain is composed when the store opens
    s = store.open("c", agent="a")
    s.record(vs.UserSpoke("my secret is 4111 1111 1111 1111"))
    text = store.events("c")[-1].text  # type: ignore[attr-defined]
    assert text == "my [redacted] is [card ending 1111]"  # chained with the built-in card redactor
    assert s.state.turns[-1].text == text


def test_hook_prepare_handoff(plugin: Callable[[object], object]) -> None:
    seen: list[vs.HandoffPacket] = []

    class Plugin:
        @vsp.hookimpl
        def prepare_handoff(self, state: vs.CallState, packet: vs.HandoffPacket) -> dict[str, Any] | None:
            seen.append(packet)
            if packet.to_agent == "forbidden":
                raise vs.HandoffVetoed("forbidden takes no calls")
            return {"data": {"queue": "billing-priority"}, "reason": (packet.reason or "") + " (priority)"}

    plugin(Plugin())
    store = _store()
    s = _call(store)
    before = store.events("c")
    with pytest.raises(vs.HandoffVetoed, match="takes no calls"):
        s.handoff(to="forbidden")
    assert store.events("c") == before  # a veto records nothing
    packet = s.handoff(to="billing", reason="double charge")
    assert seen[-1].to_agent == "billing"
    assert seen[-1].seq == len(before) + 1
    assert packet.reason == "double charge (priority)"
    assert dict(packet.data) == {"queue": "billing-priority"}
    back = vs.HandoffPacket.from_json(packet.to_json(), KEYS)  # the additions are signed
    assert dict(back.data) == {"queue": "billing-priority"}
    handed = store.load("c").pending_handoff
    assert handed is not None
    assert dict(handed.data) == {"queue": "billing-priority"}


def test_hook_after_handoff(plugin: Callable[[object], object]) -> None:
    seen: list[tuple[int, vs.HandoffPacket]] = []

    class Plugin:
        @vsp.hookimpl
        def after_handoff(self, state: vs.CallState, packet: vs.HandoffPacket) -> None:
            seen.append((state.seq, packet))

    plugin(Plugin())
    s = _call(_store())
    packet = s.handoff(to="billing")
    assert seen == [(packet.seq, packet)]
    assert packet.signature  # observers get the signed packet


def test_hook_after_resume(plugin: Callable[[object], object]) -> None:
    seen: list[tuple[str | None, vs.HandoffPacket | None]] = []

    class Plugin:
        @vsp.hookimpl
        def after_resume(self, state: vs.CallState, packet: vs.HandoffPacket | None) -> None:
            seen.append((state.owner, packet))

    plugin(Plugin())
    store = _store()
    s = _call(store)
    packet = s.handoff(to="billing")
    store.resume(packet.to_token(), agent="billing")  # by token: the packet is rebuilt from the log
    store.resume("c", agent="recovery", takeover=True, force=True)
    assert [owner for owner, _ in seen] == ["billing", "recovery"]
    rebuilt = seen[0][1]
    assert rebuilt is not None
    assert (rebuilt.packet_id, rebuilt.seq, rebuilt.chain, rebuilt.signature) == (
        packet.packet_id,
        packet.seq,
        packet.chain,
        packet.signature,
    )
    assert seen[1][1] is None


def test_hook_summarize_call(plugin: Callable[[object], object]) -> None:
    store = _store()
    s = _call(store)
    default = s.handoff(to="billing").summary or ""
    assert "Caller +1-555-0100 on sip wants: refund." in default
    assert "Facts: account_id=A-77." in default
    assert "Still running: lookup_invoices (t1) started by triage." in default
    assert 'Unanswered: "I was charged twice"' in default

    class Plugin:
        @vsp.hookimpl
        def summarize_call(self, state: vs.CallState, to_agent: str) -> str | None:
            return f"{len(state.turns)} turn(s) for {to_agent}"

    plugin(Plugin())
    assert s.handoff(to="sales").summary == "1 turn(s) for sales"
    assert s.handoff(to="sales", summary="given").summary == "given"  # an explicit summary wins


# -- loading ---------------------------------------------------------------------------


def test_misspelled_hook_fails_loudly() -> None:
    class Typo:
        @vsp.hookimpl
        def redact_evnt(self, event: vs.Event) -> None:
            pass

    with pytest.raises(pluggy.PluginValidationError, match="redact_evnt"):
        vsp.register_plugin(Typo())
    assert vsp.get_plugin_manager().get_plugin("Typo") is None


def test_default_plugins_register_like_any_other() -> None:
    pm = vsp.get_plugin_manager()
    names = {name for name, _ in pm.list_name_plugin()}
    assert {"voicestate._builtin", "voicestate._redact"} <= names
    assert pm.hook.register_backends.get_hookimpls()  # the core's backends come through the hook


# -- meta-tests -------------------------------------------------------------------------


def _hooks() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, "voicestate_spec")
    }


def test_every_hook_has_a_test() -> None:
    tested = {name[len("test_hook_") :] for name in dir(sys.modules[__name__]) if name.startswith("test_hook_")}
    assert set(_hooks()) == tested


def test_every_hook_is_documented_with_its_signature_and_an_example() -> None:
    text = DOCS.read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    documented = {}
    for section in sections:
        heading, _, body = section.partition("\n")
        m = re.fullmatch(r"`?(\w+)\(([^)]*)\)`?", heading.strip())
        if m:
            documented[m.group(1)] = (m.group(2), body)
    for name, sig in _hooks().items():
        assert name in documented, f"docs/plugin-hooks.md has no '## {name}(...)' heading"
        args, body = documented[name]
        assert args == ", ".join(sig.parameters), f"{name}: documented ({args}), defined {sig}"
        assert "```python" in body, f"{name}: no example"
        assert "hookimpl" in body, f"{name}: the example does not implement the hook"
        assert f"def {name}(" in body, f"{name}: the example does not define {name}"


def test_a_failing_observer_does_not_undo_the_handoff(
    plugin: Callable[[object], object], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        @vsp.hookimpl
        def after_handoff(self, state: vs.CallState, packet: vs.HandoffPacket) -> None:
            raise RuntimeError("metrics backend down")

        @vsp.hookimpl
        def after_resume(self, state: vs.CallState, packet: vs.HandoffPacket | None) -> None:
            raise RuntimeError("audit backend down")

    plugin(Broken())
    store = _store()
    s = _call(store)
    packet = s.handoff(to="billing")  # stored: the caller gets its packet
    b = store.resume(packet, agent="billing")  # redeemed: the caller gets its session
    assert b.state.owner == "billing"
    assert "metrics backend down" in caplog.text
    assert "audit backend down" in caplog.text


def test_registering_a_plugin_twice_is_a_config_error(plugin: Callable[[object], object]) -> None:
    class Plugin:
        @vsp.hookimpl
        def after_handoff(self, state: vs.CallState, packet: vs.HandoffPacket) -> None:
            pass

    obj = plugin(Plugin())
    with pytest.raises(vs.ConfigError, match="cannot register"):
        vsp.register_plugin(obj)


def test_timeline_helpers_describe_events_as_the_cli_does():
    """vsp.describe_event and vsp.timeline_lines: what `voicestate inspect` prints, for members."""
    import voicestate.plugins as vsp

    store = vs.open_store("memory://", signing_keys="k1:timeline-test-secret-0123")
    with store.open("c", agent="triage") as s:
        s.record(vs.UserSpoke("hello"))
        turn = s.record(vs.AgentSpoke("Let me check that for you"))
        s.record(vs.Interrupted(turn=turn, heard="Let me check", heard_ms=500))
    events, state = store.events("c"), store.load("c")
    assert vsp.describe_event(events[1], state) == ("caller", "says", ['"hello"'])
    who, what, lines = vsp.describe_event(events[2], state)
    assert (who, what) == ("triage", "says") and lines[1] == 'caller heard only "Let me check" (0.50 s)'
    text = vsp.timeline_lines(events, state)
    assert text[0].split() == ["seq", "t", "(s)", "who", "what", "detail"]
    assert len(text) == 1 + len(events) + 1  # a header, one line per event, the heard part under its turn
    assert "barges in" in text[-1] and "cuts turn 3 at 500 ms" in text[-1]
