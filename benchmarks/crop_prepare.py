"""`vl crop`'s CPU work before the model (issue 14): `--preprocess exact` against `--preprocess fast`, per core.

Per core: every row's `prepare` (decode, and for exact the PIL resize to R) runs in this one thread and its
CPU seconds are counted (time.process_time), in interleaved rounds (exact, fast, gpu-bytes, then reversed)
so that load from other processes on a shared machine lands on all alike; medians are printed. The
`--decode gpu` row times only its CPU side (a header read: the decode runs on the device).

Agreement: both paths then run the model (a random-weight DINOv2, `--arch`) on the same images; printed
are the share of images where fast chose the exact path's box, the mean IoU of the two boxes, and how far
each path's full-image model input (S x S, 8-bit levels) is from the same resize done in float without
any intermediate rounding (original -> R -> S): the exact path's own rounding against fast's difference.

Run: `python benchmarks/crop_prepare.py` (100 images of 1600x1200, ~2 minutes on 2 shared cores);
`--images 20 --rounds 1` for a quick look.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from crop_vs_seed import REGIMES, build_model, generate_images
from PIL import Image

from vlcli.steps.crop.geometry import Box
from vlcli.steps.crop.step import CropSettings, CropStep

MODES = {
    "exact": {},
    "fast": {"preprocess": "fast"},
    "fast --decode gpu": {"preprocess": "fast", "decode": "gpu"},
}


def rows_of(paths: list[str]) -> list[dict[str, Any]]:
    """Rows as the runner hands them to `prepare`."""
    out = []
    for i, path in enumerate(paths):
        data = Path(path).read_bytes()
        w, h = Image.open(io.BytesIO(data)).size
        out.append({"id": str(i), "image": data, "width": w, "height": h})
    return out


def prepare_seconds(step: CropStep, rows: list[dict[str, Any]]) -> float:
    """CPU seconds per row of `prepare`, in this thread."""
    started = time.process_time()
    for row in rows:
        step.prepare(row)
    return (time.process_time() - started) / len(rows)


def choose(step: CropStep, rows: list[dict[str, Any]], batch: int) -> list[Box]:
    """The box the step picks for every row (original pixels)."""
    boxes: list[Box] = []
    for start in range(0, len(rows), batch):
        items = [step.prepare(r) for r in rows[start : start + batch]]
        boxes += [tuple(r["crop_box"]) for r in step.process(items)]
    return boxes


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def full_input(step: CropStep, row: dict[str, Any]) -> torch.Tensor:
    """The full image as the model gets it, before normalisation: [3, S, S] levels as float."""
    p = step.prepare(row)
    assert p.pixels is not None
    full, _ = step._views(torch.from_numpy(p.pixels), p)  # fast: a shared first pass, as the step does
    s = step.embedder.input_size
    return step.embedder.resize(full.permute(2, 0, 1)[None], (s, s))[0].float()


def ideal_input(row: dict[str, Any], resized: tuple[int, int], s: int) -> torch.Tensor:
    """original -> R -> S in float, bicubic and antialiased, never rounded in between."""
    x = torch.from_numpy(np.array(Image.open(io.BytesIO(row["image"])).convert("RGB"))).permute(2, 0, 1)[None]
    mid = torch.nn.functional.interpolate(
        x.float(), size=(resized[1], resized[0]), mode="bicubic", antialias=True, align_corners=False
    )
    out = torch.nn.functional.interpolate(
        mid, size=(s, s), mode="bicubic", antialias=True, align_corners=False
    )
    return out[0].clamp(0, 255)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--size", default="1600x1200", help="WxH of the generated images")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (medians printed)")
    p.add_argument("--arch", choices=sorted(REGIMES), default="model", help="random-weight DINOv2 size")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--cache", default="/tmp/vl-bench-crop-images", help="folder of generated images (reused)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # per core
    w, h = (int(v) for v in args.size.lower().split("x"))
    paths = generate_images(Path(args.cache) / f"seed0-{w}x{h}", args.images, (w, h), 0, 2)
    rows = rows_of(paths)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp) / "model", REGIMES[args.arch], 0)
        steps = {m: CropStep(CropSettings(model=model, device="cpu", **kw)) for m, kw in MODES.items()}  # type: ignore[arg-type]
        for step in steps.values():
            step.setup()
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(args.rounds):
            for mode in MODES if r % 2 == 0 else reversed(MODES):
                times[mode].append(prepare_seconds(steps[mode], rows))
        print(
            f"{args.images} JPEGs of {w}x{h}, prepare per core (CPU time, one thread), medians of {args.rounds}:"
        )
        exact = statistics.median(times["exact"])
        for mode, ts in times.items():
            t = statistics.median(ts)
            print(f"  {mode:18s} {1000 * t:6.2f} ms/image  {1 / t:7.1f} images/s  x{exact / t:5.2f} vs exact")
        boxes = {m: choose(steps[m], rows, args.batch_size) for m in ("exact", "fast")}
        same = sum(a == b for a, b in zip(boxes["exact"], boxes["fast"]))
        ious = [iou(a, b) for a, b in zip(boxes["exact"], boxes["fast"])]
        print(
            f"fast vs exact ({args.arch} DINOv2, random weights): same box {same}/{len(rows)} "
            f"({100 * same / len(rows):.0f}%), mean IoU {statistics.mean(ious):.3f}, min {min(ious):.3f}"
        )
        s = steps["exact"].embedder.input_size
        dev = {"exact": [], "fast": []}
        for row in rows[: min(20, len(rows))]:
            resized = steps["exact"].prepare(row).resized
            ideal = ideal_input(row, resized, s)
            for mode in dev:
                dev[mode].append(float((full_input(steps[mode], row) - ideal).abs().mean()))
        print(
            f"full-image model input vs an unrounded float resize (mean |diff|, 8-bit levels, "
            f"{len(dev['exact'])} images): exact {statistics.mean(dev['exact']):.3f}, "
            f"fast {statistics.mean(dev['fast']):.3f}"
        )
    print(f"(shared machine: compare the ratios; rerun: {' '.join([sys.executable, *sys.argv])})")


if __name__ == "__main__":
    main()
