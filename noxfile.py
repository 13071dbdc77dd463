"""Sessions: demo, tests, lint, typing, bench, docs. `pip install 'nox[uv]'` then `nox -s NAME`.

`tests` and `typing` are parametrized: `tests(core)`, `tests(core-plain)` (without the
rich extra) and one `tests(<member>)` per workspace member (CONTRIBUTING.md), each in its
own environment, because the members' frameworks conflict with each other. `nox -s tests`
runs them all; `nox -s "tests(redis)"` runs one.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).resolve().parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# The core tests that exercise output and CLI rendering, run again without rich installed.
PLAIN_TESTS = [
    "tests/test_output.py",
    "tests/test_cli.py",
    "tests/test_cli_tools.py",
    "tests/test_readme.py",
    "tests/test_docs.py",
]
NO_RICH = "import importlib.util, sys; sys.exit(importlib.util.find_spec('rich') and 'rich must not be installed')"


def _discover_members() -> dict[str, Path]:
    """{id: directory relative to the root} for every directory matched by the workspace's
    member globs (`[tool.uv.workspace] members`) that holds a pyproject.toml."""
    members: dict[str, Path] = {}
    for pattern in PYPROJECT["tool"]["uv"]["workspace"]["members"]:
        for pyproject in sorted(ROOT.glob(f"{pattern}/pyproject.toml")):
            directory = pyproject.parent.relative_to(ROOT)
            name = directory.name
            if name in members or name in ("core", "core-plain"):
                raise RuntimeError(f"member {directory}: its directory name {name!r} is taken; rename it")
            members[name] = directory
    return members


MEMBERS = _discover_members()


def _package(member: str) -> str:
    """A member's import package: its one `voicestate_*` directory with an __init__.py."""
    found = sorted(p.parent.name for p in (ROOT / MEMBERS[member]).glob("voicestate_*/__init__.py"))
    if len(found) != 1:
        raise RuntimeError(f"{MEMBERS[member]} must hold exactly one voicestate_<name>/ package, found {found}")
    return found[0]


def _with(member: Path) -> list[str]:
    """`-e <dir>` for each workspace member that `member`'s tests need beside it: its
    pyproject's `[tool.voicestate] test-with` (a test extra cannot name a workspace path)."""
    table = tomllib.loads((ROOT / member / "pyproject.toml").read_text(encoding="utf-8"))
    return [arg for d in table.get("tool", {}).get("voicestate", {}).get("test-with", []) for arg in ("-e", d)]


@nox.session
def demo(session: nox.Session) -> None:
    """A call with a barge-in, a running tool call and a handoff to a second process."""
    session.install(".")
    session.run("voicestate", "demo", *session.posargs)


@nox.session
def demo_pipecat(session: nox.Session) -> None:
    """The same call through real Pipecat pipelines (scripted LLM and TTS, offline), in two processes."""
    session.install(".", "./integrations/pipecat")
    session.run("voicestate", "demo", "--pipecat", *session.posargs)


@nox.session
@nox.parametrize("target", [nox.param(t, id=t) for t in ("core", "core-plain", *MEMBERS, "integration")])
def tests(session: nox.Session, target: str) -> None:
    """One suite per environment: the core; its output/CLI tests without rich; each member;
    the members together.

    core runs tests/ (the conformance suite, processes racing); core-plain the PLAIN_TESTS
    with the test extra only; a member its own tests/, from its directory; integration the
    tests of integration/ with every backend member installed (tiers across backends, real
    servers killed mid-call). Positional arguments replace pytest's (paths relative to the
    member's directory for a member)."""
    if target == "core":
        session.install(".[test,rich]")
        session.run("pytest", *(session.posargs or ["tests"]))
    elif target == "core-plain":
        session.install(".[test]")
        session.run("python", "-c", NO_RICH)
        session.run("pytest", *(session.posargs or PLAIN_TESTS))
    elif target == "integration":
        backends = [arg for m in MEMBERS.values() if m.parts[0] == "backends" for arg in ("-e", f"{m}[test]")]
        session.install("-e", ".[test]", *backends)
        session.run("pytest", *(session.posargs or ["integration"]))
    else:
        member = MEMBERS[target]
        # The core's test extra too: the same pytest plugins as the core (the root config sets a timeout).
        session.install("-e", ".[test]", *_with(member), "-e", f"{member}[test]")
        session.chdir(member)
        session.run("pytest", *(session.posargs or ["tests"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, then import-linter's contracts over the core and every member."""
    session.install("ruff==0.17.6", "import-linter==2.17")  # pinned: formatting must not drift under CI
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # import-linter: the core's contracts live in pyproject.toml's [tool.importlinter] (so a
    # bare `lint-imports` checks the core); here a generated copy adds every member's package.
    # grimp finds packages where they are installed; members go in without their dependencies:
    # their frameworks conflict, and the contracts only look at imports between our packages.
    session.install("-e", ".")
    if MEMBERS:
        session.install("--no-deps", *(arg for m in MEMBERS.values() for arg in ("-e", str(m))))
    config = Path(session.create_tmp()) / "importlinter.toml"
    config.write_text(_importlinter_config([_package(m) for m in MEMBERS]), encoding="utf-8")
    session.run("lint-imports", "--no-logo", "--cache-dir", str(config.parent / "import_linter_cache"), str(config))


def _importlinter_config(packages: list[str]) -> str:
    """pyproject.toml's [tool.importlinter] (the core's contracts) with each member's package
    added to the root packages and to every private_modules contract, as a TOML file."""
    options: dict[str, Any] = copy.deepcopy(PYPROJECT["tool"]["importlinter"])
    contracts: list[dict[str, Any]] = options.pop("contracts")
    options["root_packages"] += packages
    for contract in contracts:
        if contract["type"] == "private_modules":
            contract["packages_with_private_modules"] += packages
    lines = ["[tool.importlinter]", *_toml_pairs(options)]
    for contract in contracts:
        lines += ["", "[[tool.importlinter.contracts]]", *_toml_pairs(contract)]
    return "\n".join(lines) + "\n"


def _toml_pairs(table: dict[str, Any]) -> list[str]:
    # Strings and lists of strings as JSON, which TOML reads alike; booleans lower-case.
    return [
        f"{key} = {json.dumps(value) if not isinstance(value, bool) else str(value).lower()}"
        for key, value in table.items()
    ]


@nox.session
@nox.parametrize("target", [nox.param(t, id=t) for t in ("core", *MEMBERS)])
def typing(session: nox.Session, target: str) -> None:
    """mypy --strict on the core, and on each member's package in that member's environment."""
    if target == "core":
        session.install(".[test,rich]", "mypy==2.4.1")
        session.run("mypy")
    else:
        member = MEMBERS[target]
        session.install("-e", ".[test]", *_with(member), "-e", f"{member}[test]", "mypy==2.4.1")
        session.run("mypy", str(member / _package(target)))  # the root's [tool.mypy] (strict) applies


@nox.session
def bench(session: nox.Session) -> None:
    """Latency figures against the budgets of DESIGN.md (JSON + table)."""
    # openai-agents: the best peer's SQLiteSession, measured beside our resume in the same run
    # the Redis and DynamoDB figures need the members (and moto, in DynamoDB's test extra);
    # the LangGraph figures LangGraph's own savers beside VoiceStateSaver; the MCP figures the server
    session.install(
        ".",
        "-e",
        "backends/redis",
        "-e",
        "backends/dynamodb[test]",
        "-e",
        "integrations/pipecat",
        "-e",
        "integrations/langchain",
        "-e",
        "integrations/mcp",
        "openai-agents==0.24.0",
        "langgraph>=1.2,<1.3",
        "langgraph-checkpoint-sqlite==3.1.2",
        "langgraph-checkpoint-plainredis==0.1.0",
    )
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def bench_crewai(session: nox.Session) -> None:
    """CrewAI memory save and search, VoiceStateStorage beside CrewAI's default backend.

    Its own environment (not run by default): crewai pins openai < 3, which the rest of
    `nox -s bench` (openai-agents) cannot share. `nox -s bench_crewai -- --quick` for a short run."""
    session.install(".", "-e", "integrations/crewai")
    session.chdir("benchmarks")
    session.run("python", "-m", "vsbench.crewai_memory", *session.posargs)


@nox.session
def bench_peers(session: nox.Session) -> None:
    """voicestate-redis beside the libraries a user would pick instead, on one Redis, in one run.

    Its own environment (not run by default): the peers pinned at the peer baseline's
    versions, which co-install; langchain-redis and langgraph-checkpoint-redis only to probe
    them (they need Redis modules). `nox -s bench_peers -- --quick` for a short run."""
    session.install(
        ".",
        "-e",
        "backends/redis",
        "redis[hiredis]==8.1.0",
        "hiredis==3.5.0",
        "openai-agents[redis]==0.24.0",
        "langchain-core==1.7.2",
        "langchain-community==0.4.2",
        "langgraph==1.2.22",
        "langgraph-checkpoint==4.3.2",
        "langgraph-checkpoint-plainredis==0.1.0",
        "langchain-redis==0.2.6",
        "langgraph-checkpoint-redis==0.5.2",
    )
    session.run("python", "benchmarks/peers/run.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs site; warnings are errors.

    docs/api.md is generated from the docstrings by mkdocstrings, which reads the
    source statically (griffe) from the repository root (mkdocs.yml's ``paths``):
    the package itself is not installed. Pinned, so that a new release cannot turn a
    clean build into a strict-mode failure; ruff (lint's pin) lays out the signatures."""
    session.install(
        "mkdocs==1.6.1",
        "mkdocstrings[python]==1.0.8",
        "mkdocstrings-python==2.0.11",
        "mkdocs-autorefs==1.4.5",
        "griffe==2.4.1",
        "ruff==0.17.6",
    )
    # mkdocs refuses a site_dir inside docs_dir, so the site goes to build/docs (git-ignored).
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/docs")
