"""Near-duplicate search: seconds on 1,000,000 hashes, exactness against brute force, ratio to DCVLR.

    python benchmarks/dedup.py [--n 1000000] [--subset 20000] [--repeat 3] [--dcvlr-repeat 1]

Random 64-bit hashes in which a share of the rows are near copies of other rows (0 to 10 bits flipped, so
some copies sit just past the threshold). Measured in one run:
- `near_duplicate_pairs(hashes, 8)` (distance < 8, as DCVLR) on all N, and `dedup` end to end (groups and
  kept rows, with ids and pixel counts). Target: <= 10 s for 1,000,000 on 2 cores.
- On a subset of 20,000 (half of it both ends of planted copies): the same pairs as a brute-force
  comparison (numpy, in chunks), and the DCVLR loop (each hash compared with every kept hash, in plain
  Python) for the ratio. Target: >= 100x.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vlcli.steps.filter.dedup import choose_blocks, dedup, near_duplicate_pairs

MAX_DISTANCE = 8
TARGET_SECONDS = 10.0
TARGET_RATIO = 100.0
_COPY_SHARE = 0.1
_MAX_FLIPS = 10


def planted_hashes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` random hashes, `_COPY_SHARE` of the rows replaced by copies of others with 0-10 bits flipped;
    with the copied rows and their sources."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    m = int(n * _COPY_SHARE)
    rows, sources = rng.permutation(n)[:m], rng.integers(0, n, size=m)
    flips = np.zeros(m, dtype=np.uint64)
    count = rng.integers(0, _MAX_FLIPS + 1, size=m)
    for k in range(_MAX_FLIPS):  # bit positions may repeat within a row: then fewer bits flip
        bit = rng.integers(0, 64, size=m).astype(np.uint64)
        flips ^= np.where(k < count, np.uint64(1) << bit, np.uint64(0))
    h[rows] = h[sources] ^ flips
    return h, rows, sources


def subset_rows(n: int, size: int, rows: np.ndarray, sources: np.ndarray, seed: int = 2) -> np.ndarray:
    """`size` rows: both ends of random planted copies for half of it, random rows for the rest."""
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(rows))[: size // 4]
    chosen = np.unique(np.concatenate([rows[pick], sources[pick]]))
    rest = np.setdiff1d(rng.permutation(n)[: 2 * size], chosen)[: size - len(chosen)]
    return rng.permutation(np.concatenate([chosen, rest]))


def brute_force_pairs(h: np.ndarray, max_distance: int, rows_per_chunk: int = 512) -> np.ndarray:
    """Every pair compared, vectorised in row chunks: the reference."""
    out = []
    for r0 in range(0, len(h), rows_per_chunk):
        block = h[r0 : r0 + rows_per_chunk]
        i, j = np.nonzero(np.bitwise_count(block[:, None] ^ h[None, :]) < max_distance)
        i += r0
        keep = j > i
        out.append(np.stack([i[keep], j[keep]], axis=1))
    pairs = np.concatenate(out).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def dcvlr_loop(hashes: list[int], max_distance: int) -> list[int]:
    """DCVLR's stage: in order, drop a hash if it is within distance of ANY kept hash, else keep it."""
    kept: list[int] = []
    kept_rows = []
    for row, h in enumerate(hashes):
        if any((h ^ k).bit_count() < max_distance for k in kept):
            continue
        kept.append(h)
        kept_rows.append(row)
    return kept_rows


def _median(fn: Callable[[], Any], repeat: int) -> tuple[Any, float, list[float]]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times), times


def _fmt(times: list[float]) -> str:
    return "[" + ", ".join(f"{t:.3f}" for t in times) + "]"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--subset", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dcvlr-repeat", type=int, default=1)
    args = p.parse_args(argv)

    print(f"cpus: {os.cpu_count()}, load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    h, rows, sources = planted_hashes(args.n)
    distinct = len(np.unique(h))
    print(
        f"{args.n:,} hashes ({distinct:,} distinct), max_distance {MAX_DISTANCE} (distance < {MAX_DISTANCE})"
    )
    print(f"blocks chosen: {choose_blocks(distinct, MAX_DISTANCE)}")

    pairs, t_all, times_all = _median(lambda: near_duplicate_pairs(h, MAX_DISTANCE), args.repeat)
    ids = [f"{i:08x}" for i in range(args.n)]
    pixels = np.random.default_rng(1).integers(10_000, 4_000_000, size=args.n)
    dup_of, t_dedup, times_dedup = _median(lambda: dedup(h, pixels, ids, MAX_DISTANCE), args.repeat)
    dropped = sum(d is not None for d in dup_of)
    print(f"\n{'':48s}{'median s':>10s}  runs")
    print(
        f"{'near_duplicate_pairs, ' + f'{args.n:,}':48s}{t_all:10.3f}  {_fmt(times_all)}  -> {len(pairs):,} pairs"
    )
    print(
        f"{'dedup (groups + kept rows), ' + f'{args.n:,}':48s}{t_dedup:10.3f}  {_fmt(times_dedup)}  -> {dropped:,} duplicates"
    )
    ok = t_all <= TARGET_SECONDS
    print(f"target <= {TARGET_SECONDS:.0f} s for near_duplicate_pairs: {'met' if ok else 'MISSED'}")

    sub = h[subset_rows(args.n, args.subset, rows, sources)]
    fast, t_fast, times_fast = _median(lambda: near_duplicate_pairs(sub, MAX_DISTANCE), args.repeat)
    brute, t_brute, times_brute = _median(lambda: brute_force_pairs(sub, MAX_DISTANCE), args.repeat)
    as_ints = [int(v) for v in sub]
    kept, t_dcvlr, times_dcvlr = _median(lambda: dcvlr_loop(as_ints, MAX_DISTANCE), args.dcvlr_repeat)
    sub_dup = dedup(
        sub, np.ones(len(sub), dtype=np.int64), [f"{i:08x}" for i in range(len(sub))], MAX_DISTANCE
    )

    print(f"\nsubset of {len(sub):,} (half of it both ends of planted copies, in random order)")
    print(f"{'':48s}{'median s':>10s}{'vl faster':>11s}  runs")
    for name, t, times in [
        ("vl near_duplicate_pairs", t_fast, times_fast),
        ("brute force (numpy, chunks of 512 rows)", t_brute, times_brute),
        ("DCVLR loop (plain Python ints)", t_dcvlr, times_dcvlr),
    ]:
        print(f"{name:48s}{t:10.3f}{t / t_fast:10.1f}x  {_fmt(times)}")
    same = np.array_equal(fast, brute)
    print(f"pairs identical to brute force: {same} ({len(fast):,} vl, {len(brute):,} brute force)")
    ratio = t_dcvlr / t_fast
    print(
        f"ratio to DCVLR {ratio:.0f}x (target >= {TARGET_RATIO:.0f}x): {'met' if ratio >= TARGET_RATIO else 'MISSED'}"
    )
    print(
        f"rows kept: DCVLR {len(kept):,} (first seen wins, not transitive), "
        f"vl {sum(d is None for d in sub_dup):,} (transitive groups)"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
