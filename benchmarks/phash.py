"""pHash throughput and bits: `vlcli.steps.filter.phash.phash_bytes` (JPEG draft decoding) against `imagehash.phash`.

    python benchmarks/phash.py [--n 1000] [--repeat 3]

On the same N generated photo-like JPEGs of about 1600x1200 (some of them near copies of others), this
prints images/s for imagehash and for vl, how many hashes agree bit for bit, the distance distribution
between the two, and whether the set of duplicate pairs (distance < 8) changes. Target: >= 2x imagehash.
The corpus is generated once (in parallel) and cached under the temp folder.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from vlcli.demo import samples
from vlcli.steps.filter.dedup import near_duplicate_pairs
from vlcli.steps.filter.phash import DRAFT_MIN_SIDE, phash, phash_bytes

TARGET_SPEEDUP = 2.0
MAX_DISTANCE = 8  # DCVLR: a duplicate when distance < 8
_SIZES = [(1600, 1200), (1600, 1200), (1200, 1600), (1600, 1067), (1536, 1152)]
_COPY_SHARE = 0.15  # this share of the files are near copies (samples.NEAR_VARIANTS) of earlier ones


def _scene(index: int) -> bytes:
    rng, noise = random.Random(f"bench-phash:{index}"), np.random.default_rng([7, index])
    size = _SIZES[index % len(_SIZES)]
    return samples.encode(samples.draw_scene(rng, noise, size), "JPEG", rng.choice([82, 88, 92]))


def _write_scene(args: tuple[Path, int]) -> None:
    folder, index = args
    (folder / f"scene_{index:04d}.jpg").write_bytes(_scene(index))


def _write_copy(args: tuple[Path, int]) -> None:
    folder, index = args
    variant = samples.NEAR_VARIANTS[index % len(samples.NEAR_VARIANTS)]
    data = samples.near_duplicate((folder / f"scene_{index:04d}.jpg").read_bytes(), variant)
    (folder / f"scene_{index:04d}_{variant}.jpg").write_bytes(data)


def corpus(n: int) -> Path:
    """Generate (once) and return a folder of `n` JPEGs: scenes, then near copies of the first scenes."""
    folder = Path(tempfile.gettempdir()) / "vl-bench-phash" / f"n{n}"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    copies = int(n * _COPY_SHARE)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_write_scene, [(folder, i) for i in range(n - copies)], chunksize=8))
        list(pool.map(_write_copy, [(folder, i) for i in range(copies)], chunksize=8))
    done.write_text("ok")
    print(f"generated {n} JPEGs into {folder} in {time.perf_counter() - start:.0f} s")
    return folder


def _measure(
    methods: list[tuple[str, Callable[[Path], int]]], paths: list[Path], repeat: int
) -> list[tuple[str, list[int], float]]:
    """Each method's hashes of every path and its median seconds per pass; passes alternate between the
    methods so a change in machine load hits them alike."""
    for _, fn in methods:
        fn(paths[0])  # imports and first-call setup are not per-image costs
    times: dict[str, list[float]] = {name: [] for name, _ in methods}
    hashes: dict[str, list[int]] = {}
    for _ in range(repeat):
        for name, fn in methods:
            start = time.perf_counter()
            hashes[name] = [fn(p) for p in paths]
            times[name].append(time.perf_counter() - start)
    return [(name, hashes[name], statistics.median(times[name])) for name, _ in methods]


def _imagehash(path: Path) -> int:
    return int(str(imagehash.phash(Image.open(path))), 16)


def _vl_same_decode(path: Path) -> int:
    return phash(Image.open(path))


def _vl_bytes(path: Path) -> int:
    return phash_bytes(path.read_bytes())


def _vl_bytes_eighth(path: Path) -> int:
    return phash_bytes(path.read_bytes(), min_side=32)


def _pairs(hashes: list[int]) -> set[tuple[int, int]]:
    pairs = near_duplicate_pairs(np.array(hashes, dtype=np.uint64), MAX_DISTANCE)
    return {(int(i), int(j)) for i, j in pairs}


def _dist(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _copies(paths: list[Path]) -> dict[int, tuple[int, str]]:
    """Index of each near copy -> (index of its original, variant)."""
    index = {path.name: i for i, path in enumerate(paths)}
    out = {}
    for i, path in enumerate(paths):
        if path.stem.count("_") == 2:
            stem, variant = path.stem.rsplit("_", 1)
            out[i] = (index[stem + ".jpg"], variant)
    return out


def _report_pairs(name: str, hashes: list[int], ref: list[int], paths: list[Path]) -> None:
    ref_pairs, pairs = _pairs(ref), _pairs(hashes)
    print(f"  {name}: {len(pairs)} pairs, {len(ref_pairs & pairs)} shared with imagehash's {len(ref_pairs)}")
    for label, only in [("only imagehash", ref_pairs - pairs), (f"only {name}", pairs - ref_pairs)]:
        detail = [
            f"{paths[i].name}~{paths[j].name} (distance {_dist(ref[i], ref[j])} vs {_dist(hashes[i], hashes[j])})"
            for i, j in sorted(only)
        ]
        print(f"    {label}: {len(only)} {detail}")
    print(f"    pair set identical to imagehash's: {ref_pairs == pairs}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    paths = sorted(corpus(args.n).glob("*.jpg"))
    sizes = Counter(Image.open(path).size for path in paths)
    mb = sum(path.stat().st_size for path in paths) / 1e6
    print(
        f"{len(paths)} JPEGs, {mb:.0f} MB, sizes {dict(sizes.most_common(3))}; median of {args.repeat} passes"
    )
    print(f"cpus: {os.cpu_count()}, load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")

    methods = [
        ("imagehash.phash(Image.open(path))", _imagehash),
        ("vl phash(Image.open(path))  [full size]", _vl_same_decode),
        (f"vl phash_bytes  [default, short side >= {DRAFT_MIN_SIDE}]", _vl_bytes),
        ("vl phash_bytes(min_side=32)  [1/8 scale]", _vl_bytes_eighth),
    ]
    results = _measure(methods, paths, args.repeat)
    ref, t_ref = results[0][1], results[0][2]
    n = len(paths)
    print(
        f"\n{'':52s}{'images/s':>10s}{'ms/image':>10s}{'speed-up':>10s}{'same bits':>11s}  distance histogram"
    )
    for name, hashes, t in results:
        same = sum(a == b for a, b in zip(hashes, ref))
        hist = dict(sorted(Counter(_dist(a, b) for a, b in zip(hashes, ref)).items()))
        print(f"{name:52s}{n / t:10.1f}{1000 * t / n:10.2f}{t_ref / t:9.2f}x{same:>6d}/{n}  {hist}")
    speedup = t_ref / results[2][2]
    print(
        f"phash_bytes speed-up {speedup:.2f}x (target >= {TARGET_SPEEDUP}x): {'met' if speedup >= TARGET_SPEEDUP else 'MISSED'}"
    )

    print(f"\nduplicate pairs (distance < {MAX_DISTANCE})")
    for name, hashes, _ in results[1:]:
        _report_pairs(name.split("  ")[0] + (" (1/8)" if "1/8" in name else ""), hashes, ref, paths)
    copies = _copies(paths)
    for name, hashes, _ in [results[0], results[2]]:
        pairs = _pairs(hashes)
        found: Counter[str] = Counter()
        total: Counter[str] = Counter()
        for i, (orig, variant) in copies.items():
            total[variant] += 1
            found[variant] += (min(i, orig), max(i, orig)) in pairs
        print(
            f"  planted copies found, {name.split('  ')[0]}: "
            + ", ".join(f"{v} {found[v]}/{total[v]}" for v in total)
        )


if __name__ == "__main__":
    main()
