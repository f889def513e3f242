"""Every whole-table write-back (filter, validate, bin, --redo) commits in chunks of one shared size."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pytest

from vlcli.table import storage
from vlcli.table.storage import Table


def test_write_back_commits_once_per_chunk_of_write_back_rows(
    make_table: Callable[..., Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    table = make_table(10)
    table.ensure_columns([pa.field("note", pa.string())])
    ids = table.to_arrow(["id"]).column("id").to_pylist()
    monkeypatch.setattr(storage, "WRITE_BACK_ROWS", 4)
    before = table.version
    table.write_back(pa.table({"id": ids, "note": [f"n{i}" for i in range(10)]}))
    assert table.version - before == 3  # 4 + 4 + 2 rows
    notes = dict(zip(*table.to_arrow(["id", "note"]).to_pydict().values()))
    assert notes == {row_id: f"n{i}" for i, row_id in enumerate(ids)}
