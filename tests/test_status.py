"""`table_status` and `vl status`: per-step counts, reasons, blocked rows, metadata; status columns only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from vlcli.cli import render as render_cli
from vlcli.cli.app import app
from vlcli.review.status import TableStatus, table_status
from vlcli.table.schema import ID, schema_of, status_column
from vlcli.table.storage import Table


@pytest.fixture
def stepped(make_table: Callable[..., Table]) -> Table:
    """20 good rows, one failed ingest, and a fake step `fake` half done with a mix of outcomes."""
    table = make_table(20)
    table.append(
        pa.table({"id": ["bad"], "source": ["mem://bad"], "ingest_status": ["error: not an image (x)"]})
    )
    table.ensure_columns([status_column("fake").field()])
    ids = sorted(table.to_arrow(["id"], "ingest_status = 'ok'")["id"].to_pylist())
    statuses = (
        ["ok"] * 5 + ["skipped: too small"] * 2 + ["error: cannot decode (a)", "error: cannot decode (b)"]
    )
    statuses.append("error: boom")
    table.write_back(pa.table({"id": ids[: len(statuses)], "fake_status": statuses}))
    table.set_metadata("provenance.fake", {"finished": "2030-01-01T00:00:00+00:00", "params": {"k": 1}})
    table.set_metadata("ingest.last", {"added": 21, "duplicates": 0})
    return table


def test_counts_per_step(stepped: Table) -> None:
    status = table_status(stepped)
    assert status.rows == 21
    ingest = status.step("ingest")
    assert (ingest.done, ingest.pending, ingest.blocked, ingest.errors) == (20, 0, 0, 1)
    assert ingest.reasons == [("error: not an image", 1)]
    fake = status.step("fake")
    assert (fake.done, fake.pending, fake.blocked, fake.skipped, fake.errors) == (5, 10, 1, 2, 3)
    assert fake.total == 21
    assert dict(fake.reasons) == {"error: cannot decode": 2, "skipped: too small": 2, "error: boom": 1}
    assert fake.reasons[0] in {("error: cannot decode", 2), ("skipped: too small", 2)}


def test_versions_tags_size_and_metadata(stepped: Table) -> None:
    stepped.tag("fake")
    status = table_status(stepped)
    assert status.versions >= 1 and status.version == stepped.version
    assert list(status.tags) == [f"fake-v{stepped.version}"]
    assert status.size_bytes > 20 * 500
    assert status.step("fake").provenance == {"finished": "2030-01-01T00:00:00+00:00", "params": {"k": 1}}
    assert status.step("ingest").provenance == status.last_ingest
    assert status.last_ingest == {"added": 21, "duplicates": 0}


def test_reads_no_image_bytes(make_table: Callable[..., Table]) -> None:
    table = make_table(40, size=(256, 256))
    image_bytes = sum(table.to_arrow(["file_size"])["file_size"].to_pylist())
    table.bytes_read()
    table_status(table)
    assert table.bytes_read() < image_bytes / 10


def test_json_is_serialisable(stepped: Table) -> None:
    data = json.loads(json.dumps(table_status(stepped).to_dict()))
    assert data["steps"][1]["reasons"]["error: cannot decode"] == 2
    assert isinstance(table_status(stepped), TableStatus)


def cli() -> typer.Typer:
    """The real `vl` application."""
    return app


def test_cli_renders_counts(stepped: Table) -> None:
    result = CliRunner().invoke(cli(), ["status", stepped.path])
    assert result.exit_code == 0, result.output
    assert "21 rows" in result.output
    assert "error: cannot decode" in result.output and "blocked" in result.output
    fake_rows = [line.split() for line in result.output.splitlines() if line.split()[:1] == ["fake"]]
    assert fake_rows[0][1:6] == ["5", "10", "1", "2", "3"]  # done pending blocked skipped errors


def test_cli_json(stepped: Table) -> None:
    result = CliRunner().invoke(cli(), ["status", stepped.path, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rows"] == 21
    assert {s["step"]: s["pending"] for s in data["steps"]} == {"ingest": 0, "fake": 10}


def test_cli_missing_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli(), ["status", str(tmp_path / "nope.lance")])
    assert result.exit_code == 1
    assert "no vl table at" in result.stderr and "vl ingest" in result.stderr


def test_human_bytes() -> None:
    assert [render_cli.human_bytes(n) for n in (12, 1536, 5 * 1024**3)] == ["12 B", "1.5 KB", "5.0 GB"]


# --- one definition of pending: the runner's own predicate ---------------------------------------

PIPELINE_FIELDS = list(
    schema_of(
        "filter_keep",
        "filter_reason",
        "filter_status",
        "crop_status",
        "bin",
        "bin_selected",
        "bin_status",
        "synth_status",
        "validate_status",
    )
)
# (filter_keep, crop, bin, bin_selected, synth, validate) per good row: every way a row can stand.
PIPELINE_ROWS = [
    (True, "ok", "A", True, "ok", "ok"),
    (True, "ok", "A", True, "ok", None),  # validate pending
    (True, "ok", "B", False, None, None),  # not selected: synth and validate blocked
    (True, "ok", "C", False, None, None),
    (True, "ok", "B", True, None, None),  # synth pending, validate blocked until synth ran
    (True, "ok", "A", True, "error: invalid reply", None),  # validate takes it (and skips it)
    (True, None, None, None, None, None),  # crop and bin pending
    (False, None, None, None, None, None),  # rejected: blocked everywhere after the filter
    (None, None, None, None, None, None),  # filter pending
]


def pipeline_table(make_table: Callable[..., Table]) -> Table:
    """A table at every stage of the pipeline, plus a failed ingest."""
    table = make_table(len(PIPELINE_ROWS))
    table.append(
        pa.table({"id": ["bad"], "source": ["mem://bad"], "ingest_status": ["error: not an image (x)"]})
    )
    table.ensure_columns(PIPELINE_FIELDS)
    ids = sorted(table.to_arrow(["id"], "ingest_status = 'ok'")["id"].to_pylist())
    names = ["filter_keep", "crop_status", "bin", "bin_selected", "synth_status", "validate_status"]
    values: dict[str, list[Any]] = {
        "id": ids,
        **{n: [r[i] for r in PIPELINE_ROWS] for i, n in enumerate(names)},
    }
    values["filter_status"] = [None if keep is None else "ok" for keep in values["filter_keep"]]
    values["filter_reason"] = ["duplicate" if keep is False else None for keep in values["filter_keep"]]
    values["bin_status"] = [None if b is None else "ok" for b in values["bin"]]
    schema = pa.schema([ID.field(), *PIPELINE_FIELDS])
    table.write_back(pa.Table.from_pydict(values, schema=schema))
    return table


def built_in_steps(all_rows: bool = False) -> list[Any]:
    """Every built-in step as `vl run` builds it (no model is loaded before `setup`)."""
    from vlcli.steps.bin.step import BinStep
    from vlcli.steps.crop.step import CropSettings, CropStep
    from vlcli.steps.filter.step import FilterStep
    from vlcli.steps.synth.step import SynthSettings, SynthStep
    from vlcli.steps.validate.step import ValidateStep

    synth = SynthStep(SynthSettings(backend="stub", model="stub", all_rows=all_rows))
    return [FilterStep(), CropStep(CropSettings(keep_embedding=False)), BinStep(), synth, ValidateStep()]


@pytest.mark.parametrize("all_rows", [False, True])
def test_pending_is_what_each_step_would_process(make_table: Callable[..., Table], all_rows: bool) -> None:
    table = pipeline_table(make_table)
    if all_rows:  # `vl synth --all` ran last: synth takes every kept row, selected or not
        table.set_metadata("provenance.synth", {"params": {"all_rows": True}})
    status = table_status(table)
    names = table.schema.names
    for step in built_in_steps(all_rows):
        counts = status.step(step.name)
        would_process = table.count(step.pending_filter(False, names))
        assert counts.pending == would_process, step.name
        assert counts.blocked == table.count(f"{step.status} IS NULL") - would_process, step.name
    validate = status.step("validate")
    # done 1, pending: the unvalidated row with Q/A and the one whose synth failed; never the rows synth
    # will not take (unselected) or has not done yet
    assert (validate.done, validate.pending, validate.blocked) == (1, 2, 7)
    synth = status.step("synth")
    assert (synth.pending, synth.blocked) == ((5, 2) if all_rows else (1, 6))


def test_header_counts_table_versions_not_images(stepped: Table) -> None:
    result = CliRunner().invoke(cli(), ["status", stepped.path])
    status = table_status(stepped)
    header = result.output.splitlines()[0]
    assert f"version {status.version} ({status.versions} table versions kept)" in header, header


# --- what a step says when it has nothing to do ----------------------------------------------------


def test_retry_errors_with_nothing_to_retry_says_so(make_table: Callable[..., Table]) -> None:
    table = make_table(3)
    synth = ["synth", table.path, "--all", "--backend", "stub", "--model", "stub", "-q"]
    runs = {
        "synth": synth,
        "validate": ["validate", table.path, "-q"],
    }
    for step, args in runs.items():
        first = CliRunner().invoke(cli(), args)
        assert first.exit_code == 0 and f"{step} done:" in first.output, first.output
        again = CliRunner().invoke(cli(), [*args, "--retry-errors"])
        assert again.exit_code == 0, again.output
        assert "nothing pending and no errors to retry" in again.output, again.output
        assert "use --retry-errors" not in again.output
        plain = CliRunner().invoke(cli(), args)
        assert "nothing pending (use --retry-errors to redo rows that failed)" in plain.output
