"""voicestate.plugins.lazy and lazy_exports: a plugin's heavy imports wait for first use."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import voicestate.plugins as vsp


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway package ``lazypkg`` with a private module that records its import."""
    root = tmp_path / "lazypkg"
    root.mkdir()
    (root / "__init__.py").write_text(
        "import voicestate.plugins as vsp\n__getattr__ = vsp.lazy_exports(__name__, {'Heavy': '_heavy'})\n"
    )
    (root / "_heavy.py").write_text(
        "import sys\nsys.modules[__name__].imported = True\n"
        "class Heavy:\n    pass\n"
        "def render(state, policy):\n    return ('rendered', state, policy)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "lazypkg"
    for name in [n for n in sys.modules if n.startswith("lazypkg")]:
        del sys.modules[name]


def test_lazy_imports_on_the_first_call_and_forwards_it(package: str) -> None:
    render = vsp.lazy(f"{package}._heavy", "render")
    assert f"{package}._heavy" not in sys.modules
    assert render("s", policy="p") == ("rendered", "s", "p")
    assert f"{package}._heavy" in sys.modules
    assert render.__name__ == "render"


def test_lazy_exports_imports_a_name_on_first_use_only(package: str) -> None:
    import importlib

    pkg = importlib.import_module(package)
    assert f"{package}._heavy" not in sys.modules
    heavy = pkg.Heavy
    assert heavy.__name__ == "Heavy" and f"{package}._heavy" in sys.modules
    assert pkg.__dict__["Heavy"] is heavy  # cached: the next lookup does not go through __getattr__
    with pytest.raises(AttributeError, match="has no attribute 'Missing'"):
        pkg.Missing  # noqa: B018


def test_a_missing_target_fails_when_called_not_when_registered() -> None:
    broken = vsp.lazy("no_such_module_anywhere", "render")
    assert isinstance(broken, types.FunctionType)
    with pytest.raises(ModuleNotFoundError):
        broken()
