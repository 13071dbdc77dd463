"""CLI output: rich on a terminal when installed, plain text otherwise."""

from __future__ import annotations

import importlib.util
import io

import pytest

from voicestate._output import Printer  # a unit test of the CLI's private printer

HAVE_RICH = importlib.util.find_spec("rich") is not None  # nox runs these with and without the extra


def test_plain_when_not_a_terminal() -> None:
    out = io.StringIO()
    p = Printer(out)
    assert not p.rich
    p.say("[billing] resumed", "owner")
    assert out.getvalue() == "[billing] resumed\n"  # brackets are text, not markup


def test_rich_styles_when_asked() -> None:
    out = io.StringIO()
    p = Printer(out, color=True)
    assert p.rich is HAVE_RICH  # without the 'rich' extra, color=True falls back to plain text
    p.say("[billing] resumed", "owner")
    text = out.getvalue()
    assert "[billing] resumed" in text
    assert ("\x1b[" in text) is HAVE_RICH  # styled with ANSI escapes only by rich


def test_no_color_env_turns_rich_off(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("NO_COLOR", "1")
    assert not Printer(Tty()).rich
    monkeypatch.delenv("NO_COLOR")
    assert Printer(Tty()).rich is HAVE_RICH
