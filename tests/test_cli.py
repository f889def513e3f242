"""The command line as a whole: every command documented, the reference current, errors one line."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

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


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path: Path, tiny_dinov2: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    import warnings

    from conftest import jpeg_bytes, table_rows

    from vlcli.table.schema import ingest_schema
    from vlcli.table.storage import Table

    table = Table.create(tmp_path / "t.lance", ingest_schema())
    table.append(table_rows([jpeg_bytes(i, (400, 300)) for i in range(200)]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "vlcli.cli", "crop", table.path, "--model", tiny_dinov2]
    cmd += ["--batch-size", "1", "--commit-seconds", "0"]
    # A suite started in the background by a shell without job control ignores SIGINT, and so would vl:
    # give it the default handling a terminal gives.
    restore = partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lance's fork warning: the child execs at once
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=restore)
    deadline = time.monotonic() + 90
    while "crop_status" not in Table.open(table.path).schema.names or not Table.open(table.path).count(
        "crop_status IS NOT NULL"
    ):  # interrupt mid-work, after the first commit (every batch here)
        assert time.monotonic() < deadline and proc.poll() is None, "crop never committed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "rerun" in stderr


def _help_pages() -> list[Any]:
    """(argv, raw help text) of `vl` and of every command and subcommand, hidden aliases left out."""
    pages = [pytest.param([], "", id="vl")]
    for name, command in sorted(commands().items()):
        if getattr(command, "hidden", False):
            continue
        pages.append(pytest.param([name], command.help or "", id=name))
        for sub, subcommand in sorted(getattr(command, "commands", {}).items()):
            pages.append(pytest.param([name, sub], subcommand.help or "", id=f"{name} {sub}"))
    return pages


@pytest.mark.parametrize(("argv", "text"), _help_pages())
def test_help_shows_no_type_for_flags_and_wraps_paragraphs_to_the_terminal(
    argv: list[str], text: str
) -> None:
    narrow = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    assert "<bool>" not in narrow.output  # flags take no value (e.g. `--quiet`, `--help`)
    wide = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "400"})
    lines = [" ".join(line.split()) for line in wide.output.splitlines()]
    for paragraph in text.split("\n\n"):
        one_line = " ".join(paragraph.split())
        # wide enough for any paragraph: each shows on one line, not broken where the docstring was
        assert any(one_line in line for line in lines), one_line
