"""Near-duplicate search: exactly the brute-force pairs, transitive groups, deterministic kept rows."""

from __future__ import annotations

import random
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vlcli.demo import samples
from vlcli.steps.filter.dedup import (
    as_uint64,
    choose_blocks,
    choose_kept,
    dedup,
    duplicate_groups,
    iter_near_duplicate_pairs,
    near_duplicate_pairs,
)
from vlcli.steps.filter.phash import phash_bytes, to_int64


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
    labels = brute_labels(brute_pairs(hashes, 8), n)
    for group in set(labels.tolist()):
        rows = [i for i in range(n) if labels[i] == group]
        kept = min(rows, key=lambda i: (-pixels[i], ids[i]))
        for i in rows:
            assert result[ids[i]] == (None if i == kept or len(rows) == 1 else ids[kept])


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
    assert peak < 80
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
