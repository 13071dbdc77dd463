"""The README's quick start runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_quick_start_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no python quick start"
    script = blocks[0] + (
        "\nassert s.state.owner == 'billing' and s.state.epoch == 2"
        "\nassert s.state.turns[1].heard == 'Let me pull up'"
        "\nassert s.state.tools['t1'].status == 'ok'"
        "\nprint('ok')\n"
    )
    printed = re.search(r"It prints:\n\n```text\n(.*?)```", README.read_text(), re.S)
    assert printed, "the README shows what its quick start prints"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICESTATE_")}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == printed.group(1) + "ok\n"
    assert (tmp_path / "calls.db").exists()
