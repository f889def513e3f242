"""Semantic near-duplicates: pairs of images whose stored embeddings have cosine similarity >= t."""

from __future__ import annotations

from typing import Any

import numpy as np

from vlcli.steps.filter.dedup import choose_kept, duplicate_groups
from vlcli.table.storage import Table

EXACT_LIMIT = 50_000  # up to here a blockwise exact search is quick; above, a vector index is used
NEIGHBOURS = 16


def exact_pairs(vectors: np.ndarray, threshold: float, block: int = 2048) -> np.ndarray:
    """Index pairs (i < j) with cosine similarity >= threshold; `vectors` are L2-normalised rows."""
    found: list[np.ndarray] = []
    for start in range(0, len(vectors), block):
        sims = vectors[start : start + block] @ vectors.T
        rows, cols = np.nonzero(sims >= threshold)
        rows = rows + start
        upper = cols > rows
        found.append(np.stack([rows[upper], cols[upper]], axis=1))
    return np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)


def indexed_pairs(table: Table, ids: list[str], vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Pairs found through a Lance IVF-PQ index: each row's nearest neighbours, kept when close enough."""
    if not table.vector_indices("embedding"):
        table.build_vector_index("embedding", vectors.shape[1])
    position = {row_id: i for i, row_id in enumerate(ids)}
    pairs = []
    for i, vector in enumerate(vectors):
        hits = table.nearest("embedding", vector, NEIGHBOURS, ["id"], where="embedding IS NOT NULL")
        for other, distance in zip(hits.column("id").to_pylist(), hits.column("_distance").to_pylist()):
            j = position.get(other)
            if j is not None and j != i and 1.0 - distance >= threshold:
                pairs.append((min(i, j), max(i, j)))
    return np.unique(np.array(pairs, dtype=np.int64).reshape(-1, 2), axis=0)


def semantic_twins(
    table: Table, data: dict[str, list[Any]], rows: list[int], threshold: float, per_dataset: bool
) -> list[str | None]:
    """For each of `rows`, the id of its kept semantic twin, or None (kept, unique, or no embedding)."""
    wanted = {data["id"][i] for i in rows}
    vectors_by_id: dict[str, Any] = {}
    for batch in table.scan(["id", "embedding"], "embedding IS NOT NULL"):
        for row_id, vector in zip(batch.column("id").to_pylist(), batch.column("embedding").to_pylist()):
            if row_id in wanted:
                vectors_by_id[row_id] = vector
    present = [i for i in rows if data["id"][i] in vectors_by_id]
    if len(present) < 2:
        return [None] * len(rows)
    ids = [data["id"][i] for i in present]
    vectors = np.asarray([vectors_by_id[row_id] for row_id in ids], dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    if len(present) <= EXACT_LIMIT:
        pairs = exact_pairs(vectors, threshold)
    else:
        pairs = indexed_pairs(table, ids, vectors, threshold)
    if per_dataset and len(pairs):
        scope = np.asarray([data["dataset"][i] or "" for i in present], dtype=object)
        pairs = pairs[scope[pairs[:, 0]] == scope[pairs[:, 1]]]
    pixels = np.asarray([data["width"][i] * data["height"][i] for i in present], dtype=np.int64)
    kept = choose_kept(duplicate_groups(pairs, len(present)), pixels, ids)
    twin_of = {ids[k]: (ids[int(kept[k])] if int(kept[k]) != k else None) for k in range(len(present))}
    return [twin_of.get(data["id"][i]) for i in rows]
