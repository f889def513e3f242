"""`vl demo`: the generated folder lands in the table with one error row and one duplicate; the CLI."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from vlcli.cli.app import app
from vlcli.demo import demo as demo_module
from vlcli.demo.demo import DemoResult, demo_paths, run_demo
from vlcli.errors import UsageError
from vlcli.review.status import table_status
from vlcli.table.storage import Table


class CountingProgress:
    """A Progress that remembers which steps it saw start and finish."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def start(self, step: str, total: int | None) -> None:
        self.log.append(f"start {step}")

    def advance(self, rows: int, errors: int) -> None:
        pass

    def finish(self) -> None:
        self.log.append("finish")


REAL_STEPS = demo_module.DEMO_STEPS


@pytest.fixture(autouse=True)
def no_model_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most tests here are about files, rows and messages: one test runs the real model steps."""
    monkeypatch.setattr(demo_module, "DEMO_STEPS", ())


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo_module, "DEMO_STEPS", ())
        return run_demo(tmp_path_factory.mktemp("demo") / "out", n=12, seed=1)


def test_layout_is_data_dataset_train(result: DemoResult) -> None:
    images, table = demo_paths(result.directory)
    assert result.images == images == result.directory / "data" / "demo" / "train"
    assert result.table == table == result.directory / "demo.lance"
    assert sorted(p.name for p in images.iterdir()) == sorted(s.name for s in result.samples.samples)


def test_every_file_is_accounted_for(result: DemoResult) -> None:
    files = len(result.samples.samples)
    table = Table.open(result.table)
    # The exact duplicate is stored once: every other file is a row.
    assert result.ingest.seen == files
    assert result.ingest.duplicates == 1
    assert table.count() == result.ingest.added + result.ingest.errors == files - 1  # the error row too
    sources = set(table.to_arrow(["source"])["source"].to_pylist())
    (copy,) = result.samples.paths("exact_duplicate")
    assert {str(p) for p in result.samples.paths()} - sources == {str(copy)}
    assert set(table.to_arrow(["dataset"])["dataset"].to_pylist()) == {"demo"}


def test_the_corrupt_file_is_the_one_error_row(result: DemoResult) -> None:
    table = Table.open(result.table)
    errors = table.to_arrow(["source", "ingest_status", "image"], "ingest_status <> 'ok'").to_pylist()
    (broken,) = result.samples.paths("corrupt")
    assert [(r["source"], r["image"]) for r in errors] == [(str(broken), None)]
    assert errors[0]["ingest_status"].startswith("error: truncated")
    ingest = table_status(table).step("ingest")
    assert (ingest.done, ingest.errors) == (len(result.samples.samples) - 2, 1)


def test_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="--overwrite"):
        run_demo(tmp_path, n=6)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_overwrite_replaces_only_the_demo(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    first = run_demo(tmp_path, n=6, seed=0, overwrite=True)
    second = run_demo(tmp_path, n=7, seed=2, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert len(list(second.images.iterdir())) == 7
    assert Table.open(second.table).count() == 6  # a fresh table, not the first run's rows plus these
    assert first.table == second.table


def test_too_few_images_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--images"):
        run_demo(tmp_path / "x", n=5)
    assert not (tmp_path / "x").exists()


def test_runs_every_listed_step_with_a_progress_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_module, "DEMO_STEPS", ("filter",))
    log: list[str] = []
    result = run_demo(tmp_path, n=6, progress_factory=lambda: CountingProgress(log))
    assert [r.step for r in result.steps] == ["filter"]
    assert result.steps[0].done == Table.open(result.table).count("ingest_status = 'ok'")
    assert log == ["start ingest", "finish", "start filter", "finish"]
    assert result.review is not None and result.review.name == "review.html" and result.review.exists()


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """`vl demo cli-demo --images 12 --seed 3` with every step, run in a fresh folder (its cwd)."""
    cwd = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo_module, "DEMO_STEPS", REAL_STEPS)
        patch.chdir(cwd)
        return cwd, CliRunner().invoke(app, ["demo", "cli-demo", "--images", "12", "--seed", "3"])


def test_cli_runs_and_ends_with_status(cli_run: tuple[Path, Result]) -> None:
    cwd, result = cli_run
    out = cwd / "cli-demo"
    assert result.exit_code == 0, result.output
    text = result.output
    assert "wrote 12 files" in text
    assert "11 rows" in text  # the status line: the duplicate is stored once
    assert "truncated JPEG" in text
    assert "vl query" in text and "vl export" in text
    assert "NOT meaningful" in result.stderr  # the offline-models banner
    table = Table.open(out / "demo.lance")
    assert table.count() == 11
    kept = table.count("filter_keep = true")
    assert 0 < kept < 10  # the generated near-duplicates are filtered out
    assert table.count("crop_status = 'ok'") == kept  # no model time on rejected rows
    assert table.count("bin IS NOT NULL") == sum(int(kept * r) for r in (0.4, 0.4, 0.2))  # the seed's quotas
    assert table.count("bin_status = 'ok'") == kept and "bins (rank rule" in text
    selected = table.count("bin_selected = true")
    assert table.count("synth_status = 'ok'") == selected > 0  # the stub LLM answered every binned row
    assert table.count("validate_status = 'ok'") == selected  # every row with Q/A was validated
    assert "Q/A" in text and text.rstrip().endswith(f"review page: {(out / 'review.html').resolve()}")
    assert (out / "review.html").stat().st_size > 0


def printed_commands(output: str) -> list[list[str]]:
    """The commands listed under the demo's "try next:", as argv lists without the leading `vl`."""
    lines = output.split("try next:\n", 1)[1].splitlines()
    commands = []
    for line in lines:
        if not line.startswith("  vl "):
            break
        commands.append(shlex.split(line.strip())[1:])
    return commands


def test_printed_commands_run_as_printed_in_order(
    cli_run: tuple[Path, Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd, result = cli_run
    commands = printed_commands(result.output)
    assert [c[0] for c in commands] == ["status", "query", "query", "query", "export", "export"]
    monkeypatch.chdir(cwd)
    for argv in commands:
        ran = CliRunner().invoke(app, argv)
        assert ran.exit_code == 0, f"vl {shlex.join(argv)}: {ran.output}"
    assert (cwd / "cli-demo" / "demo-export" / "qa.jsonl").stat().st_size > 0
    # the command for your own images is printed apart, as something to adapt rather than run
    assert "vl run path/to/your/images" in result.output.split("try next:", 1)[1]


def test_cli_quiet_prints_only_status(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "q"), "--images", "6", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "5 rows" in result.output
    assert "wrote" not in result.output and "vl query" not in result.output


def test_cli_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    result = CliRunner().invoke(app, ["demo", str(tmp_path), "--images", "6"])
    assert result.exit_code != 0
    assert "--overwrite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
