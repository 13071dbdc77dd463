"""Sessions: demo, tests, lint, typing, bench, docs. `pip install 'nox[uv]'` then `nox -s NAME`."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def demo(session: nox.Session) -> None:
    """A call with a barge-in, a running tool call and a handoff to a second process."""
    session.install(".")
    session.run("voicestate", "demo", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite: the core, its conformance suite, processes racing."""
    session.install(".[test,rich]")
    session.run("pytest", *(session.posargs or ["tests"]))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")  # pinned: formatting must not drift under CI
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    session.install(".[test,rich]", "mypy==2.4.1")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Latency figures against the budgets of DESIGN.md (JSON + table)."""
    session.install(".")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs site; warnings are errors."""
    session.install("mkdocs==1.6.1")
    # mkdocs refuses a site_dir inside docs_dir, so the site goes to build/docs (git-ignored).
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/docs")
