"""`vl export --images` throughput per CPU core: crops of 1600x1200 photos written as JPEG or PNG files.

    python benchmarks/export_images.py [--n 200] [--repeat 3]

On N generated photo-like 1600x1200 JPEGs (quality 82-92) whose rows carry a crop_box (a square of the
full height, at a random offset), each case exports the table with `--workers 1` and reports images/s
per core (rows / CPU seconds of the process) and per wall second, beside a naive PIL path doing the same
work (full decode, crop, LANCZOS resize, PIL encode) measured in the same run, passes interleaved so
machine load hits both alike. JPEG outputs are quality 95 (the default), PNG at zlib level 1.
Target (issue 14): >= 100 images/s per core. The corpus and table are cached under the temp folder.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from vlcli.demo import samples
from vlcli.exports.export import export
from vlcli.exports.views import ViewOptions
from vlcli.ingestion.ingest import ingest
from vlcli.table.schema import CROP_BOX
from vlcli.table.storage import Table

TARGET = 100.0  # images/s per core
SIZE = (1600, 1200)
CASES = [  # (name, view options)
    ("crop -> jpg (q95)", ViewOptions()),
    ("crop -> png", ViewOptions(format="png")),
    ("crop, --size 512 -> jpg", ViewOptions(size=512)),
    ("crop, --size 512 -> png", ViewOptions(size=512, format="png")),
]


def corpus_table(n: int) -> Table:
    """A table of `n` generated photos with crop boxes (made once, cached)."""
    root = Path(tempfile.gettempdir()) / "vl-bench-export" / f"n{n}"
    path = root / "t.lance"
    if (root / ".complete").exists():
        return Table.open(path)
    shutil.rmtree(root, ignore_errors=True)
    folder = root / "photos"
    folder.mkdir(parents=True)
    for i in range(n):
        rng, noise = random.Random(f"bench-export:{i}"), np.random.default_rng([11, i])
        img = samples.draw_scene(rng, noise, SIZE)
        (folder / f"p{i:04d}.jpg").write_bytes(samples.encode(img, "JPEG", rng.choice([82, 88, 92])))
    ingest(folder, path)
    table = Table.open(path)
    table.ensure_columns([CROP_BOX.field()])
    ids = table.to_arrow(["id"]).column("id").to_pylist()
    rng = random.Random(5)
    boxes = []
    for _ in ids:
        left = rng.randrange(0, SIZE[0] - SIZE[1] + 1)
        boxes.append([left, 0, left + SIZE[1], SIZE[1]])
    table.write_back(pa.table({"id": ids, CROP_BOX.name: pa.array(boxes, CROP_BOX.type)}))
    (root / ".complete").write_text("ok")
    return Table.open(path)


def naive(data: bytes, box: list[int], view: ViewOptions) -> bytes:
    """The plain PIL path: decode everything, crop, resize, encode."""
    img = Image.open(io.BytesIO(data)).convert("RGB").crop(tuple(box))
    if view.size is not None:
        w, h = img.size
        s = view.size / min(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if view.format == "png":
        img.save(buf, "PNG", compress_level=1)
    else:
        img.save(buf, "JPEG", quality=view.quality)
    return buf.getvalue()


def timed(fn: Callable[[], int]) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, rows) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    rows = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, rows


def main() -> None:
    """Print images/s per core and per wall second for each case, vl against the naive PIL path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = corpus_table(args.n)
    rows = table.to_arrow(["image", CROP_BOX.name]).to_pylist()
    out = Path(tempfile.mkdtemp(prefix="vl-bench-export-out-"))
    print(
        f"{len(rows)} photos {SIZE[0]}x{SIZE[1]}, crop {SIZE[1]}x{SIZE[1]}; --workers 1; median of {args.repeat}"
    )
    print(
        f"{'case':26s} {'vl img/s/core':>14s} {'vl img/s wall':>14s} {'naive img/s/core':>17s} {'ratio':>6s}"
    )
    try:
        for name, view in CASES:

            def vl(view: ViewOptions = view) -> int:
                target = out / "x"
                shutil.rmtree(target, ignore_errors=True)
                return export(table, images=target, view=view, workers=1).rows

            def plain(view: ViewOptions = view) -> int:
                return sum(1 for r in rows if naive(r["image"], r[CROP_BOX.name], view))

            results: dict[str, list[tuple[float, float, int]]] = {"vl": [], "naive": []}
            for _ in range(args.repeat):
                results["vl"].append(timed(vl))
                results["naive"].append(timed(plain))
            per_core = {k: statistics.median(r / c for c, _, r in v) for k, v in results.items()}
            per_wall = statistics.median(r / w for _, w, r in results["vl"])
            ratio = per_core["vl"] / per_core["naive"]
            print(
                f"{name:26s} {per_core['vl']:14.1f} {per_wall:14.1f} {per_core['naive']:17.1f} {ratio:5.2f}x"
                + ("" if per_core["vl"] >= TARGET else f"  (< target {TARGET:.0f})")
            )
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
