"""Exact near-duplicate search over 64-bit hashes, transitive duplicate groups, the kept member.

Two hashes are near-duplicates when their Hamming distance is < `max_distance` (DCVLR: < 8). The search
gives exactly the pairs a brute-force comparison gives, without comparing every pair:

* Identical hashes are collapsed first, so many copies of one image cost nothing (their pairs are implied).
* The 64 bits are split into `b` contiguous blocks. A pair at distance <= D = max_distance - 1 differs in
  at most D blocks, so it agrees exactly on at least s = b - D of them (pigeonhole). For every s-subset
  of blocks ("key"), hashes are grouped by their bits in those blocks and only hashes in the same group
  are compared (popcount of the xor). Every pair within D is therefore a candidate under at least one
  key; a pair is reported only under the first key it agrees on, so it is reported once.
* Grouping is a least-significant-digit radix sort: one stable sort per block along the walk over the
  subsets, sharing the sorts of common prefixes, so a key costs about one 8-bit radix pass.
* Within a group, hashes are compared by offset (neighbours 1, 2, … apart in sorted order); groups larger
  than `_BIG_RUN` are compared in row blocks of at most `_CHUNK` cells, so memory stays O(n + _CHUNK)
  whatever the data.
* `b` comes from a small cost model (sort passes, groups scanned, expected candidates on uniform hashes,
  or a blocked full scan for small inputs); `blocks=` overrides it (0: the full scan), for tests. For
  n = 1,000,000 and D = 7 it picks b = 10: 120 keys of 18-21 bits, 164 radix passes and ~1e8 candidate
  comparisons (about 4 s on one busy core, benchmarks/dedup.py).

Time is O(P·n + C + output) where P is the number of radix passes (fixed by b and D) and C the number of
candidates: about keys·n²/2^(key bits) on hashes spread like random ones, but quadratic in the size of a
cluster of distinct hashes that agree on most bits. Memory is O(n + _CHUNK) for the search and for
`dedup` / `duplicate_groups` (which stream pairs into a union-find); only the pair list itself, from
`near_duplicate_pairs`, is as large as the answer.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator, Sequence
from functools import lru_cache

import numpy as np

BITS = 64
_MASK = (1 << BITS) - 1
_CHUNK = 1 << 18  # cells per blocked comparison (xor matrix), pairs per union-find round: bounds memory
_BIG_RUN = 64  # groups larger than this are compared in blocks instead of by offsets
_SPARSE = 4  # compare by gathered positions once fewer than 1 in _SPARSE positions are left
_MAX_PASSES = 20_000  # b values needing more radix passes than this are not considered
# Cost model, in nanoseconds, measured on one x86 core with numpy 2 (only the ratios matter).
_NS_PASS = 12.0  # one stable radix pass + gather, per hash
_NS_SCAN = 3.0  # masking and scanning one key's sorted order, per hash
_NS_CANDIDATE = 4.0  # one candidate comparison inside a group
_NS_PAIR = 3.0  # one comparison in the blocked full scan

IntArray = np.ndarray


# --- inputs ----------------------------------------------------------------------------------


def as_uint64(hashes: np.ndarray | Sequence[int]) -> np.ndarray:
    """Hashes as a uint64 array; int64 values (as stored) are read as their two's complement bits."""
    arr = np.asarray(hashes)
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype == np.int64:
        return arr.view(np.uint64)
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64).view(np.uint64)
    if arr.dtype == object:
        return np.fromiter((int(v) & _MASK for v in arr.ravel()), dtype=np.uint64, count=arr.size)
    raise TypeError(f"hashes must be integers, got dtype {arr.dtype}")


def _max_bits(max_distance: int) -> int:
    """The largest distance that counts as a duplicate (-1: none do)."""
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    return min(max_distance - 1, BITS)


# --- blocks and the cost model ---------------------------------------------------------------


def _block_bounds(b: int) -> list[tuple[int, int]]:
    """(low bit, width) of each of `b` contiguous blocks, block 0 holding the least significant bits."""
    widths = [BITS // b + (1 if t < BITS % b else 0) for t in range(b)]
    lows = [sum(widths[:t]) for t in range(b)]
    return list(zip(lows, widths))


def _passes(width: int) -> int:
    return -(-width // 16)  # radix passes of at most 16 bits


def _sort_passes(b: int, s: int) -> int:
    """Radix passes of the walk over all s-subsets of b blocks (shared prefixes sorted once)."""
    per_block = max(_passes(w) for _, w in _block_bounds(b))
    # Depth j visits the j-prefixes that can still be completed: j-subsets of the first b - s + j blocks.
    return per_block * sum(math.comb(b - s + j, j) for j in range(1, s + 1))


def _estimated_ns(n: int, d: int, b: int) -> float:
    """Predicted cost of the banded search with `b` blocks (0: blocked full scan)."""
    pairs = n * (n - 1) / 2
    if b == 0:
        return pairs * _NS_PAIR
    s = b - d
    keys = math.comb(b, s)
    narrow, wide = BITS // b, BITS % b  # `wide` blocks are one bit wider than the others
    # Keys with j wide blocks are s * narrow + j bits: a random pair shares one with chance 2^-bits.
    shared = sum(
        math.comb(wide, j) * math.comb(b - wide, s - j) * math.pow(2.0, -(s * narrow + j))
        for j in range(s + 1)
    )
    candidates = pairs * shared
    return _sort_passes(b, s) * n * _NS_PASS + keys * n * _NS_SCAN + candidates * _NS_CANDIDATE


@lru_cache(maxsize=1024)
def choose_blocks(n: int, max_distance: int) -> int:
    """The number of blocks the search would use for `n` distinct hashes (0: a blocked full scan)."""
    d = _max_bits(max_distance)
    if d < 1 or n < 2:
        return 0
    options = [b for b in range(d + 1, BITS + 1) if _sort_passes(b, b - d) <= _MAX_PASSES]
    return min([0, *options], key=lambda b: _estimated_ns(n, d, b))


# --- grouped comparisons ---------------------------------------------------------------------


def _close(a: np.ndarray, b: np.ndarray, d: int) -> np.ndarray:
    near: np.ndarray = np.bitwise_count(a ^ b) <= d
    return near


def _block_scan(
    hs: np.ndarray, start: int, end: int, d: int, min_gap: int
) -> Iterator[tuple[IntArray, IntArray]]:
    """Positions (p, q), start <= p < q < end, q - p > min_gap, with hashes within `d`, in row blocks."""
    width = end - start
    rows = max(1, _CHUNK // max(width, 1))
    for r0 in range(start, end, rows):
        r1 = min(r0 + rows, end)
        c0 = r0 + min_gap + 1
        if c0 >= end:
            break
        near = np.bitwise_count(hs[r0:r1, None] ^ hs[None, c0:end]) <= d
        p, q = np.nonzero(near)
        p += r0
        q += c0
        keep = q - p > min_gap
        if keep.any():
            yield p[keep].astype(np.int64), q[keep].astype(np.int64)


def _run_pairs(key: np.ndarray, hs: np.ndarray, d: int) -> Iterator[tuple[IntArray, IntArray]]:
    """Positions (p, q), p < q, with equal `key` (sorted ascending) and hashes within `d`."""
    n = len(key)
    if n < 2:
        return
    step = key[1:] == key[:-1]  # step[p]: p and p + 1 are in one group
    apart = step  # apart[p]: p and p + k are in one group (groups are contiguous)
    active: IntArray | None = None  # the positions of apart, once few are left
    for k in range(1, _BIG_RUN + 1):
        if active is None:
            # Many positions in play: whole-array slices beat gathering them one by one.
            p = np.flatnonzero(apart & (np.bitwise_count(hs[:-k] ^ hs[k:]) <= d))
            if p.size:
                yield p, p + k
            apart = apart[:-1] & step[k:]
            left = int(np.count_nonzero(apart))
            if left * _SPARSE < len(apart):
                active = np.flatnonzero(apart)
        else:
            close = _close(hs[active], hs[active + k], d)
            if close.any():
                yield active[close], active[close] + k
            active = active[active + k < n - 1]
            active = active[step[active + k]]
        if active is not None and not active.size:
            return
    if active is None:
        active = np.flatnonzero(apart)
    if active.size:
        # What is left lies in groups longer than _BIG_RUN: compare those in bounded blocks.
        big = np.unique(key[active])
        for lo, hi in zip(np.searchsorted(key, big, "left"), np.searchsorted(key, big, "right")):
            yield from _block_scan(hs, int(lo), int(hi), d, _BIG_RUN)


def _stable_sort_by_block(hs: np.ndarray, low: int, width: int) -> np.ndarray:
    """`hs` stably reordered by the bits [low, low + width), in 16-bit radix passes."""
    for lo in range(low, low + width, 16):
        w = min(16, low + width - lo)
        digit: np.ndarray = (hs >> np.uint64(lo)).astype(np.uint8 if w <= 8 else np.uint16)
        digit &= (1 << w) - 1  # 8 or 16-bit digits: numpy's stable sort is a radix sort there
        hs = hs[np.argsort(digit, kind="stable")]
    return hs


def _first_key(xor: np.ndarray, key: tuple[int, ...], masks: Sequence[np.uint64]) -> np.ndarray:
    """Whether `key` is the first s-subset of blocks these pairs agree on (so they are reported once)."""
    first = np.ones(len(xor), dtype=bool)
    for t in range(key[-1]):
        if t not in key:
            first &= (xor & masks[t]) != 0  # an earlier agreeing block would make an earlier key first
    return first


def _banded_pairs(u: np.ndarray, d: int, b: int) -> Iterator[IntArray]:
    """Index pairs (i < j) into sorted distinct hashes `u` within distance `d`, via `b` blocks."""
    bounds = _block_bounds(b)
    masks = [np.uint64(((1 << w) - 1) << lo) for lo, w in bounds]
    s = b - d

    def walk(hs: np.ndarray, first: int, chosen: tuple[int, ...]) -> Iterator[IntArray]:
        for t in range(first, b - (s - len(chosen)) + 1):
            ht = _stable_sort_by_block(hs, *bounds[t])
            key = (*chosen, t)
            if len(key) < s:
                yield from walk(ht, t + 1, key)
                continue
            mask = np.uint64(0)
            for block in key:
                mask |= masks[block]
            for p, q in _run_pairs(ht & mask, ht, d):
                x, y = ht[p], ht[q]
                once = _first_key(x ^ y, key, masks)
                if once.any():
                    i, j = np.searchsorted(u, x[once]), np.searchsorted(u, y[once])
                    yield np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1).astype(np.int64)

    yield from walk(u, 0, ())


def _distinct_pairs(u: np.ndarray, d: int, blocks: int | None = None) -> Iterator[IntArray]:
    """Index pairs (i < j) into sorted distinct hashes `u` within distance `d` (>= 1), each once."""
    if d < 1 or len(u) < 2:
        return
    b = choose_blocks(len(u), d + 1) if blocks is None else blocks
    if b == 0:
        for p, q in _block_scan(u, 0, len(u), d, 0):
            yield np.stack([p, q], axis=1)
        return
    if not d < b <= BITS:
        raise ValueError(f"blocks must be in [{d + 1}, {BITS}] for max_distance {d + 1}, got {b}")
    yield from _banded_pairs(u, d, b)


# --- pairs over rows -------------------------------------------------------------------------


def _cross(a_start: IntArray, a_size: IntArray, b_start: IntArray, b_size: IntArray) -> IntArray:
    """Every (x, y) with x in [a_start, a_start + a_size) and y in [b_start, b_start + b_size), per row."""
    count = a_size * b_size
    row = np.repeat(np.arange(len(count)), count)
    offset = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return np.stack([a_start[row] + offset // b_size[row], b_start[row] + offset % b_size[row]], axis=1)


def iter_near_duplicate_pairs(
    hashes: np.ndarray | Sequence[int], max_distance: int, *, blocks: int | None = None
) -> Iterator[IntArray]:
    """Chunks of row index pairs (i < j) whose hashes differ in fewer than `max_distance` bits, each once."""
    values = as_uint64(hashes)
    d = _max_bits(max_distance)
    if d < 0 or len(values) < 2:
        return
    u, group, size = np.unique(values, return_inverse=True, return_counts=True)
    rows = np.argsort(group, kind="stable")  # rows of each distinct hash, contiguous, ascending
    start = np.cumsum(size) - size
    for p, q in _run_pairs(group[rows], np.zeros(len(rows), dtype=np.uint64), 0):
        yield _ordered(rows[p], rows[q])  # identical hashes
    for chunk in _distinct_pairs(u, d, blocks):
        i, j = chunk[:, 0], chunk[:, 1]
        cross = _cross(start[i], size[i], start[j], size[j])
        yield _ordered(rows[cross[:, 0]], rows[cross[:, 1]])


def _ordered(a: IntArray, b: IntArray) -> IntArray:
    return np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1).astype(np.int64)


def near_duplicate_pairs(
    hashes: np.ndarray | Sequence[int], max_distance: int, *, blocks: int | None = None
) -> IntArray:
    """All row index pairs (i < j), sorted, whose hashes differ in fewer than `max_distance` bits."""
    chunks = list(iter_near_duplicate_pairs(hashes, max_distance, blocks=blocks))
    if not chunks:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(chunks)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


# --- groups ----------------------------------------------------------------------------------


class _Forest:
    """Union-find over 0..n-1 fed with chunks of edges; every root is the smallest index of its tree."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)

    def _roots(self, x: IntArray) -> IntArray:
        r: IntArray = self.parent[x]
        while True:
            up: IntArray = self.parent[r]
            if np.array_equal(up, r):
                return r
            r = up

    def union(self, pairs: IntArray) -> None:
        """Merge the trees joined by each (a, b) row of `pairs`."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        a, b = self._roots(pairs[:, 0]), self._roots(pairs[:, 1])
        apart = a != b
        if not apart.any():
            return
        a, b = a[apart], b[apart]
        nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        k = len(a)
        graph = coo_matrix((np.ones(k, dtype=np.int8), (inverse[:k], inverse[k:])), shape=(len(nodes),) * 2)
        _, component = connected_components(graph, directed=False)
        smallest = np.full(int(component.max()) + 1, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(smallest, component, nodes)
        self.parent[nodes] = smallest[component]

    def labels(self) -> IntArray:
        """The root of every element."""
        p = self.parent
        while True:
            up = p[p]
            if np.array_equal(up, p):
                return p
            p = up


def _batches(chunks: Iterable[IntArray], rows: int = _CHUNK) -> Iterator[IntArray]:
    """Chunks of pairs regrouped into arrays of about `rows` rows, so the union-find runs fewer rounds."""
    held: list[IntArray] = []
    count = 0
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.int64).reshape(-1, 2)
        held.append(chunk)
        count += len(chunk)
        if count >= rows:
            yield np.concatenate(held)
            held, count = [], 0
    if count:
        yield np.concatenate(held)


def duplicate_groups(pairs: IntArray | Iterable[IntArray], n: int) -> IntArray:
    """Connected components of rows 0..n-1 joined by `pairs` (an array or chunks of (k, 2) arrays):
    each row's label is the smallest row index in its group."""
    forest = _Forest(n)
    for chunk in _batches([pairs] if isinstance(pairs, np.ndarray) else pairs):
        forest.union(chunk)
    return forest.labels()


def choose_kept(labels: IntArray, pixels: np.ndarray | Sequence[int], ids: Sequence[str]) -> IntArray:
    """For every row, the row its group keeps: the most pixels, then the smallest id (never input order)."""
    labels = np.asarray(labels)
    kept = np.arange(len(labels), dtype=np.int64)
    if len(labels) == 0:
        return kept
    _, group, size = np.unique(labels, return_inverse=True, return_counts=True)
    rows = np.flatnonzero(size[group] > 1)
    if not rows.size:
        return kept
    px = np.asarray(pixels, dtype=np.int64)[rows]
    _, id_rank = np.unique(np.array([ids[int(r)] for r in rows], dtype=np.str_), return_inverse=True)
    order = rows[np.lexsort((id_rank, -px, group[rows]))]  # by group, most pixels, smallest id
    g = group[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    kept[order] = order[first][np.cumsum(first) - 1]
    return kept


# --- the whole step --------------------------------------------------------------------------


def _codes(keys: Sequence[Hashable] | None, n: int) -> IntArray:
    """Small ints standing for scope keys, in order of first appearance."""
    if keys is None:
        return np.zeros(n, dtype=np.int64)
    if len(keys) != n:
        raise ValueError(f"scope_keys has {len(keys)} values for {n} hashes")
    seen: dict[Hashable, int] = {}
    return np.fromiter((seen.setdefault(k, len(seen)) for k in keys), dtype=np.int64, count=n)


def _hash_column(
    hashes: np.ndarray | Sequence[int | None], valid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """uint64 values and a has-a-hash mask; None entries have no hash."""
    if isinstance(hashes, np.ndarray) and hashes.dtype != object:
        values = as_uint64(hashes)
        mask = np.ones(len(values), dtype=bool)
    else:
        mask = np.fromiter((h is not None for h in hashes), dtype=bool, count=len(hashes))
        values = np.fromiter(((h or 0) & _MASK for h in hashes), dtype=np.uint64, count=len(hashes))
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    return values, mask


def _scoped_labels(values: np.ndarray, valid: np.ndarray, scope: IntArray, max_distance: int) -> IntArray:
    """A group label per row: rows are in one group when chained by near pairs inside one scope."""
    n = len(values)
    d = _max_bits(max_distance)
    labels = np.arange(n, dtype=np.int64) + n  # rows without a hash stay alone
    rows = np.flatnonzero(valid)
    if d < 0 or not rows.size:
        return labels
    rows = rows[np.lexsort((values[rows], scope[rows]))]
    v, sc = values[rows], scope[rows]
    new = np.ones(len(rows), dtype=bool)
    new[1:] = (v[1:] != v[:-1]) | (sc[1:] != sc[:-1])
    distinct = np.cumsum(new) - 1  # identical hashes in one scope share a distinct id
    u, u_scope = v[new], sc[new]
    forest = _Forest(len(u))
    for chunk in _batches(_scoped_pairs(u, u_scope, d)):
        forest.union(chunk)
    labels[rows] = forest.labels()[distinct]
    return labels


def _scoped_pairs(u: np.ndarray, u_scope: IntArray, d: int) -> Iterator[IntArray]:
    """Pairs of distinct (scope, hash) entries, sorted by scope then hash, within `d` in one scope."""
    edge = np.flatnonzero(u_scope[1:] != u_scope[:-1]) + 1
    starts = np.concatenate([[0], edge])
    ends = np.concatenate([edge, [len(u)]])
    small = np.array([choose_blocks(int(n), d + 1) == 0 for n in ends - starts], dtype=bool)
    # Scopes where a full scan is cheapest go together: all pairs within each, in one pass over them all.
    idx = np.concatenate([np.arange(a, b) for a, b in zip(starts[small], ends[small])] or [np.zeros(0, int)])
    for p, q in _run_pairs(u_scope[idx], u[idx], d):
        yield np.stack([idx[p], idx[q]], axis=1)
    for a, b in zip(starts[~small], ends[~small]):
        for chunk in _distinct_pairs(u[a:b], d):
            yield chunk + a


def dedup(
    hashes: np.ndarray | Sequence[int | None],
    pixels: np.ndarray | Sequence[int],
    ids: Sequence[str],
    max_distance: int,
    scope_keys: Sequence[Hashable] | None = None,
    *,
    valid: np.ndarray | None = None,
) -> list[str | None]:
    """For every row, the id of the row kept in its near-duplicate group, or None when the row is kept
    or has no duplicate (or no hash); with `scope_keys`, only rows with equal keys can be duplicates."""
    values, mask = _hash_column(hashes, valid)
    n = len(values)
    if len(ids) != n or len(pixels) != n:
        raise ValueError(f"hashes, pixels and ids must have the same length ({n}, {len(pixels)}, {len(ids)})")
    labels = _scoped_labels(values, mask, _codes(scope_keys, n), max_distance)
    kept = choose_kept(labels, pixels, ids)
    twins = np.flatnonzero(kept != np.arange(n))
    out: list[str | None] = [None] * n
    for row in twins:
        out[row] = ids[kept[row]]
    return out
