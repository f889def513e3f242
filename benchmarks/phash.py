"""pHash throughput and bits: `vl filter`'s hashing against `imagehash.phash` on the full decode.

    python benchmarks/phash.py [--n 200] [--repeat 3] [--e2e]

On the same N generated photo-like JPEGs of about 1600x1200 (some of them near copies of others), this
prints, per method, images/s of wall time and per CPU core (the process's CPU time, every thread
counted: on a shared machine it stays close to what one quiet core gives), the ratio to the bare
decode vl needs, how many hashes equal imagehash's on the full decode bit for bit, the distance
histogram, and whether the set of duplicate pairs (distance < 8) changes. Methods: imagehash after a
full decode and after a 1/8 luma draft decode, that decode alone, vl's previous path (RGB draft at short
side >= 256, PIL resize; kept here as the reference), vl's `phash_bytes` and its exact mode. With
--e2e, `vl filter --nsfw none` (and `--nsfw null`) end to end with --workers 1 on the same files.
Targets (issue 14): >= 300 images/s per core end to end; >= 95% of hashes bit-identical, the rest
within 2 bits. The corpus is generated once (in parallel) and cached under the temp folder.
"""

from __future__ import annotations

import argparse
import io
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
from vlcli.images import decode
from vlcli.steps.filter.dedup import near_duplicate_pairs
from vlcli.steps.filter.phash import DRAFT_MIN_SIDE, phash, phash_bytes

TARGET_PER_CORE = 300.0
TARGET_SAME = 0.95
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
    methods: list[tuple[str, Callable[[bytes], int | None]]], blobs: list[bytes], repeat: int
) -> list[tuple[str, list[int | None], float, float]]:
    """Each method's hashes of every file and its median wall and CPU seconds per pass; passes
    alternate between the methods so a change in machine load hits them alike."""
    for _, fn in methods:
        fn(blobs[0])  # imports and first-call setup are not per-image costs
    wall: dict[str, list[float]] = {name: [] for name, _ in methods}
    cpu: dict[str, list[float]] = {name: [] for name, _ in methods}
    hashes: dict[str, list[int | None]] = {}
    for _ in range(repeat):
        for name, fn in methods:
            start, start_cpu = time.perf_counter(), time.process_time()
            hashes[name] = [fn(b) for b in blobs]
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return [
        (name, hashes[name], statistics.median(wall[name]), statistics.median(cpu[name]))
        for name, _ in methods
    ]


def _imagehash(data: bytes) -> int:
    return int(str(imagehash.phash(Image.open(io.BytesIO(data)))), 16)


def _luma_eighth(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.draft("L", (img.size[0] // 8, img.size[1] // 8))
    img.load()
    return img


def _imagehash_draft(data: bytes) -> int:
    return int(str(imagehash.phash(_luma_eighth(data))), 16)


def _decode_only(data: bytes) -> None:
    _luma_eighth(data)


def _vl_before(data: bytes) -> int:
    # vl's path before issue 14: RGB draft at short side >= 256 (1/4 for photos), then PIL's resize
    return phash(decode(data, min_side=DRAFT_MIN_SIDE, reduce=False))


def _vl_exact(data: bytes) -> int:
    return phash_bytes(data, exact=True)


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


def _end_to_end(folder: Path, nsfw: str, rows: int) -> tuple[float, float]:
    """`vl filter --nsfw <nsfw> --workers 1` on a fresh table of the corpus: rows/s of wall and CPU time."""
    from vlcli.ingestion.ingest import ingest
    from vlcli.steps.base import RunOptions
    from vlcli.steps.filter.step import ScoreSettings, run_filter
    from vlcli.table.storage import Table

    with tempfile.TemporaryDirectory() as tmp:
        ingest(str(folder), str(Path(tmp) / "t.lance"))
        table = Table.open(Path(tmp) / "t.lance")
        start, start_cpu = time.perf_counter(), time.process_time()
        report, _ = run_filter(table, ScoreSettings(nsfw=nsfw), options=RunOptions(workers=1, limit=rows))
        cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start
    return report.done / wall, report.done / cpu


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--e2e", action="store_true", help="also run vl filter end to end (--workers 1)")
    args = p.parse_args(argv)

    folder = corpus(args.n)
    paths = sorted(folder.glob("*.jpg"))
    blobs = [path.read_bytes() for path in paths]
    sizes = Counter(Image.open(path).size for path in paths)
    print(
        f"{len(paths)} JPEGs, {sum(map(len, blobs)) / 1e6:.0f} MB, sizes {dict(sizes.most_common(3))}; "
        f"median of {args.repeat} passes"
    )
    print(f"cpus: {os.cpu_count()}, load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")

    methods: list[tuple[str, Callable[[bytes], int | None]]] = [
        ("imagehash, full decode  [reference]", _imagehash),
        ("imagehash, 1/8 luma draft decode", _imagehash_draft),
        ("1/8 luma draft decode alone  [floor]", _decode_only),
        (f"vl before: RGB draft >= {DRAFT_MIN_SIDE} px, PIL resize", _vl_before),
        ("vl phash_bytes  [1/8 luma, block weights]", phash_bytes),
        ("vl phash_bytes(exact=True)", _vl_exact),
    ]
    results = _measure(methods, blobs, args.repeat)
    ref = [int(h or 0) for h in results[0][1]]
    floor_cpu = results[2][3]
    n = len(paths)
    print(
        f"\n{'':50s}{'img/s wall':>11s}{'img/s/core':>11s}{'vs floor':>9s}{'same bits':>11s}  distance histogram"
    )
    for name, hashes, wall, cpu in results:
        agree = ""
        if hashes[0] is not None:
            same = sum(a == b for a, b in zip(hashes, ref))
            hist = dict(sorted(Counter(_dist(int(a or 0), b) for a, b in zip(hashes, ref)).items()))
            agree = f"{same:>6d}/{n}  {hist}"
        print(f"{name:50s}{n / wall:11.1f}{n / cpu:11.1f}{floor_cpu / cpu:8.2f}x{agree}")
    vl = [int(h or 0) for h in results[4][1]]
    same = sum(a == b for a, b in zip(vl, ref)) / n
    worst = max(_dist(a, b) for a, b in zip(vl, ref))
    print(
        f"vl phash_bytes: {same:.1%} bit-identical (target >= {TARGET_SAME:.0%}): "
        f"{'met' if same >= TARGET_SAME else 'MISSED'}; worst distance {worst} (target <= 2): "
        f"{'met' if worst <= 2 else 'MISSED'}"
    )

    print(f"\nduplicate pairs (distance < {MAX_DISTANCE})")
    for name, hashes, _, _ in results[1:]:
        if hashes[0] is not None:
            _report_pairs(name.split("  ")[0], [int(h or 0) for h in hashes], ref, paths)
    copies = _copies(paths)
    for name, hashes, _, _ in [results[0], results[4]]:
        pairs = _pairs([int(h or 0) for h in hashes])
        found: Counter[str] = Counter()
        total: Counter[str] = Counter()
        for i, (orig, variant) in copies.items():
            total[variant] += 1
            found[variant] += (min(i, orig), max(i, orig)) in pairs
        print(
            f"  planted copies found, {name.split('  ')[0]}: "
            + ", ".join(f"{v} {found[v]}/{total[v]}" for v in total)
        )

    if args.e2e:
        print("\nvl filter end to end, --workers 1 (one table per run; rows/s)")
        for nsfw in ("none", "null"):
            wall, cpu = _end_to_end(folder, nsfw, n)
            print(
                f"  --nsfw {nsfw:5s}{wall:8.1f} wall{cpu:8.1f} per core (target >= {TARGET_PER_CORE:.0f}): "
                f"{'met' if cpu >= TARGET_PER_CORE else 'MISSED'}"
            )


if __name__ == "__main__":
    main()
