"""The runner and model flags are declared once and attached to every step command."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable

from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.cli.common import StepFlags
from vlcli.run.pipeline import options, resolve
from vlcli.steps import BUILT_IN, spec
from vlcli.table.storage import Table

FLAGS = [f.name for f in dataclasses.fields(StepFlags)]


def _params(name: str) -> dict[str, inspect.Parameter]:
    command = importlib.import_module(f"vlcli.cli.{name}").command
    return dict(inspect.signature(command).parameters)


def test_every_step_command_takes_the_shared_flags_last() -> None:
    for name in BUILT_IN:
        params = _params(name)
        assert "flags" not in params
        assert sorted(list(params)[-len(FLAGS) :]) == sorted(FLAGS), name


def test_step_commands_and_vl_run_batch_as_the_spec_says() -> None:
    settings = resolve({}, None)
    for name in BUILT_IN:
        default = _params(name)["batch_size"].default
        expected = spec(name).batch_size if name != "synth" else None
        assert default == expected, name
        defaults = [cls() for cls in spec(name).settings]
        assert options(name, settings).batch_size == spec(name).default_batch(*defaults), name


def test_pool_is_a_choice(make_table: Callable[..., Table]) -> None:
    table = make_table(2)
    result = CliRunner().invoke(app, ["filter", table.path, "--nsfw", "none", "--pool", "fork", "-q"])
    assert result.exit_code == 2 and "fork" in result.output
    ok = CliRunner().invoke(
        app, ["filter", table.path, "--nsfw", "none", "--limit", "1", "--min-side", "1", "-q"]
    )
    assert ok.exit_code == 0, ok.output
    assert Table.open(table.path).count("filter_status IS NOT NULL") == 1
