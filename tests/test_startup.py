"""Start-up: `vl --help` lists every command without importing any command's module or the heavy stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from vlcli.cli.app import COMMANDS, HIDDEN, app, load_command

HEAVY = ("lance", "pyarrow", "polars", "torch", "numpy", "PIL", "pandas", "vlcli.table", "vlcli.steps")


def modules_after(args: list[str]) -> tuple[int, list[str], str]:
    """Run `vl ARGS` in a fresh interpreter: exit code, the heavy modules it imported, its output."""
    code = (
        "import json, sys\n"
        f"sys.argv = ['vl', *{args!r}]\n"
        "from vlcli.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    rc = exc.code\nelse:\n    rc = 0\n"
        f"heavy = sorted(m for m in sys.modules if m.startswith({HEAVY!r}))\n"
        "print('\\n' + json.dumps([rc, heavy]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    rc, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    return rc, [m.split(".")[0] if not m.startswith("vlcli") else m for m in heavy], done.stdout + done.stderr


@pytest.mark.parametrize("args", [["--help"], [], ["no-such-command"]])
def test_vl_help_imports_no_heavy_library(args: list[str]) -> None:
    rc, heavy, output = modules_after(args)
    assert heavy == [], f"vl {' '.join(args)} imported {sorted(set(heavy))}"
    assert rc in (0, 2)
    if args != ["no-such-command"]:
        assert all(f" {name} " in output for name in COMMANDS if name not in HIDDEN)


def test_a_command_runs_after_the_lazy_listing() -> None:
    result = CliRunner().invoke(app, ["config", "--help"])
    assert result.exit_code == 0 and "init" in result.output
    result = CliRunner().invoke(app, ["synthesize", "--help"])  # the hidden alias still works
    assert result.exit_code == 0 and "Usage: vl synthesize" in result.output


def test_the_listing_is_what_the_commands_say(monkeypatch: pytest.MonkeyPatch) -> None:
    lazy = CliRunner().invoke(app, ["--help"], terminal_width=100).output
    group = typer.main.get_command(app)
    for name in COMMANDS:
        group.commands[name] = load_command(name)  # type: ignore[attr-defined]
    monkeypatch.setattr("typer.testing._get_command", lambda _: group)  # every command already loaded
    loaded = CliRunner().invoke(app, ["--help"], terminal_width=100).output
    assert lazy == loaded, "update COMMANDS in vlcli/cli/app.py to the commands' first help paragraph"
