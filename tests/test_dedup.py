"""Near-duplicate search: exactly the brute-force pairs, transitive groups, deterministic kept rows."""

from __future__ import annotations

import random
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import table_rows
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from test_filter_rules import record_searches

from vlcli.demo import samples
from vlcli.steps.filter.dedup import (
    _cross_blocks,
    as_uint64,
    choose_blocks,
    choose_kept,
    dedup,
    duplicate_groups,
    fingerprint,
    iter_near_duplicate_pairs,
    near_duplicate_pairs,
)
from vlcli.steps.filter.phash import phash_bytes, to_int64
from vlcli.steps.filter.step import FilterRules, apply_rules
from vlcli.table.schema import FILTER_STATUS, NSFW_SCORE, PHASH, ingest_schema
from vlcli.table.storage import Table


def brute_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Every pair compared: the reference."""
    h = as_uint64(hashes)
    dist = np.bitwise_count(h[:, None] ^ h[None, :])
    i, j = np.nonzero(np.triu(dist < max_distance, k=1))
    return np.stack([i, j], axis=1).astype(np.int64)


def brute_labels(pairs: np.ndarray, n: int) -> np.ndarray:
    """Smallest index of each connected component, by repeated relaxation."""
    labels = np.arange(n)
    changed = True
    while changed:
        changed = False
        for i, j in pairs:
            low = min(labels[i], labels[j])
            if labels[i] != low or labels[j] != low:
                labels[i] = labels[j] = low
                changed = True
    return labels


def planted(seed: int, n: int, max_flips: int, clustered_bits: int = 64) -> np.ndarray:
    """Random hashes where about half the rows are copies of others with up to `max_flips` bits flipped;
    with `clustered_bits` < 64 all hashes share their high bits (huge groups under every key)."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    if clustered_bits < 64:
        h &= np.uint64((1 << clustered_bits) - 1)
    for row in rng.permutation(n)[: n // 2]:
        flips = rng.choice(
            clustered_bits, size=int(rng.integers(0, min(max_flips, clustered_bits) + 1)), replace=False
        )
        h[row] = h[rng.integers(n)] ^ np.uint64(sum(1 << int(b) for b in flips))
    return h


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 160),
    max_distance=st.integers(1, 16),
    extra_blocks=st.integers(0, 3),
    clustered=st.booleans(),
)
def test_pairs_equal_brute_force(
    seed: int, n: int, max_distance: int, extra_blocks: int, clustered: bool
) -> None:
    hashes = planted(seed, n, max_distance + 1, clustered_bits=12 if clustered else 64)
    expected = brute_pairs(hashes, max_distance)
    assert np.array_equal(near_duplicate_pairs(hashes, max_distance), expected)
    blocks = min(64, max_distance + extra_blocks)  # force the banded index even where a scan is cheaper
    assert np.array_equal(near_duplicate_pairs(hashes, max_distance, blocks=blocks), expected)


def test_pairs_equal_brute_force_where_banding_is_chosen() -> None:
    hashes = planted(0, 6000, 9)
    assert choose_blocks(len(np.unique(hashes)), 8) > 0
    assert np.array_equal(near_duplicate_pairs(hashes, 8), brute_pairs(hashes, 8))


def test_pairs_in_groups_longer_than_the_compiled_scan_takes() -> None:
    # 1500 hashes differing only in their low 12 bits share every key built from higher blocks: a group
    # beyond the compiled scan's limit, compared in numpy blocks; the other rows stay in the compiled scan.
    rng = np.random.default_rng(11)
    low = rng.choice(4096, size=1500, replace=False).astype(np.uint64)
    hashes = np.concatenate([np.uint64(0x5A5A_0000_0000_0000) | low, planted(11, 800, 9)])
    assert np.array_equal(near_duplicate_pairs(hashes, 8, blocks=10), brute_pairs(hashes, 8))


def test_pairs_int64_storage_and_edge_distances() -> None:
    h = np.array([0, 1, 3, 2**64 - 1, 2**64 - 1], dtype=np.uint64)
    stored = np.array([to_int64(int(v)) for v in h], dtype=np.int64)
    assert np.array_equal(near_duplicate_pairs(stored, 2), near_duplicate_pairs(h, 2))
    assert near_duplicate_pairs(h, 0).tolist() == []  # nothing is closer than 0
    assert near_duplicate_pairs(h, 1).tolist() == [[3, 4]]  # identical only
    assert len(near_duplicate_pairs(h, 65)) == 10  # every pair
    with pytest.raises(ValueError, match="max_distance"):
        near_duplicate_pairs(h, -1)


def test_chunks_report_each_pair_once() -> None:
    hashes = planted(3, 3000, 8)
    chunks = list(iter_near_duplicate_pairs(hashes, 8, blocks=10))
    pairs = np.concatenate(chunks)
    assert len(np.unique(pairs, axis=0)) == len(pairs) == len(brute_pairs(hashes, 8))


def test_groups_are_transitive() -> None:
    # 0-1 and 1-2 are within 2 bits; 0-2 are 4 bits apart; 3 is far away.
    h = np.array([0b0000, 0b0011, 0b1111, 2**64 - 1], dtype=np.uint64)
    pairs = near_duplicate_pairs(h, 3)
    assert pairs.tolist() == [[0, 1], [1, 2]]
    assert duplicate_groups(pairs, 4).tolist() == [0, 0, 0, 3]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 120))
def test_groups_equal_reference_and_accept_chunks(seed: int, n: int) -> None:
    pairs = brute_pairs(planted(seed, n, 10), 8)
    labels = duplicate_groups(pairs, n)
    assert labels.tolist() == brute_labels(pairs, n).tolist()
    chunks = [pairs[i : i + 3] for i in range(0, len(pairs), 3)]
    assert duplicate_groups(chunks, n).tolist() == labels.tolist()


def test_kept_is_most_pixels_then_smallest_id() -> None:
    labels = np.array([0, 0, 0, 3, 3, 5])
    pixels = [100, 400, 400, 50, 50, 10]
    ids = ["a", "c", "b", "z", "y", "q"]
    assert choose_kept(labels, pixels, ids).tolist() == [2, 2, 2, 4, 4, 5]


def _keyed(dup_of: list[str | None], ids: list[str]) -> dict[str, str | None]:
    return dict(zip(ids, dup_of))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 150))
def test_dedup_does_not_depend_on_row_order(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    hashes = planted(seed, n, 9)
    pixels = rng.choice([100, 200, 300], size=n)  # ties, so the id decides
    ids = [f"id{v:04d}" for v in rng.permutation(n)]
    result = _keyed(dedup(hashes, pixels, ids, 8), ids)
    perm = rng.permutation(n)
    shuffled = dedup(hashes[perm], pixels[perm], [ids[i] for i in perm], 8)
    assert _keyed(shuffled, [ids[i] for i in perm]) == result
    # Against the reference: each group keeps its most-pixel, smallest-id row.
    assert [result[i] for i in ids] == reference_dup_of(hashes, pixels, ids, 8)


def test_dedup_scope_keeps_datasets_apart() -> None:
    hashes = np.array([5, 5, 5, 7, 2**64 - 1], dtype=np.uint64)
    ids = ["a", "b", "c", "d", "e"]
    scope = ["x", "y", "x", "y", "x"]
    assert dedup(hashes, [1, 1, 1, 1, 1], ids, 8) == [None, "a", "a", "a", None]
    assert dedup(hashes, [1, 1, 1, 1, 1], ids, 8, scope_keys=scope) == [None, None, "a", "b", None]


def test_dedup_scope_large_and_small_scopes_equal_per_scope_runs() -> None:
    rng = np.random.default_rng(4)
    hashes = planted(4, 7000, 9)
    scope = rng.choice(["big", *[f"s{i}" for i in range(40)]], size=len(hashes), p=[0.6] + [0.01] * 40)
    ids = [f"r{i:05d}" for i in range(len(hashes))]
    pixels = rng.integers(1, 5, size=len(hashes))
    got = dedup(hashes, pixels, ids, 8, scope_keys=list(scope))
    for key in np.unique(scope):
        rows = np.flatnonzero(scope == key)
        alone = dedup(hashes[rows], pixels[rows], [ids[i] for i in rows], 8)
        assert [got[i] for i in rows] == alone


def test_rows_without_hash_are_never_duplicates() -> None:
    ids = ["a", "b", "c", "d"]
    assert dedup([9, None, 9, None], [1, 1, 1, 1], ids, 8) == [None, None, "a", None]
    valid = np.array([True, False, True, True])
    assert dedup(np.array([9, 9, 9, 2**63 - 1]), [1, 1, 1, 1], ids, 8, valid=valid) == [None, None, "a", None]


def test_dedup_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        dedup(np.array([1, 2], dtype=np.uint64), [1], ["a", "b"], 8)


def _peak_mib(fn: object) -> float:
    tracemalloc.start()
    try:
        fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_identical_hashes_cost_no_pairs() -> None:
    n = 50_000  # 1.25e9 pairs if they were listed
    hashes = np.full(n, 0x1234_5678_9ABC_DEF0, dtype=np.uint64)
    ids = [f"{i:06d}" for i in range(n)]
    pixels = np.ones(n, dtype=np.int64)
    pixels[777] = 2
    start = time.perf_counter()
    out: list[list[str | None]] = []
    peak = _peak_mib(lambda: out.append(dedup(hashes, pixels, ids, 8)))
    assert time.perf_counter() - start < 10
    assert peak < 64
    assert out[0][777] is None and out[0].count("000777") == n - 1


def test_dense_cluster_memory_is_bounded() -> None:
    # 3000 distinct hashes differing only in their low 12 bits: every key built from the high blocks puts
    # them all in one group; about 2 million pairs are within distance 8.
    rng = np.random.default_rng(5)
    hashes = np.uint64(0xABCD_0000_0000_0000) | rng.choice(4096, size=3000, replace=False).astype(np.uint64)
    ids = [f"{i:05d}" for i in range(len(hashes))]
    out: list[list[str | None]] = []
    peak = _peak_mib(lambda: out.append(dedup(hashes, np.ones(len(hashes)), ids, 8)))
    assert peak < 96  # O(n + workers * _CHUNK): each of the two threads holds one block of comparisons
    assert out[0] == [None] + ["00000"] * (len(hashes) - 1)  # one group; "00000" has the smallest id


def _variants(data: bytes) -> dict[str, bytes]:
    img = Image.open(samples.io.BytesIO(data)).convert("RGB")
    dx, dy = img.width // 100, img.height // 100
    return {
        "q50": samples.near_duplicate(data, "q50"),
        "small": samples.near_duplicate(data, "small"),
        "bright": samples.near_duplicate(data, "bright"),
        "crop 1%": samples.encode(img.crop((dx, dy, img.width - dx, img.height - dy)), "JPEG", 90),
    }


def test_generated_near_copies_are_found() -> None:
    hashes, origin = [], []
    for seed in range(12):
        data = samples.encode(
            samples.draw_scene(random.Random(seed), np.random.default_rng(seed), (480, 360)), "JPEG", 88
        )
        for blob in [data, *_variants(data).values()]:
            hashes.append(phash_bytes(blob))
            origin.append(seed)
    h = np.array(hashes, dtype=np.uint64)
    pairs = near_duplicate_pairs(h, 8)
    assert np.array_equal(pairs, brute_pairs(h, 8))
    labels = duplicate_groups(pairs, len(h))
    origin_arr = np.array(origin)
    for seed in range(12):  # every copy lands in its original's group, and only there
        assert len(set(labels[origin_arr == seed].tolist())) == 1
    assert len(set(labels.tolist())) == 12


def ball(rng: np.random.Generator, center: int, size: int, radius: int) -> np.ndarray:
    """`size` hashes within `radius` bits of `center` (repeats allowed)."""
    flips = np.zeros(size, dtype=np.uint64)
    for _ in range(radius):  # a bit drawn twice flips back: then fewer bits differ
        flips ^= np.uint64(1) << rng.integers(0, 64, size=size).astype(np.uint64)
    return np.uint64(center) ^ flips


def reference_dup_of(
    hashes: np.ndarray, pixels: np.ndarray, ids: list[str], max_distance: int
) -> list[str | None]:
    """Brute-force groups, each keeping its most-pixel, smallest-id row."""
    labels = brute_labels(brute_pairs(hashes, max_distance), len(hashes))
    out: list[str | None] = [None] * len(hashes)
    for group in set(labels.tolist()):
        rows = [i for i in range(len(hashes)) if labels[i] == group]
        kept = min(rows, key=lambda i: (-pixels[i], ids[i]))
        for i in rows:
            out[i] = None if i == kept else ids[kept]
    return out


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 120),
    radius=st.integers(1, 5),
    extra_blocks=st.integers(0, 4),
    workers=st.integers(1, 2),
)
def test_groups_equal_brute_force_on_clusters(
    seed: int, n: int, radius: int, extra_blocks: int, workers: int
) -> None:
    # Balls of near-identical hashes put hundreds of rows under one key: the search connects them through
    # components instead of listing every pair, and must still find exactly the brute-force groups.
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, 2**64, size=3, dtype=np.uint64)
    hashes = np.concatenate([ball(rng, int(c), n, radius) for c in centers] + [planted(seed, n, 9)])
    hashes = hashes[rng.permutation(len(hashes))]
    pixels = rng.integers(1, 4, size=len(hashes))
    ids = [f"r{i:04d}" for i in rng.permutation(len(hashes))]
    got = dedup(hashes, pixels, ids, 8, blocks=8 + extra_blocks, workers=workers)
    assert got == reference_dup_of(hashes, pixels, ids, 8)


def test_one_percent_in_a_hamming_ball_stays_bounded() -> None:
    # 1% of 40,000 rows within 3 bits of one hash: ~400^2/2 true pairs, all joining one group; memory
    # stays that of the search on random hashes (union-find fed on the fly, clusters by components).
    rng = np.random.default_rng(8)
    n = 40_000
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    inside = rng.permutation(n)[: n // 100]
    hashes[inside] = ball(rng, 0x0123_4567_89AB_CDEF, len(inside), 3)
    ids = [f"{i:06d}" for i in range(n)]
    out: list[list[str | None]] = []
    peak = _peak_mib(lambda: out.append(dedup(hashes, np.ones(n), ids, 8)))
    assert peak < 96
    kept = ids[int(inside.min())]  # equal pixels: the smallest id is kept
    assert all(out[0][i] == kept for i in inside if ids[i] != kept)
    assert out[0] == dedup(hashes, np.ones(n), ids, 8, blocks=0)  # the same as comparing every pair


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 150), k=st.integers(0, 60), scoped=st.booleans())
def test_adding_rows_equals_a_full_recompute(seed: int, n: int, k: int, scoped: bool) -> None:
    rng = np.random.default_rng(seed)
    hashes = planted(seed, n + k, 10)
    if n and k:  # new rows bridging two old rows (merging their groups) and copies of old rows
        for j in range(n, n + k, 3):
            a, b = hashes[rng.integers(n)], hashes[rng.integers(n)]
            mixed = (a & np.uint64(0xFFFF_FFFF_0000_0000)) | (b & np.uint64(0xFFFF_FFFF))
            hashes[j] = mixed
    pixels = rng.choice([100, 200, 300], size=n + k)
    ids = [f"id{v:04d}" for v in rng.permutation(n + k)]
    scope = list(rng.choice(["a", "b"], size=n + k)) if scoped else None
    old_scope = scope[:n] if scope else None
    before = dedup(hashes[:n], pixels[:n], ids[:n], 8, scope_keys=old_scope)
    new = np.arange(n + k) >= n
    order = rng.permutation(n + k)  # new rows need not come last
    got = dedup(
        hashes[order],
        pixels[order],
        [ids[i] for i in order],
        8,
        scope_keys=[scope[i] for i in order] if scope else None,
        new=new[order],
        previous=[(before + [None] * k)[i] for i in order],
        blocks=int(rng.choice([0, 9, 10])),
    )
    full = dedup(hashes, pixels, ids, 8, scope_keys=scope)
    assert got == [full[i] for i in order]


def test_few_new_rows_against_many_equal_a_full_recompute() -> None:
    # Enough old rows that new rows are looked up per key (the compiled probe), not compared with all.
    rng = np.random.default_rng(21)
    n, k = 20_000, 300
    hashes = planted(21, n + k, 10)
    for j in range(n, n + k, 2):  # near copies of old rows, some bridging two of them
        a, b = hashes[rng.integers(n)], hashes[rng.integers(n)]
        hashes[j] = (
            a ^ np.uint64(1 << int(rng.integers(64)))
            if j % 4
            else (a & ~np.uint64(0xFF)) | (b & np.uint64(0xFF))
        )
    assert _cross_blocks(n, k, 7) > 0
    pixels = rng.choice([100, 200, 300], size=n + k)
    ids = [f"id{v:05d}" for v in rng.permutation(n + k)]
    before = dedup(hashes[:n], pixels[:n], ids[:n], 8)
    got = dedup(hashes, pixels, ids, 8, new=np.arange(n + k) >= n, previous=before + [None] * k)
    assert got == dedup(hashes, pixels, ids, 8)
    assert sum(g is not None for g in got[n:]) > k // 4


def test_fingerprint_ignores_order_and_sees_changes() -> None:
    h = np.array([1, 2, 3], dtype=np.uint64)
    assert fingerprint(h, ["a", "b", "c"]) == fingerprint(h[::-1], ["c", "b", "a"])
    assert fingerprint(h, ["a", "b", "c"]) != fingerprint(h, ["b", "a", "c"])
    assert fingerprint(h, ["a", "b", "c"]) != fingerprint(h[:2], ["a", "b"])


def _noise_png(rng: np.random.Generator) -> bytes:
    buf = samples.io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(8 + int(rng.integers(4)), 8, 3), dtype=np.uint8)).save(
        buf, "PNG"
    )
    return buf.getvalue()


def _scored_table(path: Path, hashes: np.ndarray, seed: int, table: Table | None = None) -> Table:
    """Rows of tiny images with the given pHashes stored as if `vl filter` had scored them."""
    rng = np.random.default_rng(seed)
    rows = table_rows([_noise_png(rng) for _ in hashes])
    if table is None:
        table = Table.create(path, ingest_schema())
    table.append(rows)
    table.ensure_columns([PHASH.field(), NSFW_SCORE.field(), FILTER_STATUS.field()])
    stored = hashes.astype(np.uint64).view(np.int64)
    table.write_back(
        pa.table({"id": rows.column("id"), "phash": stored, "filter_status": ["ok"] * len(hashes)})
    )
    return table


def _decisions(table: Table) -> dict[str, tuple[object, ...]]:
    cols = ["id", "dup_of", "filter_keep", "filter_reason"]
    return {
        r["id"]: (r["dup_of"], r["filter_keep"], r["filter_reason"]) for r in table.to_arrow(cols).to_pylist()
    }


@pytest.mark.parametrize("scope", ["all", "dataset"])
def test_filter_after_an_ingest_searches_only_the_new_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scope: str
) -> None:
    rng = np.random.default_rng(11)
    old = planted(11, 80, 9)
    new = planted(12, 40, 9)
    for j in range(0, 40, 4):  # bridges between two old rows (merging their groups) and copies of old rows
        a, b = old[rng.integers(80)], old[rng.integers(80)]
        new[j] = (a & np.uint64(0xFFFF_FFFF_0000_0000)) | (b & np.uint64(0xFFFF_FFFF))
        new[j + 1] = old[rng.integers(80)] ^ np.uint64(1 << int(rng.integers(64)))
    rules = FilterRules(min_side=0, dedup_scope=scope)
    calls = record_searches(monkeypatch)
    table = _scored_table(tmp_path / "a.lance", old, seed=1)
    apply_rules(table, rules)
    _scored_table(tmp_path / "a.lance", new, seed=2, table=table)
    apply_rules(table, rules)
    apply_rules(table, rules)  # nothing new: nothing searched
    assert calls == [None, 40]

    fresh = _scored_table(tmp_path / "b.lance", old, seed=1)
    _scored_table(tmp_path / "b.lance", new, seed=2, table=fresh)
    apply_rules(fresh, rules)
    assert calls[-1] is None
    assert _decisions(table) == _decisions(fresh)
    assert sum(r[2] == "duplicate" for r in _decisions(fresh).values()) > 20

    apply_rules(table, FilterRules(min_side=0, dedup_scope=scope, phash_distance=5))  # other rules: all again
    assert calls[-1] is None


def test_search_runs_where_compiled_code_cannot_be_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    # A read-only install with a read-only home leaves numba no cache folder: compile, do not fail.
    import importlib.util

    import numba.core.caching

    monkeypatch.setattr(numba.core.caching.CacheImpl, "_locator_classes", [])
    spec = importlib.util.find_spec("vlcli.steps.filter.banded")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hashes = planted(4, 500, 9)
    assert np.array_equal(module.sort_by_bits(hashes, 0, 64), np.sort(hashes))
