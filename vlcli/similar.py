"""Nearest neighbours of an image by its stored embedding (exact search, or a Lance vector index)."""

from __future__ import annotations

import polars as pl

from vlcli.errors import UsageError, VlError
from vlcli.storage import Table

EMBEDDING = "embedding"


def _vector_of(table: Table, image_id: str) -> list[float]:
    if EMBEDDING not in table.schema.names:
        raise UsageError("the table has no embedding column yet: run `vl crop TABLE` first")
    safe = image_id.replace("'", "''")
    rows = table.to_arrow([EMBEDDING], f"id = '{safe}'").column(EMBEDDING).to_pylist()
    if not rows:
        raise UsageError(
            f'no row with id {image_id!r} (ids are in the `id` column: vl query TABLE "SELECT id ...")'
        )
    if rows[0] is None:
        raise VlError(f"row {image_id!r} has no embedding (its crop status is not ok)")
    return list(rows[0])


def similar(
    table: Table, image_id: str, k: int = 10, columns: tuple[str, ...] = ("id", "source")
) -> pl.DataFrame:
    """The `k` images most similar to `image_id` (itself excluded), with their cosine distance."""
    if k < 1:
        raise UsageError("-k must be at least 1")
    vector = _vector_of(table, image_id)
    safe = image_id.replace("'", "''")
    found = table.nearest(EMBEDDING, vector, k, columns, where=f"id != '{safe}' AND {EMBEDDING} IS NOT NULL")
    frame = pl.DataFrame(found)
    return frame.rename({"_distance": "distance"})


def build_index(table: Table) -> str:
    """Build a vector index on the embedding column (worth it from ~100k rows; exact search is used below)."""
    if EMBEDDING not in table.schema.names:
        raise UsageError("the table has no embedding column yet: run `vl crop TABLE` first")
    dim = table.schema.field(EMBEDDING).type.list_size
    return table.build_vector_index(EMBEDDING, dim)
