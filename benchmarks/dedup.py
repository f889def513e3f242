"""Near-duplicate search at scale: seconds and peak memory for 1M, 4M and 10M hashes (100M behind a flag),
1 thread against 2, a clustered input, exactness against brute force, ratio to DCVLR.

    python benchmarks/dedup.py                       # 1M, 4M, 10M; clustered 1M; subset checks
    python benchmarks/dedup.py --sizes 1000000 --n 100000000   # add 100M (about 10 GB, see below)
    python benchmarks/dedup.py --sizes 1000000,4000000 --clustered-n 1000000 --pairs-up-to 4000000

Random 64-bit hashes in which a share of the rows are near copies of other rows (0 to 10 bits flipped, so
some copies sit just past the threshold). Each size runs in its own process (so peak RSS is its own):
- `group_labels(hashes, 8)` (distance < 8, as DCVLR): the groups `vl filter` needs, on `--workers`
  threads and on 1 (the speedup), with peak RSS; `near_duplicate_pairs` (the pair count) up to
  `--pairs-up-to`.
- Clustered: the same with 1% of the rows inside one Hamming ball of radius 3 (all of them one group).
- Incremental: groups of N - k rows extended by k new ones (`kept_rows(new=, previous=)`, as `vl filter`) against a full run.
- On a subset of 20,000 (half of it both ends of planted copies): the same pairs as a brute-force
  comparison (numpy, in chunks), and the DCVLR loop (each hash compared with every kept hash, in plain
  Python) for the ratio. Target: >= 100x.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vlcli.steps.filter.dedup import (
    _estimated_ns,
    choose_blocks,
    dedup,
    group_labels,
    kept_rows,
    near_duplicate_pairs,
)

MAX_DISTANCE = 8
TARGET_SECONDS_100M = 1800.0  # on 2 cores
TARGET_PEAK_GB_100M = 16.0
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


def clustered(h: np.ndarray, share: float = 0.01, radius: int = 3, seed: int = 9) -> np.ndarray:
    """`h` with `share` of its rows moved inside one Hamming ball of `radius` bits."""
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(h))[: int(len(h) * share)]
    flips = np.zeros(len(rows), dtype=np.uint64)
    for _ in range(radius):
        flips ^= np.uint64(1) << rng.integers(0, 64, size=len(rows)).astype(np.uint64)
    out = h.copy()
    out[rows] = np.uint64(0x0123_4567_89AB_CDEF) ^ flips
    return out


def single(n: int, workers: int, cluster: bool, pairs: bool) -> dict[str, Any]:
    """One measurement in this process: groups (and pairs) of `n` planted hashes."""
    h, _, _ = planted_hashes(n)
    if cluster:
        h = clustered(h)
    start = time.perf_counter()
    labels = group_labels(h, MAX_DISTANCE, workers=workers)
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {"seconds": seconds, "duplicates": n - len(np.unique(labels))}
    if pairs:
        start = time.perf_counter()
        out["pairs"] = len(near_duplicate_pairs(h, MAX_DISTANCE, workers=workers))
        out["pairs_seconds"] = time.perf_counter() - start
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _child(n: int, workers: int, cluster: bool = False, pairs: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--single", str(n), "--workers", str(workers)]
    cmd += ["--clustered"] * cluster + ["--pairs"] * pairs
    result: dict[str, Any] = json.loads(
        subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    )
    return result


class _Ids(Sequence[str]):
    """Row ids made when read (only rows in groups are): 100M Python strings would cost ~7 GB."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return _Ids(len(range(*i.indices(self.n))))  # prefixes only: ids of the first rows
        return f"{i:09x}"


def incremental(n: int, ks: list[int], workers: int) -> None:
    """Groups of n - k rows extended by k new rows (`kept_rows`, as `vl filter` calls it), against
    recomputing all n."""
    h, _, _ = planted_hashes(n, seed=3)
    ids = _Ids(n)
    pixels = np.random.default_rng(1).integers(10_000, 4_000_000, size=n)
    start = time.perf_counter()
    full = kept_rows(h, pixels, ids, MAX_DISTANCE, workers=workers)
    t_full = time.perf_counter() - start
    for k in ks:
        before = np.concatenate(
            [
                kept_rows(h[: n - k], pixels[: n - k], ids[: n - k], MAX_DISTANCE, workers=workers),
                np.arange(n - k, n),
            ]
        )
        start = time.perf_counter()
        got = kept_rows(
            h, pixels, ids, MAX_DISTANCE, new=np.arange(n) >= n - k, previous=before, workers=workers
        )
        t_inc = time.perf_counter() - start
        print(
            f"incremental: {k:,} new rows on {n - k:,} grouped: {t_inc:.2f} s vs full recompute {t_full:.2f} s "
            f"({t_full / t_inc:.1f}x), same kept rows: {np.array_equal(got, full)}"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000000,4000000,10000000")
    p.add_argument("--n", type=int, action="append", default=[], help="another size, e.g. 100000000")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-single-thread", action="store_true", help="skip the 1-thread runs (no speedup)")
    p.add_argument("--pairs-up-to", type=int, default=10_000_000, help="count pairs for sizes up to this")
    p.add_argument("--clustered-n", type=int, default=1_000_000, help="0: skip the clustered case")
    p.add_argument("--incremental-n", type=int, default=1_000_000, help="0: skip the incremental case")
    p.add_argument("--incremental-k", default="1000,10000", help="new rows added, comma-separated")
    p.add_argument("--subset", type=int, default=20_000)
    p.add_argument("--dcvlr-repeat", type=int, default=1)
    p.add_argument("--single", type=int, help=argparse.SUPPRESS)
    p.add_argument("--clustered", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--pairs", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.single:
        print(json.dumps(single(args.single, args.workers, args.clustered, args.pairs)))
        return

    print(f"cpus: {os.cpu_count()}, load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"max_distance {MAX_DISTANCE} (distance < {MAX_DISTANCE}); each line its own process")
    print(
        f"\n{'hashes':>12s}{'blocks':>8s}{'1 thread s':>12s}{f'{args.workers} threads s':>14s}"
        f"{'speedup':>9s}{'peak MB':>9s}{'duplicates':>12s}{'pairs':>12s}"
    )
    sizes = [int(x) for x in args.sizes.split(",") if x] + args.n
    fit = []
    for n in sizes:
        many = _child(n, args.workers, pairs=n <= args.pairs_up_to)
        one = None if args.no_single_thread else _child(n, 1)
        fit.append((n, many["seconds"]))
        print(
            f"{n:12,d}{choose_blocks(n, MAX_DISTANCE):8d}"
            f"{one['seconds'] if one else float('nan'):12.1f}{many['seconds']:14.1f}"
            f"{one['seconds'] / many['seconds'] if one else float('nan'):9.2f}{many['peak_mb']:9.0f}"
            f"{many['duplicates']:12,d}{many.get('pairs', -1):12,d}"
        )
    # Time per unit of the cost model, from the largest size measured, carried to 100M.
    n_big, t_big = fit[-1]
    scale = t_big / _estimated_ns(n_big, MAX_DISTANCE - 1, choose_blocks(n_big, MAX_DISTANCE))
    t_100m = scale * _estimated_ns(10**8, MAX_DISTANCE - 1, choose_blocks(10**8, MAX_DISTANCE))
    print(
        f"100M by the cost model scaled to {n_big:,}: ~{t_100m:.0f} s on {args.workers} threads "
        f"(target <= {TARGET_SECONDS_100M:.0f} s on 2 cores, <= {TARGET_PEAK_GB_100M:.0f} GB)"
    )

    if args.clustered_n:
        plain = _child(args.clustered_n, args.workers)
        ball = _child(args.clustered_n, args.workers, cluster=True)
        print(
            f"clustered (1% in one radius-3 ball), {args.clustered_n:,}: {ball['seconds']:.1f} s, "
            f"{ball['peak_mb']:.0f} MB peak vs {plain['seconds']:.1f} s, {plain['peak_mb']:.0f} MB unclustered"
        )
    if args.incremental_n:
        incremental(args.incremental_n, [int(k) for k in args.incremental_k.split(",")], args.workers)

    h, rows, sources = planted_hashes(sizes[0])
    sub = h[subset_rows(sizes[0], args.subset, rows, sources)]
    fast, t_fast, times_fast = _median(lambda: near_duplicate_pairs(sub, MAX_DISTANCE), 3)
    brute, t_brute, times_brute = _median(lambda: brute_force_pairs(sub, MAX_DISTANCE), 3)
    as_ints = [int(v) for v in sub]
    kept, t_dcvlr, times_dcvlr = _median(lambda: dcvlr_loop(as_ints, MAX_DISTANCE), args.dcvlr_repeat)
    sub_dup = dedup(
        sub, np.ones(len(sub), dtype=np.int64), [f"{i:08x}" for i in range(len(sub))], MAX_DISTANCE
    )
    print(
        f"\nsubset of {len(sub):,} of the {sizes[0]:,} (half of it both ends of planted copies, random order)"
    )
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


if __name__ == "__main__":
    main()
