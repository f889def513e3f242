"""Storage: metadata-only column adds, write-back that rewrites only its columns, appends, versions."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pytest

from vlcli.errors import QueryError, TableExistsError, TableNotFoundError
from vlcli.table.schema import ingest_schema
from vlcli.table.storage import Table


def test_open_missing_table_says_how_to_create(tmp_path) -> None:
    with pytest.raises(TableNotFoundError, match="vl ingest"):
        Table.open(tmp_path / "nope.lance")


def test_create_twice_refuses(tmp_path) -> None:
    Table.create(tmp_path / "t.lance", ingest_schema())
    with pytest.raises(TableExistsError):
        Table.create(tmp_path / "t.lance", ingest_schema())


def test_write_back_does_not_rewrite_images(make_table: Callable[..., Table]) -> None:
    table = make_table(200, size=(256, 256))
    ids = table.to_arrow(["id"]).column("id").to_pylist()
    table.ensure_columns([pa.field("x_score", pa.float32())])
    before = table.size_on_disk()
    table.write_back(pa.table({"id": ids[:20], "x_score": pa.array([0.5] * 20, pa.float32())}))
    written = table.size_on_disk() - before
    image_bytes = sum(table.to_arrow(["file_size"]).column("file_size").to_pylist())
    assert written < image_bytes / 20, (written, image_bytes)
    scores = table.to_arrow(["id", "x_score"])
    filled = {
        i
        for i, s in zip(scores.column("id").to_pylist(), scores.column("x_score").to_pylist(), strict=False)
        if s
    }
    assert filled == set(ids[:20])


def test_ensure_columns_is_idempotent_and_checks_types(make_table: Callable[..., Table]) -> None:
    table = make_table(3)
    assert table.ensure_columns([pa.field("y", pa.int64())]) == ["y"]
    assert table.ensure_columns([pa.field("y", pa.int64())]) == []
    assert table.count("y IS NULL") == 3
    with pytest.raises(Exception, match="y"):
        table.ensure_columns([pa.field("y", pa.string())])


def test_append_fills_later_columns_with_null(make_table: Callable[..., Table]) -> None:
    from conftest import jpeg_bytes, table_rows

    table = make_table(2)
    table.ensure_columns([pa.field("z", pa.string())])
    table.append(table_rows([jpeg_bytes(99)]))
    assert table.count() == 3 and table.count("z IS NULL") == 3


def test_bad_predicate_is_a_query_error(make_table: Callable[..., Table]) -> None:
    table = make_table(2)
    with pytest.raises(QueryError):
        table.count("no_such_column = 1")


def test_metadata_round_trip(make_table: Callable[..., Table]) -> None:
    table = make_table(1)
    table.set_metadata("provenance.x", {"model": "m", "n": 3})
    assert Table.open(table.path).metadata()["provenance.x"] == {"model": "m", "n": 3}


def test_concurrent_schema_changes_and_writes_are_retried(make_table: Callable[..., Table]) -> None:
    import threading

    table = make_table(40)
    ids = table.to_arrow(["id"]).column("id").to_pylist()
    errors: list[BaseException] = []

    def fill(k: int) -> None:
        try:
            handle = Table.open(table.path)
            name = f"c{k % 2}"  # two writers per column, on different rows
            handle.ensure_columns([pa.field(name, pa.int64())])
            mine = ids[k::4]
            handle.write_back(pa.table({"id": mine, name: pa.array([k] * len(mine), pa.int64())}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fill, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = Table.open(table.path)
    assert final.count("c0 IS NOT NULL") == 20 and final.count("c1 IS NOT NULL") == 20
