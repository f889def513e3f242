"""Sessions: tests, lint (ruff + mypy + import-linter), bench (every benchmark script)."""

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


# What mypy reads types from; the heavy model libraries (torch, transformers, ...) are imported lazily
# and typed loosely, so lint installs without them (under a minute instead of several GB).
LINT_TYPES = ("typer", "rich", "numpy", "pillow", "pyarrow", "polars", "httpx", "pyyaml")


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (style, import boundaries), mypy (strict) and import-linter (layers) over the package."""
    session.install("-e", ".[lint]", "--no-deps")
    session.install("ruff>=0.6", "mypy>=1.10", "import-linter>=2.1", *LINT_TYPES)
    session.run("ruff", "check", "vlcli", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "vlcli", "tests", "benchmarks", "noxfile.py")
    session.run("mypy")
    session.run("lint-imports")


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmark in benchmarks/ and print its comparison."""
    session.install("-e", ".[test]")
    scripts = sorted(Path("benchmarks").glob("*.py")) if not session.posargs else session.posargs
    for script in scripts:
        session.run("python", str(script), env={"HF_HUB_OFFLINE": "1"})
