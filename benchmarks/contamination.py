"""Decontamination recall: evaluation images transformed as training copies, found by the crop-grid hashes
of `vl filter --against` versus the full image's pHash alone, at the default distance (< 8).

    python benchmarks/contamination.py [--eval 60] [--others 300] [--size 640x480]

Prints per transformation: copies found with the grid and with the full hash only, and the median
distance; then false matches among unrelated images and the smallest distance of one to any reference
hash (the margin). Pure numpy + PIL: no table, no model.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics

import numpy as np
from PIL import Image

from vlcli.demo.samples import EVAL_COPIES, draw_scene, eval_copy
from vlcli.images import decode
from vlcli.steps.filter.contamination import cross_matches, grid_hashes
from vlcli.steps.filter.phash import DRAFT_MIN_SIDE, phash_bytes, to_int64


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def hash_of(data: bytes) -> int:
    """As `vl filter` hashes a row."""
    return to_int64(phash_bytes(data))


def main() -> None:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--eval", type=int, default=60)
    parser.add_argument("--others", type=int, default=300)
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    scenes = [draw_scene(random.Random(s), np.random.default_rng(s), size) for s in range(args.eval)]
    grid: list[int] = []
    owner: list[int] = []
    full: list[int] = []
    for k, img in enumerate(scenes):
        hashes = grid_hashes(decode(jpeg(img), min_side=DRAFT_MIN_SIDE, reduce=False))
        grid += hashes
        owner += [k] * len(hashes)
        full.append(hashes[0])
    print(f"{args.eval} evaluation images {args.size}, {len(grid)} reference hashes, distance < 8")
    print(f"{'transformation':<24} {'grid':>8} {'full only':>10} {'median d (grid)':>16}")
    for label in EVAL_COPIES:
        copies = [hash_of(eval_copy(img, label)) for img in scenes]
        gi, gd = cross_matches(copies, grid, 8)
        fi, _ = cross_matches(copies, full, 8)
        right = sum(int(owner[j] == k) for k, j in enumerate(gi.tolist()) if j >= 0)
        found_full = sum(int(j == k) for k, j in enumerate(fi.tolist()))
        dists = [d for d in gd.tolist() if d >= 0]
        median = statistics.median(dists) if dists else "-"
        print(f"{label:<24} {right:>4}/{len(copies):<3} {found_full:>6}/{len(copies):<3} {median!s:>16}")
    others = [
        hash_of(jpeg(draw_scene(random.Random(s), np.random.default_rng(s), size)))
        for s in range(100_000, 100_000 + args.others)
    ]
    oi, _ = cross_matches(others, grid, 8)
    _, margin = cross_matches(others, grid, 65)
    print(
        f"unrelated images: {int((oi >= 0).sum())}/{len(others)} false matches; closest {int(margin.min())} bits"
    )


if __name__ == "__main__":
    main()
