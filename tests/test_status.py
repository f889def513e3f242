"""`table_status` and `vl status`: per-step counts, reasons, blocked rows, metadata; status columns only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from vlcli.cli import status as status_cli
from vlcli.cli.app import app
from vlcli.schema import status_column
from vlcli.status import TableStatus, table_status
from vlcli.storage import Table


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
    assert [status_cli.human_bytes(n) for n in (12, 1536, 5 * 1024**3)] == ["12 B", "1.5 KB", "5.0 GB"]
