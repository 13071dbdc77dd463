"""Terminal output: rich when it is installed and stdout is a terminal, plain text otherwise."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

STYLES = {
    "title": "bold",
    "ok": "green",
    "bad": "bold red",
    "warn": "yellow",
    "dim": "dim",
    "caller": "cyan",
    "agent": "magenta",
    "owner": "bold blue",
    "tool": "yellow",
    "handoff": "bold green",
}


class Printer:
    """``say(text, style)``: styled with rich on a terminal, plain elsewhere (pipes, CI, tests)."""

    def __init__(self, out: TextIO | None = None, *, color: bool | None = None) -> None:
        self.out = out or sys.stdout
        self._console: Any = None
        if color is None:
            color = self.out.isatty() and not os.environ.get("NO_COLOR")
        if color:
            try:
                from rich.console import Console
            except ImportError:  # rich is optional: pip install 'voicestate[rich]'
                pass
            else:
                self._console = Console(file=self.out, highlight=False, soft_wrap=True, force_terminal=True)

    @property
    def rich(self) -> bool:
        return self._console is not None

    def say(self, text: str = "", style: str | None = None) -> None:
        if self._console is not None:
            self._console.print(text, style=STYLES.get(style or "", style), markup=False)
        else:
            print(text, file=self.out, flush=True)
