"""Compiled inner loops of the banded near-duplicate search (numba, compiled on first use and cached).

At 100 million hashes the search is ~500 radix passes and ~1e11 candidate comparisons. In numpy a
radix pass is an argsort of the digits (writing 8-byte indices) plus a gather, and a comparison costs
several passes over boolean arrays; here a pass is one counting scatter of the hashes themselves and a
comparison is one popcount, several times less memory traffic. Both release the GIL, so the walk's
threads run them in parallel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

_DIGIT = 11  # bits per radix pass: 2048 buckets keep the scatter's write streams in cache


def _compiled(func: Any) -> Any:
    """`func` compiled without the GIL, its machine code cached on disk when a cache folder is writable."""
    try:
        return njit(nogil=True, cache=True)(func)
    except RuntimeError:  # no writable cache folder (read-only install and home): compile on each run
        return njit(nogil=True)(func)


@intrinsic  # type: ignore[misc, untyped-decorator]
def _popcount(typingctx: Any, x: Any) -> Any:
    """The number of set bits of a uint64 (one popcnt instruction where the CPU has it)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@_compiled
def _radix_pass(src: np.ndarray, dst: np.ndarray, shift: int, width: int) -> None:  # pragma: no cover
    buckets = 1 << width
    mask = np.uint64(buckets - 1)
    sh = np.uint64(shift)
    start = np.zeros(buckets, np.int64)
    for v in src:
        start[(v >> sh) & mask] += 1
    total = 0
    for k in range(buckets):
        c = start[k]
        start[k] = total
        total += c
    for v in src:
        k = (v >> sh) & mask
        dst[start[k]] = v
        start[k] += 1


def sort_by_bits(hs: np.ndarray, low: int, width: int) -> np.ndarray:
    """`hs` (uint64) stably reordered by its bits [low, low + width), as a new array."""
    src, dst = hs, np.empty_like(hs)
    for lo in range(low, low + width, _DIGIT):
        _radix_pass(src, dst, lo, min(_DIGIT, low + width - lo))
        src, dst = dst, (np.empty_like(hs) if src is hs else src)
    return src


@_compiled
def _scan_runs(
    ht: np.ndarray,
    mask: np.uint64,
    earlier: np.ndarray,
    d: int,
    start: int,
    big_limit: int,
    out: np.ndarray,
    big: np.ndarray,
) -> tuple[int, int, int]:  # pragma: no cover
    n = len(ht)
    n_out = 0
    n_big = 0
    room = len(out) - big_limit * (big_limit - 1) // 2
    lim = np.uint64(d)
    lo = start
    while lo < n:
        if n_out > room or n_big == len(big):
            break
        key = ht[lo] & mask
        hi = lo + 1
        while hi < n and (ht[hi] & mask) == key:
            hi += 1
        if hi - lo > big_limit:
            big[n_big, 0] = lo
            big[n_big, 1] = hi
            n_big += 1
        else:
            for p in range(lo, hi - 1):
                x = ht[p]
                for q in range(p + 1, hi):
                    diff = x ^ ht[q]
                    if _popcount(diff) > lim:  # type: ignore[call-arg]
                        continue
                    first = True
                    for e in earlier:  # an earlier agreeing block would make an earlier key first
                        if (diff & e) == 0:
                            first = False
                            break
                    if first:
                        out[n_out, 0] = p
                        out[n_out, 1] = q
                        n_out += 1
        lo = hi
    return lo, n_out, n_big


def run_pairs(
    ht: np.ndarray, mask: np.uint64, earlier: np.ndarray, d: int, big_limit: int, chunk: int
) -> Any:
    """Chunks of (pairs, long runs) over `ht` sorted by `ht & mask`: pairs are (k, 2) positions within `d`
    in one run of equal `ht & mask` for which this key is the first agreeing one (no block of `earlier`
    agrees); runs longer than `big_limit` are left to the caller as (k, 2) start/end positions."""
    out = np.empty((chunk + big_limit * (big_limit - 1) // 2, 2), np.int64)  # room for one more run
    big = np.empty((4096, 2), np.int64)
    start = 0
    while start < len(ht):
        start, n_out, n_big = _scan_runs(ht, mask, earlier, d, start, big_limit, out, big)
        yield out[:n_out].copy(), big[:n_big].copy()


@_compiled
def _slot(key: np.uint64, bits: int) -> np.int64:  # pragma: no cover
    return np.int64((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))  # Fibonacci hashing


@_compiled
def _build_table(keys: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    slots = 1 << bits
    table_key = np.zeros(slots, np.uint64)
    table_run = np.full(slots, -1, np.int64)
    for r in range(len(keys)):
        s = _slot(keys[r], bits)
        while table_run[s] >= 0:
            s = (s + 1) & (slots - 1)
        table_key[s] = keys[r]
        table_run[s] = r
    return table_key, table_run


@_compiled
def _cross_scan(
    old: np.ndarray,
    mask: np.uint64,
    table_key: np.ndarray,
    table_run: np.ndarray,
    bits: int,
    first: np.ndarray,
    size: np.ndarray,
    new_sorted: np.ndarray,
    new_rows: np.ndarray,
    d: int,
    start: int,
    out: np.ndarray,
) -> tuple[int, int]:  # pragma: no cover
    slots = len(table_run)
    room = len(out) - int(size.max())
    lim = np.uint64(d)
    n_out = 0
    i = start
    while i < len(old) and n_out <= room:
        x = old[i]
        key = x & mask
        s = _slot(key, bits)
        while table_run[s] >= 0:
            if table_key[s] == key:
                r = table_run[s]
                for j in range(first[r], first[r] + size[r]):
                    if _popcount(x ^ new_sorted[j]) <= lim:  # type: ignore[call-arg]
                        out[n_out, 0] = i
                        out[n_out, 1] = new_rows[j]
                        n_out += 1
                break
            s = (s + 1) & (slots - 1)
        i += 1
    return i, n_out


def cross_pairs(old: np.ndarray, new: np.ndarray, mask: np.uint64, d: int, chunk: int) -> Any:
    """Chunks of (i, j) pairs, (old[i] & mask) == (new[j] & mask) and old[i], new[j] within `d`: one
    hash-table probe per old hash (no sort of `old`, which may be 100 million hashes)."""
    order = np.argsort(new & mask, kind="stable")
    new_sorted = new[order]
    keys, first, size = np.unique(new_sorted & mask, return_index=True, return_counts=True)
    bits = max(1, int(2 * len(keys) - 1).bit_length())  # at most half the slots used
    table_key, table_run = _build_table(keys, bits)
    out = np.empty((chunk + int(size.max()), 2), np.int64)
    start = 0
    while start < len(old):
        start, n_out = _cross_scan(
            old, mask, table_key, table_run, bits, first, size, new_sorted, order, d, start, out
        )
        if n_out:
            yield out[:n_out].copy()
