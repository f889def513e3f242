"""`query`: polars SQL over `images`, reading only the columns a query names."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner, Result

from vlcli.cli.app import app
from vlcli.errors import QueryError
from vlcli.table.query import printable, query
from vlcli.table.schema import ingest_schema
from vlcli.table.storage import Table

IMAGE_BYTES = 100_000


@pytest.fixture
def heavy(tmp_path: Path) -> Table:
    """40 rows whose 100 KB image payloads dominate the table."""
    n = 40
    table = Table.create(tmp_path / "heavy.lance", ingest_schema())
    table.append(
        pa.table(
            {
                "id": [f"r{i:02d}" for i in range(n)],
                "dataset": ["a" if i % 4 else "b" for i in range(n)],
                "image": [os.urandom(IMAGE_BYTES) for _ in range(n)],
                "file_size": [IMAGE_BYTES] * n,
                "ingest_status": ["ok" if i % 10 else "error: broken" for i in range(n)],
            }
        )
    )
    return Table.open(table.path)


def test_group_by(make_table: Callable[..., Table]) -> None:
    table = make_table(12)
    df = query(table, "SELECT format, count(*) AS n, max(width) AS w FROM images GROUP BY format")
    assert df.to_dicts() == [{"format": "JPEG", "n": 12, "w": 64}]


def test_filter_order_and_limit(heavy: Table) -> None:
    df = query(heavy, "SELECT id FROM images WHERE ingest_status LIKE 'error:%' ORDER BY id")
    assert df["id"].to_list() == ["r00", "r10", "r20", "r30"]
    assert query(heavy, "SELECT id FROM images ORDER BY id", limit=3)["id"].to_list() == ["r00", "r01", "r02"]


def test_reads_only_named_columns(heavy: Table) -> None:
    total_image_bytes = 40 * IMAGE_BYTES
    heavy.bytes_read()
    df = query(
        heavy, "SELECT dataset, ingest_status, count(*) AS n FROM images GROUP BY dataset, ingest_status"
    )
    assert df["n"].sum() == 40
    assert heavy.bytes_read() < total_image_bytes / 100
    # the measurement itself works: selecting the image does read the bytes
    query(heavy, "SELECT id, image FROM images")
    assert heavy.bytes_read() >= total_image_bytes


def test_limit_and_where_reach_the_scan(heavy: Table) -> None:
    heavy.bytes_read()
    assert query(heavy, "SELECT * FROM images", limit=3).height == 3
    assert heavy.bytes_read() < 10 * IMAGE_BYTES
    assert query(heavy, "SELECT id, image FROM images WHERE id = 'r07'").height == 1
    assert heavy.bytes_read() < 5 * IMAGE_BYTES


def test_select_star_keeps_bytes_and_printable_hides_them(heavy: Table) -> None:
    df = query(heavy, "SELECT * FROM images WHERE id = 'r01'")
    assert len(df["image"][0]) == IMAGE_BYTES
    shown = printable(df)
    assert shown["image"][0] == f"<{IMAGE_BYTES} bytes>"
    assert shown["id"][0] == "r01"


def test_printable_nested_as_json() -> None:
    df = pl.DataFrame({"boxes": [[1, 2], None], "blob": [b"abc", None]})
    shown = printable(df, nested_as_json=True)
    assert shown.to_dicts() == [{"boxes": "[1, 2]", "blob": "<3 bytes>"}, {"boxes": None, "blob": None}]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT nope FROM images", 'unable to find column "nope"'),
        ("SELECT * FROM pictures", "the table is called 'images'"),
        ("SELEC id FROM images", "sql parser error"),
        ("SELECT id FROM images WHERE width > 'x'", "cannot compare"),
    ],
)
def test_bad_sql_is_a_query_error(heavy: Table, sql: str, message: str) -> None:
    with pytest.raises(QueryError, match="bad query") as info:
        query(heavy, sql)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def cli() -> typer.Typer:
    """The real `vl` application."""
    return app


def run(*args: str) -> Result:
    return CliRunner().invoke(cli(), ["query", *args])


def test_cli_table_hides_bytes_and_limits_rows(heavy: Table) -> None:
    result = run(heavy.path, "SELECT id, image FROM images ORDER BY id", "--limit", "3")
    assert result.exit_code == 0, result.output
    assert f"<{IMAGE_BYTES} bytes>" in result.output
    assert "r02" in result.output and "r03" not in result.output
    assert "first 3 rows shown" in result.output


def test_cli_csv_and_json(heavy: Table) -> None:
    sql = "SELECT dataset, count(*) AS n FROM images GROUP BY dataset ORDER BY dataset"
    result = run(heavy.path, sql, "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout == "dataset,n\na,30\nb,10\n"
    result = run(heavy.path, sql, "--format", "json")
    assert json.loads(result.stdout) == [{"dataset": "a", "n": 30}, {"dataset": "b", "n": 10}]
    result = run(heavy.path, "SELECT id, image FROM images WHERE id = 'r05'", "--format", "json")
    assert json.loads(result.stdout) == [{"id": "r05", "image": f"<{IMAGE_BYTES} bytes>"}]


def test_cli_errors(heavy: Table, tmp_path: Path) -> None:
    result = run(heavy.path, "SELECT nope FROM images")
    assert result.exit_code == 1
    assert 'bad query: unable to find column "nope"' in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # one message, no traceback
    result = run(str(tmp_path / "missing.lance"), "SELECT 1")
    assert result.exit_code == 1 and "no vl table" in result.stderr
    result = run(heavy.path, "SELECT id FROM images", "--format", "xml")
    assert result.exit_code == 2 and "--format" in result.output


def test_cli_select_star_leaves_bytes_out_and_fits_the_terminal(heavy: Table) -> None:
    narrow = {"COLUMNS": "80"}
    result = CliRunner().invoke(cli(), ["query", heavy.path, "SELECT * FROM images ORDER BY id"], env=narrow)
    assert result.exit_code == 0, result.output
    assert "bytes>" not in result.output  # the image column came with `*`: left out, and said so
    assert "not shown: image (image bytes; name the column to see its size)" in result.output
    assert "r00" in result.output
    named = CliRunner().invoke(cli(), ["query", heavy.path, "SELECT id, image FROM images"], env=narrow)
    assert f"<{IMAGE_BYTES} bytes>" in named.output and "not shown" not in named.output

    extra = ", ".join(f"id AS copy_{i:02d}" for i in range(30))
    sql = f"SELECT *, {extra} FROM images ORDER BY id"
    result = CliRunner().invoke(cli(), ["query", heavy.path, sql, "--limit", "2"], env=narrow)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = lines[0].split()
    assert all(name == "id" or len(name.rstrip("…")) >= 4 for name in header), header  # none squeezed to "…"
    assert "r00" in lines[1] and all(len(line) <= 80 for line in lines)
    note = next(line for line in lines if "did not fit in 80 characters" in line)
    total = len(query(heavy, sql, limit=1).columns) - 1  # less the image column
    assert int(note.split()[0]) == total - len(header)
