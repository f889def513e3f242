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
  subsets, sharing the sorts of common prefixes, so a key costs about one radix pass (a compiled
  counting scatter of the hashes, `banded.sort_by_bits`).
* Within a group, a compiled loop (`banded.run_pairs`) compares every pair by popcount; groups larger than
  `_INLINE_RUN` are compared in numpy row blocks of at most `_CHUNK` cells, so memory stays
  O(n + _CHUNK) whatever the data.
* `b` comes from a small cost model (sort passes, groups scanned, expected candidates on uniform hashes,
  or a blocked full scan for small inputs); `blocks=` overrides it (0: the full scan), for tests. For
  n = 1,000,000 and D = 7 it picks b = 10: 120 keys of 18-21 bits, 164 radix passes and ~1e8 candidate
  comparisons (about 2 s on one core, benchmarks/dedup.py); for 100M, b = 11 (330 keys, 494 passes).

* The walk over the keys is split into subtrees (by first block) run on `workers` threads (2 by default):
  the compiled loops and numpy release the GIL, and pairs reach the caller through a bounded queue.
* When only groups are wanted (`dedup`, `group_labels`), groups of more than _INLINE_RUN hashes under one key
  are connected component by component (`_connect_run`): pairs inside one component are never compared,
  so a cluster of near-identical hashes costs O(m) per key instead of O(m²).
* Incremental: `dedup(new=, previous=)` extends groups of already grouped rows with new ones, searching
  only new-vs-new pairs and new-vs-old ones (`_cross_pairs`: per key, each old hash is masked and looked up
  among the few new keys: O(n) scanning per key, no sort of the old hashes).

Time is O(P·n + C + output) where P is the number of radix passes (fixed by b and D) and C the number of
candidates: about keys·n²/2^(key bits) on hashes spread like random ones. Memory is
O(n + workers·(_CHUNK + _INLINE_RUN²)) for the search and for `dedup` / `group_labels` / `duplicate_groups` (which stream
pairs into a union-find); only the pair list itself, from `near_duplicate_pairs`, is as large as the answer.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import threading
import zlib
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from functools import lru_cache, partial
from typing import Any

import numpy as np

BITS = 64
_MASK = (1 << BITS) - 1
_CHUNK = 1 << 18  # cells per blocked comparison (xor matrix), pairs per union-find round: bounds memory
_BIG_RUN = 64  # numpy's offset scan compares groups larger than this in blocks
_INLINE_RUN = 1024  # the compiled scan leaves groups larger than this to blocks (or, for groups, components)
_SPARSE = 4  # compare by gathered positions once fewer than 1 in _SPARSE positions are left
_THREADED = 50_000  # fewer distinct hashes than this are searched on one thread (threads cost more)
_MAX_PASSES = 20_000  # b values needing more radix passes than this are not considered
# Cost model, in nanoseconds, measured on one x86 core at 20M hashes (only the ratios matter).
_NS_PASS = 8.0  # one compiled radix pass (count, then scatter the hashes), per hash
_NS_SCAN = 2.5  # finding one key's groups in its sorted order, per hash
_NS_CANDIDATE = 2.0  # one candidate comparison inside a group (compiled popcount)
_NS_PAIR = 3.0  # one comparison in the blocked full scan
_NS_PROBE = 12.0  # looking one old hash up among the new ones' keys (incremental runs)
_NS_CROSS = 8.0  # one candidate found by that lookup (a random read of the new hashes)

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
    candidates = pairs * _keys_shared(d, b)  # a pair is compared under every key it shares
    return _sort_passes(b, s) * n * _NS_PASS + keys * n * _NS_SCAN + candidates * _NS_CANDIDATE


def _keys_shared(d: int, b: int) -> float:
    """How many keys of the `b`-block search two random hashes share, on average."""
    s = b - d
    narrow, wide = BITS // b, BITS % b  # `wide` blocks are one bit wider than the others
    # Keys with j wide blocks are s * narrow + j bits: a random pair shares one with chance 2^-bits.
    return sum(
        math.comb(wide, j) * math.comb(b - wide, s - j) * math.pow(2.0, -(s * narrow + j))
        for j in range(s + 1)
    )


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
    limit = _BIG_RUN
    apart = step  # apart[p]: p and p + k are in one group (groups are contiguous)
    active: IntArray | None = None  # the positions of apart, once few are left
    for k in range(1, limit + 1):
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
        runs = np.unique(key[active])
        for lo, hi in zip(np.searchsorted(key, runs, "left"), np.searchsorted(key, runs, "right")):
            yield from _block_scan(hs, int(lo), int(hi), d, _BIG_RUN)


def _connect_run(
    hs: np.ndarray, index: IntArray, roots: IntArray, d: int
) -> Iterator[tuple[IntArray, IntArray]]:
    """Enough pairs within `d` among one group's distinct hashes `hs` (members `index`, current
    union-find roots `roots`) to connect them exactly as all their pairs would: pairs inside one
    component are skipped, so a cluster of near-identical hashes costs O(m) per key, not O(m^2).

    Why this is exact: P holds the members still to be scanned. A member leaves P only after being
    compared with every member of P (those in other components), and every pair found is merged. So every
    true pair either has both ends in P or has been merged. The loop ends when P is one component, at
    which point the pairs left inside P join nothing new. Hence the components equal those of the full
    pair graph, and only true pairs were merged.
    """
    m = len(hs)
    _, first, comp = np.unique(roots, return_index=True, return_inverse=True)
    local = _Forest(m)
    local.parent = first[comp].astype(np.int64)  # members of one component point at its first member
    todo = np.arange(m)
    while len(todo) > 1:
        r = local._roots(todo)
        labels, counts = np.unique(r, return_counts=True)
        others = todo[r != labels[np.argmax(counts)]]  # the largest component needs no inner pairs
        if not others.size:
            return
        rows = others[: max(1, _CHUNK // len(todo))]
        r_rows = local._roots(rows)
        near = np.bitwise_count(hs[rows, None] ^ hs[None, todo]) <= d
        near &= r_rows[:, None] != r[None, :]
        a, c = np.nonzero(near)
        _, first = np.unique(a * m + r[c], return_index=True)  # one pair per row and component is enough
        a, c = a[first], c[first]
        if a.size:
            local.union(np.stack([rows[a], todo[c]], axis=1))
            yield index[rows[a]], index[todo[c]]
        todo = todo[~np.isin(todo, rows)]


def _first_key(xor: np.ndarray, key: tuple[int, ...], masks: Sequence[np.uint64]) -> np.ndarray:
    """Whether `key` is the first s-subset of blocks these pairs agree on (so they are reported once)."""
    first = np.ones(len(xor), dtype=bool)
    for t in range(key[-1]):
        if t not in key:
            first &= (xor & masks[t]) != 0  # an earlier agreeing block would make an earlier key first
    return first


RootsOf = Callable[[IntArray], IntArray]


def _as_indices(u: np.ndarray, x: np.ndarray, y: np.ndarray) -> IntArray:
    """Pairs of hashes as (i < j) index pairs into the sorted distinct hashes `u`."""
    i, j = np.searchsorted(u, x), np.searchsorted(u, y)
    return np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1).astype(np.int64)


def default_workers() -> int:
    """Threads for the search: the usable cores, at most 2 (each thread holds a few sorted copies)."""
    return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


def _banded_pairs(
    u: np.ndarray, d: int, b: int, roots_of: RootsOf | None = None, workers: int | None = None
) -> Iterator[IntArray]:
    """Index pairs (i < j) into sorted distinct hashes `u` within distance `d`, via `b` blocks: each pair
    once; or, with `roots_of` (current union-find roots of indices), only enough pairs for the groups."""
    from vlcli.steps.filter.banded import run_pairs, sort_by_bits  # numba: compiled on first use

    bounds = _block_bounds(b)
    masks = [np.uint64(((1 << w) - 1) << lo) for lo, w in bounds]
    s = b - d

    def scan(ht: np.ndarray, key: tuple[int, ...]) -> Iterator[IntArray]:
        mask = np.uint64(0)
        for block in key:
            mask |= masks[block]
        earlier = np.array([masks[t] for t in range(key[-1]) if t not in key], dtype=np.uint64)
        for found, big in run_pairs(ht, mask, earlier, d, _INLINE_RUN, _CHUNK):
            if len(found):
                yield _as_indices(u, ht[found[:, 0]], ht[found[:, 1]])
            for lo, hi in big.tolist():
                if roots_of is None:  # every pair, each under its first key, in bounded blocks
                    for p, q in _block_scan(ht, lo, hi, d, 0):
                        x, y = ht[p], ht[q]
                        once = _first_key(x ^ y, key, masks)
                        if once.any():
                            yield _as_indices(u, x[once], y[once])
                else:  # only enough pairs to connect the groups
                    index = np.searchsorted(u, ht[lo:hi])
                    for i, j in _connect_run(ht[lo:hi], index, roots_of(index), d):
                        yield np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1).astype(np.int64)

    def walk(hs: np.ndarray, first: int, chosen: tuple[int, ...]) -> Iterator[IntArray]:
        if len(chosen) == s:
            yield from scan(hs, chosen)
            return
        for t in range(first, b - (s - len(chosen)) + 1):
            yield from walk(sort_by_bits(hs, *bounds[t]), t + 1, (*chosen, t))

    def subtree(prefix: tuple[int, ...]) -> Iterator[IntArray]:
        hs = u
        for t in prefix:
            hs = sort_by_bits(hs, *bounds[t])
        yield from walk(hs, prefix[-1] + 1, prefix)

    # The keys are independent: split the walk into subtrees by their first block (by their first two
    # when one subtree would be more than a thread's share), biggest first, and run them on threads
    # (numpy's sorts, gathers and ufuncs release the GIL).
    workers = workers or (default_workers() if len(u) >= _THREADED else 1)
    depth = 1 if s == 1 or math.comb(b - 1, s - 1) * workers <= math.comb(b, s) else 2
    prefixes = sorted(
        itertools.combinations(range(b - s + depth), depth),
        key=lambda c: -math.comb(b - 1 - c[-1], s - depth),
    )
    yield from _in_threads([partial(subtree, c) for c in prefixes], workers)


_DONE = object()


def _in_threads(tasks: Sequence[Callable[[], Iterator[IntArray]]], workers: int) -> Iterator[IntArray]:
    """The chunks every task yields, with the tasks run on `workers` threads (in order with one)."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield from task()
        return
    out: queue.Queue[object] = queue.Queue(maxsize=workers)  # bounded: pairs never pile up
    todo = iter(tasks)
    lock, stop = threading.Lock(), threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            while not stop.is_set():
                with lock:
                    task = next(todo, None)
                if task is None:
                    break
                for chunk in task():
                    if not put(chunk):
                        return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)
        finally:
            put(_DONE)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(min(workers, len(tasks)))]
    for thread in threads:
        thread.start()
    try:
        done = 0
        while done < len(threads):
            item = out.get()
            if item is _DONE:
                done += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item  # type: ignore[misc]
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _distinct_pairs(
    u: np.ndarray,
    d: int,
    blocks: int | None = None,
    roots_of: RootsOf | None = None,
    workers: int | None = None,
) -> Iterator[IntArray]:
    """Index pairs (i < j) into sorted distinct hashes `u` within distance `d` (>= 1), each once (with
    `roots_of`: enough of them to connect the same groups)."""
    if d < 1 or len(u) < 2:
        return
    b = choose_blocks(len(u), d + 1) if blocks is None else blocks
    if b == 0:
        for p, q in _block_scan(u, 0, len(u), d, 0):
            yield np.stack([p, q], axis=1)
        return
    if not d < b <= BITS:
        raise ValueError(f"blocks must be in [{d + 1}, {BITS}] for max_distance {d + 1}, got {b}")
    yield from _banded_pairs(u, d, b, roots_of, workers)


# --- pairs over rows -------------------------------------------------------------------------


def _cross(a_start: IntArray, a_size: IntArray, b_start: IntArray, b_size: IntArray) -> IntArray:
    """Every (x, y) with x in [a_start, a_start + a_size) and y in [b_start, b_start + b_size), per row."""
    count = a_size * b_size
    row = np.repeat(np.arange(len(count)), count)
    offset = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return np.stack([a_start[row] + offset // b_size[row], b_start[row] + offset % b_size[row]], axis=1)


def iter_near_duplicate_pairs(
    hashes: np.ndarray | Sequence[int],
    max_distance: int,
    *,
    blocks: int | None = None,
    workers: int | None = None,
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
    for chunk in _distinct_pairs(u, d, blocks, workers=workers):
        i, j = chunk[:, 0], chunk[:, 1]
        cross = _cross(start[i], size[i], start[j], size[j])
        yield _ordered(rows[cross[:, 0]], rows[cross[:, 1]])


def _ordered(a: IntArray, b: IntArray) -> IntArray:
    return np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1).astype(np.int64)


def near_duplicate_pairs(
    hashes: np.ndarray | Sequence[int],
    max_distance: int,
    *,
    blocks: int | None = None,
    workers: int | None = None,
) -> IntArray:
    """All row index pairs (i < j), sorted, whose hashes differ in fewer than `max_distance` bits."""
    chunks = list(iter_near_duplicate_pairs(hashes, max_distance, blocks=blocks, workers=workers))
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


def _scoped_labels(
    values: np.ndarray,
    valid: np.ndarray,
    scope: IntArray,
    max_distance: int,
    workers: int | None = None,
    blocks: int | None = None,
) -> IntArray:
    """A group label per row: rows are in one group when chained by near pairs inside one scope."""
    n = len(values)
    d = _max_bits(max_distance)
    rows = np.flatnonzero(valid)
    if d < 0 or not rows.size:
        return np.arange(n, dtype=np.int64) + n  # rows without a hash stay alone
    rows = rows[np.lexsort((values[rows], scope[rows]))]
    v, sc = values[rows], scope[rows]
    new = np.ones(len(rows), dtype=bool)
    new[1:] = (v[1:] != v[:-1]) | (sc[1:] != sc[:-1])
    # identical hashes in one scope share a distinct id (int32 while it fits: 100M rows save 400 MB)
    distinct = np.cumsum(new, dtype=np.int32 if len(rows) < 2**31 else np.int64) - 1
    u, u_scope = v[new], sc[new]
    del v, sc, new  # the search below holds the most memory: free what it does not need first
    forest = _Forest(len(u))
    for chunk in _batches(_scoped_pairs(u, u_scope, d, forest, workers, blocks)):
        forest.union(chunk)
    labels = np.arange(n, dtype=np.int64) + n
    labels[rows] = forest.labels()[distinct]
    return labels


def _scoped_pairs(
    u: np.ndarray, u_scope: IntArray, d: int, forest: _Forest, workers: int | None, blocks: int | None
) -> Iterator[IntArray]:
    """Pairs of distinct (scope, hash) entries, sorted by scope then hash, within `d` in one scope: enough
    of them to connect the groups that all such pairs would (the `forest` being built tells which)."""
    edge = np.flatnonzero(u_scope[1:] != u_scope[:-1]) + 1
    starts = np.concatenate([[0], edge])
    ends = np.concatenate([edge, [len(u)]])
    small = np.array(
        [(choose_blocks(int(n), d + 1) if blocks is None else blocks) == 0 for n in ends - starts]
    )
    # Scopes where a full scan is cheapest go together: all pairs within each, in one pass over them all.
    idx = np.concatenate([np.arange(a, b) for a, b in zip(starts[small], ends[small])] or [np.zeros(0, int)])
    for p, q in _run_pairs(u_scope[idx], u[idx], d):
        yield np.stack([idx[p], idx[q]], axis=1)
    for a, b in zip(starts[~small], ends[~small]):

        def roots_of(index: IntArray, a: int = int(a)) -> IntArray:
            return forest._roots(index + a)  # read while the consumer merges: roots only ever merge

        for chunk in _distinct_pairs(u[a:b], d, blocks, roots_of, workers):
            yield chunk + a


# --- new rows against already grouped ones ---------------------------------------------------


def _shared(d: int, b: int) -> float:
    """The chance that two random hashes agree on at least one key of the `b`-block search (bounded)."""
    return min(1.0, _keys_shared(d, b))


@lru_cache(maxsize=1024)
def _cross_blocks(n_old: int, n_new: int, d: int) -> int:
    """Blocks for matching `n_new` hashes against `n_old` others (0: compare every pair)."""
    options = [b for b in range(d + 1, BITS + 1) if math.comb(b, d) <= 2_000]
    # Per key: look up every old hash (one compiled hash-table probe), sort the new ones; the candidates.
    cost = {
        b: math.comb(b, d) * (n_old * _NS_PROBE + n_new * 60.0) + n_old * n_new * _shared(d, b) * _NS_CROSS
        for b in options
    }
    cost[0] = n_old * n_new * _NS_PAIR
    return min(cost, key=lambda b: cost[b])


def _cross_pairs(old: np.ndarray, new: np.ndarray, d: int, workers: int | None) -> Iterator[IntArray]:
    """Pairs (i, j), old[i] and new[j] within `d`, at least once each: costs O(len(old)) scanning per key
    plus the candidates, never a sort of `old` (which may be 100 million hashes)."""
    if not len(old) or not len(new):
        return
    b = _cross_blocks(len(old), len(new), d)
    if b == 0:
        rows = max(1, _CHUNK // len(new))
        for r0 in range(0, len(old), rows):
            i, j = np.nonzero(np.bitwise_count(old[r0 : r0 + rows, None] ^ new[None, :]) <= d)
            yield np.stack([i + r0, j], axis=1).astype(np.int64)
        return
    bounds = _block_bounds(b)

    from vlcli.steps.filter.banded import cross_pairs  # numba: compiled on first use

    def key_pairs(key: tuple[int, ...]) -> Iterator[IntArray]:
        mask = np.uint64(0)
        for t in key:
            mask |= np.uint64(((1 << bounds[t][1]) - 1) << bounds[t][0])
        yield from cross_pairs(old, new, mask, d, _CHUNK)

    keys = list(itertools.combinations(range(b), b - d))
    yield from _in_threads([partial(key_pairs, k) for k in keys], workers or default_workers())


def _merge_new(
    values: np.ndarray,
    valid: np.ndarray,
    scope: IntArray,
    new: np.ndarray,
    previous: IntArray,
    max_distance: int,
    workers: int | None,
) -> IntArray:
    """Group labels when only the `new` rows are ungrouped: the old rows' groups come from `previous`
    (each row's kept row), and only pairs with a new row are searched (new against all, new against new)."""
    n = len(values)
    fresh, old = valid & new, valid & ~new
    forest = _Forest(n)
    twins = np.flatnonzero(old & (previous != np.arange(n)))
    if twins.size:
        forest.union(np.stack([twins, previous[twins]], axis=1))
    d = _max_bits(max_distance)
    if d >= 0:
        for chunk in _batches(_new_pairs(values, fresh, old, scope, d, workers)):
            forest.union(chunk)
    labels: IntArray = forest.labels()
    labels[~valid] = np.flatnonzero(~valid) + n  # rows without a hash stay alone
    return labels


def _new_pairs(
    values: np.ndarray, fresh: np.ndarray, old: np.ndarray, scope: IntArray, d: int, workers: int | None
) -> Iterator[IntArray]:
    """Row pairs within `d` in one scope with at least one `fresh` row: enough to connect the groups."""
    for code in np.unique(scope[fresh]):
        f_rows = np.flatnonzero(fresh & (scope == code))
        o_rows = np.flatnonzero(old & (scope == code))
        un, f_first, f_inv = np.unique(values[f_rows], return_index=True, return_inverse=True)
        same = f_rows != f_rows[f_first[f_inv]]
        yield np.stack([f_rows[same], f_rows[f_first[f_inv]][same]], axis=1)  # identical new hashes
        rep_new = f_rows[f_first]
        for chunk in _distinct_pairs(un, d, workers=workers):
            yield rep_new[chunk]
        uo, o_first = np.unique(values[o_rows], return_index=True)
        rep_old = o_rows[o_first]  # identical old hashes already share a group
        for chunk in _cross_pairs(uo, un, d, workers):
            yield np.stack([rep_old[chunk[:, 0]], rep_new[chunk[:, 1]]], axis=1)


def group_labels(
    hashes: np.ndarray,
    max_distance: int,
    scope_keys: Sequence[Hashable] | IntArray | None = None,
    *,
    valid: np.ndarray | None = None,
    workers: int | None = None,
    blocks: int | None = None,
) -> IntArray:
    """A near-duplicate group label per row (rows chained by pairs within one scope share one; rows
    without a hash, by `valid`, stay alone): memory O(n) whatever the data, no pair list."""
    values = as_uint64(hashes)
    n = len(values)
    scope = scope_keys if isinstance(scope_keys, np.ndarray) else _codes(scope_keys, n)
    mask = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    return _scoped_labels(values, mask, scope, max_distance, workers, blocks)


def kept_rows(
    hashes: np.ndarray | Sequence[int | None],
    pixels: np.ndarray | Sequence[int],
    ids: Sequence[str],
    max_distance: int,
    scope_keys: Sequence[Hashable] | IntArray | None = None,
    *,
    valid: np.ndarray | None = None,
    new: np.ndarray | None = None,
    previous: IntArray | None = None,
    workers: int | None = None,
    blocks: int | None = None,
) -> IntArray:
    """For every row, the row kept in its near-duplicate group (itself when kept, alone or without a hash);
    with `scope_keys` (or int codes for them), only rows with equal keys can be duplicates. With `new` (a
    mask) and `previous` (every row's kept row from a run over the rows not new, under the same rules),
    only pairs involving new rows are searched: the same answer as a full run. Only the ids of rows in
    groups are read. `workers`: threads (default_workers()); `blocks` forces the index's block count
    (0: compare all pairs), for tests."""
    values, mask = _hash_column(hashes, valid)
    n = len(values)
    if len(ids) != n or len(pixels) != n:
        raise ValueError(f"hashes, pixels and ids must have the same length ({n}, {len(pixels)}, {len(ids)})")
    scope = scope_keys if isinstance(scope_keys, np.ndarray) else _codes(scope_keys, n)
    px = np.asarray(pixels)
    if new is None:
        labels = group_labels(values, max_distance, scope, valid=mask, workers=workers, blocks=blocks)
        return choose_kept(labels, px, ids)
    if previous is None or len(previous) != n or len(new) != n:
        raise ValueError(f"new= needs a mask and previous= a kept row for each of the {n} rows")
    fresh = np.asarray(new, dtype=bool)
    before = np.asarray(previous, dtype=np.int64)
    labels = _merge_new(values, mask, scope, fresh, before, max_distance, workers)
    out = np.where(fresh | ~mask, np.arange(n), before)
    # Only groups holding a new row can change: choose their kept member again over all members.
    rows = np.flatnonzero(np.isin(labels, labels[fresh & mask]))
    out[rows] = rows[choose_kept(labels[rows], px[rows], [ids[int(r)] for r in rows])]
    return out


def dedup(
    hashes: np.ndarray | Sequence[int | None],
    pixels: np.ndarray | Sequence[int],
    ids: Sequence[str],
    max_distance: int,
    scope_keys: Sequence[Hashable] | None = None,
    *,
    valid: np.ndarray | None = None,
    new: np.ndarray | None = None,
    previous: Sequence[str | None] | None = None,
    workers: int | None = None,
    blocks: int | None = None,
) -> list[str | None]:
    """For every row, the id of the row kept in its near-duplicate group, or None when the row is kept
    or has no duplicate (or no hash): `kept_rows` by id, with `previous` every row's dup_of then."""
    n = len(ids)
    before = None
    if new is not None:
        if previous is None or len(previous) != n or len(new) != n:
            raise ValueError(f"new= needs a mask and previous= a dup_of for each of the {n} rows")
        before = np.arange(n, dtype=np.int64)
        named = [i for i in range(n) if previous[i] is not None and not new[i]]
        row_of = {ids[i]: i for i in range(n)}
        missing = {str(previous[i]) for i in named} - row_of.keys()
        if missing:
            raise ValueError(f"previous names ids that are not among the rows: {sorted(missing)[:3]}")
        before[named] = [row_of[str(previous[i])] for i in named]
    kept = kept_rows(
        hashes,
        pixels,
        ids,
        max_distance,
        scope_keys,
        valid=valid,
        new=new,
        previous=before,
        workers=workers,
        blocks=blocks,
    )
    return [None if k == i else ids[k] for i, k in enumerate(kept.tolist())]


def fingerprint(hashes: np.ndarray, ids: Sequence[str] | np.ndarray) -> dict[str, Any]:
    """A short summary of which rows hold which hashes (order does not matter): equal summaries mean
    the same rows were grouped, so stored groups can be extended instead of recomputed. `ids` may be
    given as 64-bit codes standing for them (equal ids, equal codes)."""
    if isinstance(ids, np.ndarray):
        codes = ids.astype(np.uint64, copy=False)
    else:
        codes = np.fromiter((zlib.crc32(i.encode()) for i in ids), np.uint64, len(ids)) << np.uint64(32)
    h = as_uint64(hashes) ^ codes
    h ^= h >> np.uint64(30)  # splitmix64's finaliser: a sum of mixed values, not of the hashes themselves
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return {"rows": len(h), "sum": str(int(h.sum(dtype=np.uint64)))}
