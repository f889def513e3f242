"""The command line as a whole: every command documented, the reference current, errors one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.cli.reference import commands, render_reference

COMMANDS = sorted(commands())


def test_every_command_has_help_and_every_parameter_a_description() -> None:
    for name, command in commands().items():
        assert command.help and command.help.strip(), name
        for param in command.params:
            if param.name != "help":
                assert getattr(param, "help", None), f"vl {name} {param.opts[0]} has no help"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_runs(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_reference_is_current() -> None:
    docs = Path(__file__).parent.parent / "docs" / "cli.md"
    assert docs.read_text() == render_reference(), "run: python -m vlcli.cli.reference > docs/cli.md"


@pytest.mark.parametrize("name", ["status", "crop", "similar"])
def test_missing_table_is_one_line_with_exit_1(name: str, tmp_path: Path) -> None:
    args = [name, str(tmp_path / "missing.lance")] + (["someid"] if name == "similar" else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "vl ingest" in result.stderr


def test_no_arguments_shows_help() -> None:
    result = CliRunner().invoke(app, [])
    assert "Usage" in result.output
