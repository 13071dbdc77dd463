"""The seams other distributions build on: public modules, hooks through pluggy,
event field types read from annotations, the version from package metadata."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import pytest

import voicestate as vs
import voicestate.backend as vsb
import voicestate.plugins as vsp
import voicestate.testing as vst

KEYS = "t1:seams-tests-secret-0123456789"


# -- public modules ---------------------------------------------------------------


@pytest.mark.parametrize("module", [vs, vsb, vsp, vst])
def test_public_classes_report_their_public_module(module: Any) -> None:
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, type) and obj.__module__.startswith("voicestate"):
            assert obj.__module__ == module.__name__ or not obj.__module__.split(".")[-1].startswith("_"), (
                f"{module.__name__}.{name} reports {obj.__module__}"
            )


def test_a_traceback_names_the_public_class(store: vs.Store) -> None:
    s = store.open("c", agent="triage")
    s.handoff(to="billing")
    store.resume("c", agent="billing")
    with pytest.raises(vs.FencedError) as info:
        s.record(vs.Note("late"))
    text = "".join(traceback.format_exception(info.value))
    assert "voicestate.FencedError:" in text
    assert "_errors" not in text.splitlines()[-1]


def test_application_names_are_not_mixed_with_backend_or_plugin_names() -> None:
    top = set(vs.__all__)
    assert not top & set(vsb.__all__)
    assert not top & set(vsp.__all__)
    for low_level in ("StoredEvent", "AppendResult", "encode_event", "make_converter", "decode_token", "hookimpl"):
        assert low_level not in top
        assert not hasattr(vs, low_level)


def test_public_classes_still_resolve_their_annotations() -> None:
    import typing

    # cattrs and typing read string annotations through __module__: they must still resolve
    assert typing.get_type_hints(vs.ToolCall)["arguments"] == Mapping[str, Any]
    assert typing.get_type_hints(vs.UserSpoke)["confidence"] == float | None
    conv = vsp.make_converter()
    tool = vs.ToolCall("t1", "lookup", {"a": 1}, "pending")
    assert conv.unstructure(tool)["arguments"] == {"a": 1}


def test_version_comes_from_the_package_metadata() -> None:
    assert vs.__version__ == importlib.metadata.version("voicestate")


def test_open_backend_opens_one_backend_by_url(tmp_path: Any) -> None:
    backend = vsb.open_backend(f"sqlite:///{tmp_path}/one.db")
    try:
        assert isinstance(backend, vsb.Backend)
        assert backend.get_meta("nope") is None
    finally:
        backend.close()
    with pytest.raises(vs.UnknownBackend):
        vsb.open_backend("nosuch://x")


# -- hooks through pluggy -----------------------------------------------------------


def test_registration_hooks_take_pluggy_wrappers(plugin: Callable[[object], object]) -> None:
    seen: list[str] = []

    class Wrapper:
        @vsp.hookimpl(wrapper=True)
        def register_backends(self, register: Callable[..., None]) -> Generator[None, None, None]:
            seen.append("before")
            yield
            seen.append("after")

    plugin(Wrapper())
    vs.open_store("memory://", signing_keys=KEYS).close()
    assert seen == ["before", "after"]  # a hand-rolled dispatch would have dropped the wrapper


@pytest.mark.parametrize("hook", ["redact_event", "after_handoff", "after_resume"])
def test_hand_dispatched_hooks_refuse_wrappers(hook: str) -> None:
    # pluggy validates the argument names against the spec: give the wrapper the spec's own
    args = {"redact_event": "event", "after_handoff": "state, packet", "after_resume": "state, packet"}[hook]
    ns: dict[str, Any] = {"vsp": vsp, "Generator": Generator}
    exec(f"@vsp.hookimpl(wrapper=True)\ndef {hook}({args}):\n    yield\n", ns)
    plugin = type("WrapperPlugin", (), {hook: staticmethod(ns[hook])})()
    with pytest.raises(vs.ConfigError, match=f"{hook} cannot be a wrapper"):
        vsp.register_plugin(plugin)
    assert not vsp.get_plugin_manager().is_registered(plugin)  # refused, not half registered


def test_trace_env_var_prints_hook_calls(tmp_path: Any) -> None:
    code = (
        "import voicestate as vs\n"
        "store = vs.open_store('memory://', signing_keys='k1:a-secret-of-16-bytes-or-more')\n"
        "s = store.open('c', agent='triage')\n"
        "s.handoff(to='billing')\n"
    )
    env = {**os.environ, "VOICESTATE_TRACE_PLUGINS": "1", "VOICESTATE_PLUGINS": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "voicestate plugins: register_backends(register)" in out.stderr
    assert "voicestate plugins: summarize_call(state, to_agent)" in out.stderr
    assert "voicestate plugins: after_handoff(state, packet) (observers)" in out.stderr
    quiet = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "VOICESTATE_TRACE_PLUGINS": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "voicestate plugins:" not in quiet.stderr


def test_core_tests_load_no_installed_entry_points() -> None:
    assert os.environ.get(vsp.PLUGINS_ENV_VAR) == ""
    pm = vsp.get_plugin_manager()
    assert pm.list_plugin_distinfo() == []  # nothing came from an installed distribution
    names = {name for name, _ in pm.list_name_plugin()}
    assert {"voicestate._builtin", "voicestate._redact"} <= names


def test_core_event_types_are_known_without_plugins() -> None:
    code = (
        "import voicestate as vs, voicestate.plugins as vsp\n"
        "data = vsp.encode_event(vs.ToolCalled('t1', 'lookup', {}), 'triage')\n"
        "import voicestate._plugins as p\n"
        "assert p._pm is None, 'decoding must not load plugins'\n"
        "ev = vsp.decode_event(data)\n"
        "assert type(ev) is vs.ToolCalled, ev\n"
        "assert p._pm is None, 'decoding must not load plugins'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


# -- event field types from annotations ---------------------------------------------


def test_core_field_kinds_come_from_annotations() -> None:
    assert vsp.field_kinds(vs.UserSpoke) == {
        "text": "str",
        "final": "bool",
        "confidence": "opt_float",
        "language": "opt_str",
    }
    assert vsp.field_kinds(vs.ToolReturned) == {"call_id": "str", "result": "json", "error": "opt_str"}
    assert vsp.field_kinds(vs.Interrupted)["turn"] == "turn_ref"  # the one explicit marker
    assert vsp.field_kinds(vs.HandedOff)["data"] == "json_map"


def test_a_plugin_event_is_a_plain_attrs_class(plugin: Callable[[object], object], store: vs.Store) -> None:
    @attrs.frozen
    class Callback(vs.Event):
        TYPE: ClassVar[str] = "acme.Callback"
        number: str
        after_s: float = 60.0
        attempts: int | None = None
        tags: list[str] = attrs.field(factory=list)
        extra_info: Mapping[str, Any] = attrs.field(factory=dict)

    assert vsp.field_kinds(Callback) == {
        "number": "str",
        "after_s": "float",
        "attempts": "opt_int",
        "tags": "json",
        "extra_info": "json_map",
    }

    class Plugin:
        @vsp.hookimpl
        def register_event_types(self, register: Callable[..., None]) -> None:
            register(Callback)

    plugin(Plugin())
    s = store.open("c", agent="triage")
    s.record(Callback("+1-555-0100", tags=["vip"]))
    back = store.events("c")[-1]
    assert isinstance(back, Callback)
    assert (back.number, back.after_s, back.tags) == ("+1-555-0100", 60.0, ["vip"])
    with pytest.raises(vs.InvalidEvent, match="after_s"):
        s.record(Callback("+1", after_s="soon"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("annotation", "why"),
    [("set[int]", "set"), ("int | str", "int | str"), ("bool | None", "bool | None"), ("dict[int, str]", "dict")],
)
def test_an_annotation_with_no_stored_type_fails_at_registration(annotation: str, why: str) -> None:
    ns: dict[str, Any] = {"attrs": attrs, "vs": vs, "ClassVar": ClassVar, "Sequence": Sequence}
    source = (
        f"@attrs.frozen\nclass Odd(vs.Event):\n    TYPE: ClassVar[str] = 'acme.Odd'\n    value: {annotation} = None\n"
    )
    exec(compile(source, "<odd>", "exec", dont_inherit=True), ns)  # annotations evaluated, as in a plain module
    with pytest.raises(TypeError, match="names no stored type") as info:
        vsp.register_event_type(ns["Odd"])
    assert "Odd.value" in str(info.value) and why in str(info.value) and "Mapping[str, Any]" in str(info.value)
    assert "acme.Odd" not in vsp.event_types()


@pytest.mark.parametrize("type_name", [["x"], {"a": 1}, 7, None])
def test_a_stored_event_whose_type_name_is_not_a_string_is_invalid(type_name: object) -> None:
    import msgpack

    data = msgpack.packb({"i": "e1", "t": type_name, "w": 1.0}, use_bin_type=True)
    with pytest.raises(vs.InvalidEvent, match="type name"):
        vsp.decode_event(data)


def test_store_options_live_in_one_frozen_config(store: vs.Store) -> None:
    assert store.config.keys is store.keys and store.config.tenant is store.tenant
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        store.config.retries = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        store.barrier_timeout = 10.0  # type: ignore[attr-defined]  # options live in store.config
    s = store.open("c", agent="triage")
    s.record(vs.Note("x" * 2000))
    store.config = attrs.evolve(store.config, barrier_timeout=0.25, max_event_bytes=1024)
    s.flush(all_tiers=True)
    assert store.config.barrier_timeout == 0.25
    with pytest.raises(vs.InvalidEvent, match="limit of 1,024"):  # an open session reads the current config
        s.record(vs.Note("x" * 2000))
    with pytest.raises(vs.InvalidEvent, match="limit of 1,024"):
        s.record(vs.UserSpoke("x" * 2000))  # the inline record path too
