"""Nearest neighbours of an image by its stored embedding (exact search, or a Lance vector index)."""

from __future__ import annotations

import polars as pl

from vlcli.errors import UsageError, VlError
from vlcli.table.storage import Table

EMBEDDING = "embedding"
LISTED_MATCHES = 5  # ids an ambiguous prefix error names


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _require_embeddings(table: Table) -> None:
    if EMBEDDING not in table.schema.names:
        raise UsageError("the table has no embedding column yet: run `vl crop TABLE` first")


def resolve_id(table: Table, image_id: str) -> str:
    """The full id that `image_id` names: the id itself, or the only id starting with it (a prefix such
    as the review page's 12 characters)."""
    if not image_id.strip():
        raise UsageError("give an image ID, or the first characters of one")
    if table.count(f"id = {_literal(image_id)}"):
        return image_id
    starts = f"starts_with(id, {_literal(image_id)})"
    matches = [i for b in table.scan(["id"], starts, limit=LISTED_MATCHES) for i in b.column(0).to_pylist()]
    if not matches:
        raise UsageError(
            f"no row with id {image_id!r} or an id starting with it "
            '(ids are in the `id` column: vl query TABLE "SELECT id ...")'
        )
    if len(matches) > 1:
        total = table.count(starts)
        shown = ", ".join(sorted(matches)) + (", ..." if total > len(matches) else "")
        raise UsageError(
            f"id prefix {image_id!r} matches {total:,} rows ({shown}): give more characters of the id"
        )
    return str(matches[0])


def _vector_of(table: Table, image_id: str) -> list[float]:
    rows = table.to_arrow([EMBEDDING], f"id = {_literal(image_id)}").column(EMBEDDING).to_pylist()
    if rows[0] is None:
        raise VlError(f"row {image_id!r} has no embedding (its crop status is not ok)")
    return list(rows[0])


def similar(
    table: Table, image_id: str, k: int = 10, columns: tuple[str, ...] = ("id", "source")
) -> pl.DataFrame:
    """The `k` images most similar to `image_id` (an id or a unique prefix of one; itself excluded), with
    their cosine distance."""
    if k < 1:
        raise UsageError("-k must be at least 1")
    _require_embeddings(table)
    image_id = resolve_id(table, image_id)
    vector = _vector_of(table, image_id)
    where = f"id != {_literal(image_id)} AND {EMBEDDING} IS NOT NULL"
    found = table.nearest(EMBEDDING, vector, k, columns, where=where)
    frame = pl.DataFrame(found)
    return frame.rename({"_distance": "distance"})


def build_index(table: Table) -> str:
    """Build a vector index on the embedding column (worth it from ~100k rows; exact search is used below)."""
    _require_embeddings(table)
    dim = table.schema.field(EMBEDDING).type.list_size
    return table.build_vector_index(EMBEDDING, dim)
