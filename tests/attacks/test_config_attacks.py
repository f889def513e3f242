"""Hostile config files: YAML alias bombs and recursive aliases are refused with the line, in milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.errors import UsageError
from vlcli.run import config

runner = CliRunner()

LAUGHS = """\
synth:
  backend_options:
    a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
    i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_billion_laughs_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "vl.yaml"
    path.write_text(LAUGHS)
    # d expands to 7,381 values, e to 66,430: the first over the bound is e, on line 7
    with pytest.raises(UsageError, match=r"vl\.yaml:7: aliases \(\*name\) expand this value to more than"):
        config.load(path)
    for args in (["config", "check", str(path)], ["run", str(tmp_path), "--config", str(path), "--dry-run"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "vl.yaml:7: aliases" in result.output, result.output


def test_billion_laughs_in_set_is_refused() -> None:
    bomb = "[" + ",".join(["&a [1,1,1,1,1,1,1,1,1,1]"] + ["*a"] * 20) + "]"
    nested = "{" + ", ".join(f"k{i}: {bomb if i == 0 else '*a'}" for i in range(3)) + "}"
    assert config.parse_assignment(f"synth.backend_options={nested}")  # a few aliases are fine
    doubled = (
        "&b ["
        + ", ".join(
            ["&c [" + ",".join(["&d [" + ",".join(["x"] * 30) + "]"] + ["*d"] * 29) + "]"] + ["*c"] * 29
        )
        + "]"
    )
    with pytest.raises(UsageError, match=r"--set:1: aliases"):
        config.parse_assignment(f"synth.backend_options={{k: {doubled}}}")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vl.yaml"
    path.write_text("synth:\n  backend_options: &x\n    again: *x\n")
    with pytest.raises(UsageError, match=r"vl\.yaml:2: an alias refers to the value that contains it"):
        config.load(path)


def test_anchors_within_the_bound_still_work(tmp_path: Path) -> None:
    path = tmp_path / "vl.yaml"
    path.write_text("synth:\n  backend_options: &opts {top_p: 0.9}\nvalidate:\n  backend_options: *opts\n")
    settings, _ = config.load(path)
    assert settings["validate"]["backend_options"] == {"top_p": 0.9}


def test_unsafe_tags_are_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "vl.yaml"
    path.write_text("synth:\n  backend_options: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        config.load(path)
    assert not (tmp_path / "pwned").exists()
