"""Decontamination against evaluation sets: the crop-grid hashes of a reference table (a small resumable
step), the references a table is checked against (remembered in its metadata), and the exact cross-set
search that finds training rows matching a reference image by pHash or by embedding.

A 10% crop moves pHash by 6-20 bits, so each evaluation image is indexed by the hashes of a grid of its
own crops too (`crop_grid`): a training image that is a crop of it lands near one of them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from vlcli.errors import UsageError
from vlcli.images import decode, decode_budget
from vlcli.steps.base import Step
from vlcli.steps.filter.phash import BITS, DRAFT_MIN_SIDE, phash, to_int64
from vlcli.table.schema import EMBEDDING, HEIGHT, ID, IMAGE, REF_HASHES, WIDTH
from vlcli.table.storage import Table, table_exists

SCALES = (0.95, 0.9, 0.85, 0.8)  # the full image (1.0) is always the first hash
ANCHORS = ((0.5, 0.5), (0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0))  # centre, then the four corners
BANDS = 4  # pigeonhole: a pair within distance d has some 16-bit band within d // 4
BAND_BITS = BITS // BANDS
MAX_RADIUS = 3  # past this many bits per band the variants (2,517 at 4) cost more than a scan
CHUNK = 65536  # training hashes per block: bounds the candidate arrays
VARIANTS_HELD = 1 << 24  # reference band variants held at once (~200 MB); more take several passes
AGAINST_KEY = "filter.against"  # the main table's remembered references: [{"name", "path"}]
REFERENCE_KEY = "reference"  # a reference table's own record: {"name", "source"}


def crop_grid(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Boxes (left, top, right, bottom): the whole image, then each scale at the centre and four corners."""
    boxes = [(0, 0, width, height)]
    for scale in SCALES:
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        for ax, ay in ANCHORS:
            left, top = round((width - w) * ax), round((height - h) * ay)
            boxes.append((left, top, left + w, top + h))
    return boxes


def grid_hashes(img: Any) -> list[int]:
    """The int64 pHashes of `img` and of each box of its crop grid (21 hashes)."""
    return [to_int64(phash(img.crop(box))) for box in crop_grid(*img.size)]


class ReferenceStep(Step):
    """Per reference row: decode once (as `vl filter` does) and hash the crop grid into `ref_hashes`."""

    name = "reference"
    reads = (ID.name, IMAGE.name, WIDTH.name, HEIGHT.name)
    writes = (REF_HASHES,)

    def prepare(self, row: dict[str, Any]) -> Any:
        """Decode (JPEG draft mode, like the filter's pHash) and hash every box of the grid."""
        with decode_budget((row["width"] or 0, row["height"] or 0)):
            return grid_hashes(decode(row["image"], min_side=DRAFT_MIN_SIDE, reduce=False))

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        """The hashes, one list per row."""
        return [{REF_HASHES.name: hashes} for hashes in items]

    def provenance(self) -> dict[str, Any]:
        """The crop grid (a change needs --redo on the reference table, i.e. rebuilding it)."""
        return {"scales": list(SCALES), "anchors": [list(a) for a in ANCHORS]}


# --- which references a table is checked against -------------------------------------------------


def reference_name(path: str) -> str:
    """A reference table's name: as recorded when it was built, else its folder name."""
    recorded = Table.open(path).metadata().get(REFERENCE_KEY, {})
    return str(recorded.get("name") or os.path.basename(path.rstrip("/")).removesuffix(".lance"))


def remembered(table: Table) -> list[dict[str, str]]:
    """The references `table` is checked against: [{"name", "path"}], as stored in its metadata."""
    return list(table.metadata().get(AGAINST_KEY, []))


def remember(table: Table, paths: tuple[str, ...]) -> list[dict[str, str]]:
    """Add reference tables at `paths` to the remembered ones (deduplicated by path); returns them all."""
    refs = remembered(table)
    known = {r["path"] for r in refs}
    new = [p for p in dict.fromkeys(paths) if p not in known]
    for path in new:
        name = reference_name(path)
        if name in {r["name"] for r in refs}:  # two sets called `test`: contam_of names them apart
            name = os.path.basename(path.rstrip("/")).removesuffix(".lance")
        refs.append({"name": name, "path": path})
    if new:
        table.set_metadata(AGAINST_KEY, refs)
    return refs


def forget(table: Table) -> int:
    """Stop checking `table` against any reference; returns how many it was checked against."""
    refs = remembered(table)
    if refs:
        table.set_metadata(AGAINST_KEY, [])
    return len(refs)


# --- matching --------------------------------------------------------------------------------------


@lru_cache(maxsize=MAX_RADIUS + 1)
def _band_masks(radius: int) -> np.ndarray:
    values = np.arange(1 << BAND_BITS, dtype=np.uint64)
    return values[np.bitwise_count(values) <= radius]


def _as_uint64(hashes: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(hashes, dtype=np.int64).view(np.uint64))


def _keep_best(
    best: np.ndarray, rows: np.ndarray, dist: np.ndarray, refs: np.ndarray, limit: int, n: int
) -> None:
    close = dist < limit
    # one key orders by distance, then by reference position: the closest match, ties to the first
    np.minimum.at(best, rows[close], dist[close].astype(np.int64) * n + refs[close])


def cross_matches(train: Any, refs: Any, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """For each training hash (int64 or uint64), the index of its closest reference hash at Hamming
    distance < `max_distance` and that distance; -1 and -1 where none is. Exact, not O(n*m) for small
    distances: bands of 16 bits, each training band's variants looked up in the sorted reference bands."""
    t, r = _as_uint64(train), _as_uint64(refs)
    m = len(r)
    best = np.full(len(t), np.iinfo(np.int64).max, dtype=np.int64)
    if max_distance > 0 and len(t) and m:
        radius = (max_distance - 1) // BANDS
        if radius > MAX_RADIUS:
            _brute(t, r, max_distance, best)
        else:
            _banded(t, r, max_distance, radius, best)
    found = best != np.iinfo(np.int64).max
    index = np.where(found, best % max(m, 1), -1)
    distance = np.where(found, best // max(m, 1), -1)
    return index, distance


def _banded(t: np.ndarray, r: np.ndarray, limit: int, radius: int, best: np.ndarray) -> None:
    masks = _band_masks(radius).astype(np.int64)
    per_pass = max(1, VARIANTS_HELD // len(r))
    low = np.uint64((1 << BAND_BITS) - 1)
    for band in range(BANDS):
        shift = np.uint64(band * BAND_BITS)
        keys = ((r >> shift) & low).astype(np.int64)
        for first in range(0, len(masks), per_pass):
            # the reference side is small: spell out its band variants, so each training band is one
            # lookup in a direct-address table of the 2**16 values (a gather, not a binary search)
            variants = (keys[:, None] ^ masks[None, first : first + per_pass]).ravel()
            order = np.argsort(variants, kind="stable")
            owner = (order // min(per_pass, len(masks) - first)).astype(np.int64)
            counts = np.bincount(variants, minlength=1 << BAND_BITS)
            starts = np.cumsum(counts) - counts
            for start in range(0, len(t), CHUNK):
                block = t[start : start + CHUNK]
                tk = ((block >> shift) & low).astype(np.int64)
                lo, hits = starts[tk], counts[tk]
                total = int(hits.sum())
                if not total:
                    continue
                offsets = np.arange(total) - np.repeat(np.cumsum(hits) - hits, hits)
                ref_pos = owner[np.repeat(lo, hits) + offsets]
                rows = np.repeat(np.arange(start, start + len(block)), hits)
                dist = np.bitwise_count(t[rows] ^ r[ref_pos])
                _keep_best(best, rows, dist, ref_pos, limit, len(r))


def _brute(t: np.ndarray, r: np.ndarray, limit: int, best: np.ndarray) -> None:
    step = max(1, (1 << 22) // len(r))
    cols = np.arange(len(r))
    for start in range(0, len(t), step):
        block = t[start : start + step]
        dist = np.bitwise_count(block[:, None] ^ r[None, :])
        rows = np.repeat(np.arange(len(block)) + start, len(r))
        _keep_best(best, rows, dist.ravel(), np.tile(cols, len(block)), limit, len(r))


def embedding_matches(
    train: np.ndarray, refs: np.ndarray, threshold: float, block: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """For each training vector, the index of its most similar reference vector when the cosine is >=
    `threshold` (else -1), and that cosine (NaN where none). Rows are normalised here."""
    index = np.full(len(train), -1, dtype=np.int64)
    cosine = np.full(len(train), np.nan, dtype=np.float32)
    if not len(train) or not len(refs):
        return index, cosine
    t = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    r = refs / np.maximum(np.linalg.norm(refs, axis=1, keepdims=True), 1e-12)
    for start in range(0, len(t), block):
        sims = t[start : start + block] @ r.T
        j = sims.argmax(axis=1)
        s = sims[np.arange(len(j)), j]
        hit = s >= threshold
        index[start : start + block] = np.where(hit, j, -1)
        cosine[start : start + block] = np.where(hit, s, np.nan)
    return index, cosine


# --- the global part --------------------------------------------------------------------------------


@dataclass
class Matches:
    """Per candidate row: the matched reference image ("<name>:<id>", NULL for none) and the pHash
    distance (NULL for none or an embedding-only match), as Arrow arrays: no Python object per row."""

    of: pa.Array
    distance: pa.Array


@dataclass
class _References:
    hashes: np.ndarray  # every reference hash, flattened
    owner: list[str]  # "<name>:<id>" per hash
    vectors: np.ndarray | None  # reference embeddings (semantic matching), one per `vector_owner`
    vector_owner: list[str]


def _load(refs: list[dict[str, str]], semantic: bool) -> _References:
    hashes: list[int] = []
    owner: list[str] = []
    vectors: list[Any] = []
    vector_owner: list[str] = []
    for ref in refs:
        if not table_exists(ref["path"]):
            raise UsageError(
                f"reference table {ref['path']} is gone: pass its source again with --against, "
                "or stop checking with --forget-against"
            )
        table = Table.open(ref["path"])
        cols = [ID.name, REF_HASHES.name] + (
            [EMBEDDING.name] if semantic and EMBEDDING.name in table.schema.names else []
        )
        data = table.to_arrow(cols).to_pydict()
        for k, row_id in enumerate(data[ID.name]):
            label = f"{ref['name']}:{row_id}"
            row_hashes = data[REF_HASHES.name][k] or []
            hashes += row_hashes
            owner += [label] * len(row_hashes)
            if EMBEDDING.name in data and data[EMBEDDING.name][k] is not None:
                vectors.append(data[EMBEDDING.name][k])
                vector_owner.append(label)
    stacked = np.asarray(vectors, dtype=np.float32) if vectors else None
    return _References(np.asarray(hashes, dtype=np.int64), owner, stacked, vector_owner)


def find_matches(
    table: Table,
    refs: list[dict[str, str]],
    ids: Sequence[str],
    hashes: np.ndarray | Sequence[int],
    max_distance: int,
    semantic_threshold: float | None = None,
) -> Matches:
    """Which training rows (`ids`, their int64 `hashes`) match a reference image of `refs`: by pHash
    distance < `max_distance`, else (with a threshold) by embedding cosine >= it."""
    loaded = _load(refs, semantic_threshold is not None)
    index, distance = cross_matches(hashes, loaded.hashes, max_distance)
    if semantic_threshold is not None and loaded.vectors is not None:
        _match_embeddings(table, ids, index, loaded, semantic_threshold)
    owners = pa.array(loaded.owner + loaded.vector_owner, pa.string())
    return Matches(
        owners.take(pa.array(index, mask=index < 0)), pa.array(distance, pa.int32(), mask=distance < 0)
    )


def _match_embeddings(
    table: Table, ids: Sequence[str], index: np.ndarray, loaded: _References, threshold: float
) -> None:
    """Point `index` at the closest reference embedding (after the hashes: `loaded.vector_owner`) for
    rows no hash matched."""
    if EMBEDDING.name not in table.schema.names:
        raise UsageError("--semantic-threshold needs the embedding column: run `vl crop TABLE` first")
    wanted = {ids[int(k)]: int(k) for k in np.flatnonzero(index < 0)}
    rows, vectors = [], []
    for batch in table.scan([ID.name, EMBEDDING.name], "embedding IS NOT NULL"):
        for row_id, vector in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            if row_id in wanted:
                rows.append(wanted[row_id])
                vectors.append(vector)
    assert loaded.vectors is not None
    near, _ = embedding_matches(
        np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1), loaded.vectors, threshold
    )
    (found,) = np.nonzero(near >= 0)
    index[np.asarray(rows, dtype=np.int64)[found]] = len(loaded.owner) + near[found]
