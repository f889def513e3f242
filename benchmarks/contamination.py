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
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from vlcli.demo.samples import draw_scene
from vlcli.images import decode
from vlcli.steps.filter.contamination import cross_matches, grid_hashes
from vlcli.steps.filter.phash import DRAFT_MIN_SIDE, phash, to_int64


def jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def crop(img: Image.Image, scale: float, corner: bool) -> Image.Image:
    w, h = round(img.width * scale), round(img.height * scale)
    left, top = (img.width - w, img.height - h) if corner else ((img.width - w) // 2, (img.height - h) // 2)
    return img.crop((left, top, left + w, top + h))


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "centred 90% crop": lambda im: jpeg(crop(im, 0.9, corner=False)),
    "90% crop at a corner": lambda im: jpeg(crop(im, 0.9, corner=True)),
    "85% crop at a corner": lambda im: jpeg(crop(im, 0.85, corner=True)),
    "87% crop, off the grid": lambda im: jpeg(
        im.crop((20, 10, 20 + round(im.width * 0.87), 10 + round(im.height * 0.87)))
    ),
    "75% centred crop": lambda im: jpeg(crop(im, 0.75, corner=False)),
    "half size": lambda im: jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)),
    "JPEG quality 60": lambda im: jpeg(im, quality=60),
    "+8% brightness": lambda im: jpeg(ImageEnhance.Brightness(im).enhance(1.08)),
    "mirrored (not a match)": lambda im: jpeg(ImageOps.mirror(im)),
}


def hash_of(data: bytes) -> int:
    """As `vl filter` hashes a row."""
    return to_int64(phash(decode(data, min_side=DRAFT_MIN_SIDE, reduce=False)))


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
    for label, transform in TRANSFORMS.items():
        copies = [hash_of(transform(img)) for img in scenes]
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
