"""`vl optimize`: old versions go only when older than the window; --compact says what it would rewrite,
asks (or refuses without --yes), and the table reads the same after."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import jpeg_bytes, table_rows
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.errors import UsageError
from vlcli.table.optimize import optimize
from vlcli.table.schema import ingest_schema
from vlcli.table.storage import KEEP_VERSIONS, KEEP_VERSIONS_ENV, Table, keep_versions, parse_duration

runner = CliRunner()


def fragmented(path: Path, sizes: tuple[int, ...] = (10, 3, 3, 3)) -> Table:
    """A table with one fragment per size (one append each), rows all distinct."""
    table = Table.create(path, ingest_schema())
    start = 0
    for n in sizes:
        table.append(table_rows([jpeg_bytes(start + i) for i in range(n)]))
        start += n
    return table


def contents(table: Table) -> list[tuple[object, ...]]:
    table.refresh()
    rows = table.to_arrow(["id", "image", "width", "ingest_status"]).to_pylist()
    return sorted(tuple(r.values()) for r in rows)


def test_versions_are_cleaned_only_when_older_than_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = fragmented(tmp_path / "t.lance")
    kept = table.versions()
    assert kept == 5
    monkeypatch.delenv(KEEP_VERSIONS_ENV, raising=False)
    assert table.cleanup().versions == 0 and table.versions() == kept  # what every step's end does
    result = runner.invoke(app, ["optimize", str(table.path), "--older-than", "1h"])
    assert result.exit_code == 0, result.output
    assert "0 versions older than 1h removed" in result.output and table.versions() == kept
    monkeypatch.setenv(KEEP_VERSIONS_ENV, "0s")  # the window itself is configurable
    result = runner.invoke(app, ["optimize", str(table.path)])
    assert result.exit_code == 0, result.output
    assert "4 versions older than 0s removed" in result.output
    assert Table.open(table.path).versions() == 1
    assert Table.open(table.path).count() == 19


def test_the_retention_window_and_durations() -> None:
    assert KEEP_VERSIONS.days >= 1  # long enough for any run
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("2h").total_seconds() == 7200
    assert parse_duration("7d") == KEEP_VERSIONS
    for bad in ("", "7", "2 hours", "-1h"):
        with pytest.raises(UsageError):
            parse_duration(bad)


def test_a_bad_window_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEEP_VERSIONS_ENV, "soon")
    with pytest.raises(UsageError, match=KEEP_VERSIONS_ENV):
        keep_versions()
    table = fragmented(tmp_path / "t.lance", (2,))
    result = runner.invoke(app, ["optimize", table.path, "--older-than", "a while"])
    assert result.exit_code == 2 and "--older-than" in result.stderr


def test_compact_reports_the_bytes_and_refuses_without_yes_when_not_interactive(tmp_path: Path) -> None:
    table = fragmented(tmp_path / "t.lance")
    before, versions = contents(table), table.versions()
    result = runner.invoke(app, ["optimize", table.path, "--compact"])  # stdin is not a terminal
    assert result.exit_code == 2
    assert "would rewrite 3 fragments (9 rows, up to 10 a fragment)" in result.output
    assert "image bytes" in result.output
    assert "--yes" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert table.fragment_ids() == Table.open(table.path).fragment_ids()  # nothing written
    assert Table.open(table.path).versions() == versions and contents(table) == before


def test_compact_merges_small_fragments_and_the_table_reads_the_same(tmp_path: Path) -> None:
    table = fragmented(tmp_path / "t.lance")
    before = contents(table)
    plan = table.plan_compaction()
    images = sum(len(jpeg_bytes(i)) for i in range(10, 19))  # the three small fragments' images
    assert plan.fragments == 3 and plan.rows == 9
    assert images <= plan.image_bytes <= plan.bytes
    result = runner.invoke(app, ["optimize", table.path, "--compact", "--yes"])
    assert result.exit_code == 0, result.output
    assert "compacted: 2 fragments fewer" in result.output
    after = Table.open(table.path)
    assert len(after.fragment_ids()) == 2 and after.fragment_ids()[0] == 0  # the full fragment untouched
    assert contents(after) == before
    assert after.plan_compaction().fragments == 0


def test_a_declined_compaction_changes_nothing(tmp_path: Path) -> None:
    table = fragmented(tmp_path / "t.lance")
    versions = table.versions()
    report = optimize(table, compact=True, confirm=lambda plan: False)
    assert report.compaction is not None and report.compaction.fragments == 3
    assert not report.compacted and report.cleanup is None
    assert Table.open(table.path).versions() == versions
