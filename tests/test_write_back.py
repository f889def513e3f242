"""`Table.write_back`: rows keyed on `id`, only the named columns change, one commit up to WRITE_BACK_ROWS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from vlcli.errors import DuplicateIdsError, TableWriteError
from vlcli.table import storage
from vlcli.table.schema import ID, IMAGE
from vlcli.table.storage import Table

SCHEMA = pa.schema(
    [
        ID.field(),
        IMAGE.field(),
        pa.field("note", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("keep", pa.bool_()),
        pa.field("tags", pa.list_(pa.string())),
    ]
)


def _rows(start: int, n: int) -> pa.Table:
    return pa.table(
        {
            "id": [f"r{i:06d}" for i in range(start, start + n)],
            "image": [bytes([i % 256]) * (1 + i % 7) for i in range(start, start + n)],
            "note": [f"old{i}" for i in range(start, start + n)],
            "score": pa.array([i / 2 for i in range(start, start + n)], pa.float32()),
            "keep": [i % 3 == 0 for i in range(start, start + n)],
            "tags": [[f"t{i}"] for i in range(start, start + n)],
        },
        schema=SCHEMA,
    )


def _table(path: Path, fragments: int = 4, rows: int = 50) -> Table:
    """A table of `fragments` appended fragments, the first one's rows deleted in part."""
    table = Table.create(path, SCHEMA)
    for k in range(fragments):
        table.append(_rows(k * rows, rows))
    table.append(_rows(0, 5))  # duplicates of the first rows, removed again: deleted rows in two fragments
    table.remove_duplicate_ids()
    return table


def _by_id(table: Table) -> dict[str, dict[str, Any]]:
    rows = Table.open(table.path).to_arrow(SCHEMA.names).to_pylist()
    return {r["id"]: r for r in rows}


@pytest.fixture(params=["one commit", "7-row commits"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Write all rows in one commit, and in commits of 7 rows (rows cut at commit boundaries)."""
    if request.param != "one commit":
        monkeypatch.setattr(storage, "WRITE_BACK_ROWS", 7)
    return str(request.param)


def test_written_values_read_back_by_id_and_nothing_else_changes(tmp_path: Path, write_path: str) -> None:
    table = _table(tmp_path / "t.lance")
    before, version = _by_id(table), table.version
    written = [f"r{i:06d}" for i in range(199, 0, -3)]  # every fragment, out of stored order
    notes = [None if k % 4 == 0 else f"new é {k}" for k in range(len(written))]
    scores = pa.array([None if k % 5 == 0 else k * 1.5 for k in range(len(written))], pa.float64())

    tags = [None if k % 6 == 0 else ["a", f"b{k}"] for k in range(len(written))]

    table.write_back(pa.table({"id": written, "note": notes, "score": scores, "tags": tags}))

    after = _by_id(table)
    assert table.version == version + (1 if write_path == "one commit" else 10)  # 67 rows
    assert after.keys() == before.keys()
    new = zip(written, notes, scores.to_pylist(), tags, strict=True)
    changed = {i: {"note": n, "score": s, "tags": t} for i, n, s, t in new}
    for row_id, row in after.items():
        expected = {**before[row_id], **changed.get(row_id, {})}
        assert row == expected, row_id


def test_ids_the_table_lacks_are_ignored(tmp_path: Path, write_path: str) -> None:
    table = _table(tmp_path / "t.lance")
    before = _by_id(table)

    table.write_back(pa.table({"id": ["r000010", "missing", "r000120"], "note": ["a", "b", "c"]}))

    after = _by_id(table)
    assert after.keys() == before.keys()
    assert (after["r000010"]["note"], after["r000120"]["note"]) == ("a", "c")
    assert after["r000011"] == before["r000011"]


def test_many_rows_over_many_fragments_are_one_commit(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.lance", fragments=3, rows=30_000)
    version = table.version
    ids = table.to_arrow(["id"])["id"]

    table.write_back(pa.table({"id": ids, "keep": pa.array([True] * len(ids))}))

    assert table.version == version + 1
    assert table.count("keep") == len(ids) == 90_000
    assert table.count("note = 'old89999'") == 1


def test_a_write_that_fails_leaves_none_of_its_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _table(tmp_path / "t.lance", fragments=3, rows=30_000)
    version = table.version
    ids = table.to_arrow(["id"])["id"]
    merge = Table._merge

    def fail_on_the_last_row(self: Table, data: pa.Table) -> None:
        if data["id"][-1] == ids[-1]:
            raise TableWriteError("no space left for table (injected)")
        merge(self, data)

    monkeypatch.setattr(Table, "_merge", fail_on_the_last_row)
    with pytest.raises(TableWriteError):
        table.write_back(pa.table({"id": ids, "note": pa.array(["x"] * len(ids))}))

    reopened = Table.open(table.path)
    assert reopened.version == version
    assert reopened.count("note = 'x'") == 0


def test_an_id_stored_twice_is_written_to_both_rows_and_named_twice_says_to_run_repair(
    tmp_path: Path, write_path: str
) -> None:
    table = Table.create(tmp_path / "t.lance", SCHEMA)
    table.append(_rows(0, 10))
    table.append(_rows(0, 2))

    table.write_back(pa.table({"id": ["r000001", "r000005"], "note": ["a", "b"]}))
    assert table.count("note = 'a'") == 2 and table.count("note = 'b'") == 1

    with pytest.raises(DuplicateIdsError, match="vl repair"):
        table.write_back(pa.table({"id": ["r000001", "r000001"], "note": ["c", "d"]}))
