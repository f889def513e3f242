"""Sessions: tests, lint (ruff + mypy), bench (every benchmark script)."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (offline, CPU)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (style, import boundaries) and mypy (strict) over the package."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "vlcli", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "vlcli", "tests", "benchmarks", "noxfile.py")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmark in benchmarks/ and print its comparison."""
    session.install("-e", ".[test]")
    scripts = sorted(Path("benchmarks").glob("*.py")) if not session.posargs else session.posargs
    for script in scripts:
        session.run("python", str(script), env={"HF_HUB_OFFLINE": "1"})
