"""The wheel built from this checkout: what it ships, its metadata, its console script."""

from __future__ import annotations

import configparser
import importlib.util
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _build(out: Path) -> None:
    if importlib.util.find_spec("hatchling") is None:  # not the test extra: pip fetches it
        cmd = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(out)]
    elif importlib.util.find_spec("pip") is not None:
        cmd = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    else:  # uv's environments (nox) have no pip: call the PEP 517 hook as pip would, offline
        cmd = [sys.executable, "-c", f"import hatchling.build as b; b.build_wheel({str(out)!r})"]
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=120)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    out = tmp_path_factory.mktemp("wheel")
    _build(out)
    [path] = out.glob("*.whl")
    assert path.name.startswith(f"voicestate-{PROJECT['version']}-")
    with zipfile.ZipFile(path) as zf:
        yield zf


def _dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    return wheel.read(f"voicestate-{PROJECT['version']}.dist-info/{name}").decode()


@pytest.fixture(scope="module")
def metadata(wheel: zipfile.ZipFile) -> Message:
    return HeaderParser().parsestr(_dist_info(wheel, "METADATA"))


def test_ships_the_package_and_nothing_else(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for name in ["py.typed", "__init__.py", "hookspecs.py", "testing/__init__.py"]:
        assert f"voicestate/{name}" in names
    # the conformance suite, shipped for the backends to subclass: every module of it
    suite = sorted(f"voicestate/testing/{p.name}" for p in (ROOT / "voicestate" / "testing").glob("*.py"))
    assert len(suite) > 1
    assert set(suite) <= names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    dist_info = f"voicestate-{PROJECT['version']}.dist-info/"
    assert [n for n in names if not n.startswith(("voicestate/", dist_info))] == []


def test_metadata(metadata: Message) -> None:
    assert metadata["Name"] == "voicestate"
    assert metadata["Version"] == PROJECT["version"]
    requires = metadata.get_all("Requires-Dist") or []
    by_extra: dict[str | None, set[str]] = {}
    for requirement in requires:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        extra = re.search(r"""extra\s*==\s*['"]([^'"]+)['"]""", requirement)
        assert name is not None
        by_extra.setdefault(extra and extra.group(1), set()).add(name.group(0).lower())
    assert by_extra[None] == {"attrs", "cattrs", "pluggy", "msgpack"}  # the core's whole footprint
    assert by_extra["rich"] == {"rich"}
    assert {"pytest", "hypothesis"} <= by_extra["test"]
    assert {"rich", "test"} <= set(metadata.get_all("Provides-Extra") or [])


def test_console_script(wheel: zipfile.ZipFile) -> None:
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_dist_info(wheel, "entry_points.txt"))
    assert dict(entry_points["console_scripts"]) == {"voicestate": "voicestate._cli:main"}
