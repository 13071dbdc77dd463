"""The docs' quick start runs as written (every python block, in order, in one interpreter)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_quickstart_code_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "quickstart.md").read_text(), re.S)
    assert len(blocks) >= 3, "the quick start lost its examples"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICESTATE_")}
    for i, block in enumerate(blocks):
        out = subprocess.run(
            [sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, f"quick start block {i + 1} failed:\n{block}\n{out.stderr}"


def test_every_public_name_is_documented() -> None:
    import voicestate as vs
    import voicestate.backend as vsb
    import voicestate.plugins as vsp
    import voicestate.testing as vst

    text = "".join(p.read_text() for p in DOCS.glob("*.md"))
    for module in (vs, vsb, vsp, vst):
        missing = [name for name in module.__all__ if name not in text]
        assert not missing, f"public names of {module.__name__} missing from docs/: {missing}"
