"""docs/writing-a-backend.md keeps its promise: the complete example, the ``dict://`` backend,
passes the conformance suites.

The module is taken from the page as written, installed as a package in a temporary
directory, registered as the page's ``tests/conftest.py`` registers it, and run through
``BackendConformance`` and ``StoreConformance``, alone and as a cache and a behind tier
(the page's ``tests/test_conformance.py`` and ``tests/test_tiers.py``).
"""

from __future__ import annotations

import inspect
import itertools
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import voicestate.backend as vsb
import voicestate.plugins as vsp
from voicestate.testing import BackendConformance, StoreConformance

PAGE = Path(__file__).resolve().parent.parent / "docs" / "writing-a-backend.md"
TEXT = PAGE.read_text()


def _blocks() -> dict[str, str]:
    """The page's python and toml blocks that name their file in a first-line comment, by that name.

    A later block of the same name wins: the first ``pyproject.toml`` shows the entry point
    alone, the example's is complete.
    """
    out: dict[str, str] = {}
    for code in re.findall(r"^```(?:python|toml)\n(.*?)^```", TEXT, re.S | re.M):
        first = code.split("\n", 1)[0]
        if re.fullmatch(r"# [\w/]+\.(py|toml)", first):
            out[first[2:]] = code
    return out


BLOCKS = _blocks()
MODULE = BLOCKS["src/dictstore/__init__.py"]  # the complete example
CONFTEST = BLOCKS["tests/conftest.py"]  # how it registers without the entry point
SNIPPET = BLOCKS["tests/test_conformance.py"]  # the conformance tests the page shows
TIERS_SNIPPET = BLOCKS["tests/test_tiers.py"]


def _example_section() -> str:
    return TEXT.split("## A complete example: dict://", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module", autouse=True)
def dictstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The page's module as an importable package, registered as the page's conftest.py does."""
    src = tmp_path_factory.mktemp("guide") / "src"
    (src / "dictstore").mkdir(parents=True)
    (src / "dictstore" / "__init__.py").write_text(MODULE)
    assert "dictstore" not in sys.modules
    sys.path.insert(0, str(src))
    try:
        exec(compile(CONFTEST, "tests/conftest.py", "exec"), {"__name__": "conftest"})
        module = sys.modules["dictstore"]
        assert Path(module.__file__ or "").read_text() == MODULE
        assert vsp.get_plugin_manager().is_registered(module)
        try:
            yield module
        finally:
            vsp.unregister_plugin(module)
    finally:
        sys.path.remove(str(src))
        sys.modules.pop("dictstore", None)


def _assert_the_pages_backend(backend: object, dictstore: ModuleType) -> None:
    assert type(backend) is dictstore.DictBackend, type(backend)
    assert type(backend).__module__ == "dictstore" and isinstance(backend, vsb.Backend)


_names = itertools.count()


class TestGuideBackend(BackendConformance, StoreConformance):
    """The page's ``tests/test_conformance.py`` (test_the_pages_conformance_tests_are_these checks it)."""

    @pytest.fixture
    def store_url(self) -> str:
        return f"dict://guide-{next(_names)}"

    @pytest.fixture(autouse=True)
    def _runs_the_pages_backend(self, request: pytest.FixtureRequest, store_url: str, dictstore: ModuleType) -> None:
        _assert_the_pages_backend(vsb.open_backend(store_url), dictstore)
        if "store" in request.fixturenames:
            _assert_the_pages_backend(request.getfixturevalue("store").tiers.backend, dictstore)
        if "backend" in request.fixturenames:
            _assert_the_pages_backend(request.getfixturevalue("backend"), dictstore)


class TestGuideBackendAsCacheAndBehind(StoreConformance):
    """The page's ``tests/test_tiers.py``: dict:// as a hot cache and as a behind tier around SQLite."""

    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        n = next(_names)
        return f"dict://hot-{n} sqlite:///{tmp_path / 'calls.db'} dict://archive-{n}?write=behind"

    @pytest.fixture(autouse=True)
    def _runs_the_pages_backend(self, request: pytest.FixtureRequest, dictstore: ModuleType) -> None:
        if "store" in request.fixturenames:
            hot, deciding, behind = request.getfixturevalue("store").tiers.all
            _assert_the_pages_backend(hot.backend, dictstore)
            _assert_the_pages_backend(behind.backend, dictstore)
            assert deciding.url.startswith("sqlite:///") and behind.write == "behind"


def _run_snippet(code: str, name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": name}
    exec(compile(code, name, "exec"), namespace)
    return namespace


def _fixture(cls: type, name: str) -> Any:
    """The plain function behind a class's pytest fixture."""
    return inspect.unwrap(cls.__dict__[name])


def test_the_pages_conformance_tests_are_these(tmp_path: Path) -> None:
    shown = _run_snippet(SNIPPET, "test_conformance")["TestDictBackend"]
    assert shown.__bases__ == TestGuideBackend.__bases__ == (BackendConformance, StoreConformance)
    assert [n for n in vars(shown) if not n.startswith("__")] == ["store_url"]
    urls = [_fixture(shown, "store_url")(shown()) for _ in range(2)]
    assert all(re.fullmatch(r"dict://[\w-]+", u) for u in urls) and urls[0] != urls[1]  # fresh per test

    tiers = _run_snippet(TIERS_SNIPPET, "test_tiers")["TestDictAsCacheAndBehind"]
    assert tiers.__bases__ == TestGuideBackendAsCacheAndBehind.__bases__ == (StoreConformance,)
    shown_url = _fixture(tiers, "store_url")(tiers(), tmp_path)
    ours = _fixture(TestGuideBackendAsCacheAndBehind, "store_url")(TestGuideBackendAsCacheAndBehind(), tmp_path)
    assert re.sub(r"-\d+", "-N", shown_url) == re.sub(r"-\d+", "-N", ours)


def _count(cls: type) -> int:
    """How many tests pytest collects from ``cls`` (each parametrized test counted per case)."""
    total = 0
    for name in dir(cls):
        if name.startswith("test_") and callable(getattr(cls, name)):
            n = 1
            for mark in getattr(getattr(cls, name), "pytestmark", []):
                if mark.name == "parametrize":
                    n *= len(mark.args[1])
            total += n
    return total


def test_the_page_tells_the_truth_about_the_example() -> None:
    lines = len(MODULE.splitlines())
    (claimed,) = re.findall(r"About (\d+) lines", _example_section())
    assert abs(lines - int(claimed)) <= 10, f"the example has {lines} lines; the page says about {claimed}"
    (count,) = re.findall(r"runs about (\d+) tests", TEXT)
    assert abs(_count(TestGuideBackend) - int(count)) <= 10, f"{_count(TestGuideBackend)} tests, the page: {count}"
    # the registration shown in "The factory and its URL scheme" is the example's own
    hookimpl = re.search(r"(@vsp\.hookimpl\ndef register_backends.*?\n)```", TEXT, re.S)
    assert hookimpl is not None and hookimpl.group(1) in MODULE
    # the package's pyproject.toml installs that module under the name the entry point gives
    project = tomllib.loads(BLOCKS["pyproject.toml"])
    assert project["project"]["entry-points"]["voicestate"] == {"dict": "dictstore"}
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["src/dictstore"]
    imported = {m.split(".")[0] for m in re.findall(r"^(?:from|import) (\S+)", MODULE, re.M)}
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == {"voicestate", "attrs"}
    assert set(project["project"]["dependencies"]) == {"voicestate", "attrs"}


def test_the_usage_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    (usage,) = re.findall(r"Once installed.*?```python\n(.*?)```", _example_section(), re.S)
    assert "dict://" in usage
    namespace = _run_snippet(usage, "usage")
    try:
        assert capsys.readouterr().out == "billing\n"
    finally:
        namespace["store"].close()
