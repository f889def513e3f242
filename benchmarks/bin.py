"""`vl bin` against the seed's way on the same images, with small models on this CPU.

The seed decoded each image once per model, ran OCR and YOLO twice per image (once for the bin decision,
once for the explanation) and went one image at a time. `vl bin` decodes the view once, runs each model
once per image, batched across images. Target (issue 5): >= 2x images/s. Also prints each model's share.

Models: the real OCR models shipped in the rapidocr wheel, a random-weight yolov8n, and tiny random BLIP
and CLIP configurations (so caption/CLIP time is small: a real BLIP-base would dominate both sides).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tempfile
import time
from typing import Any

import numpy as np
from PIL import Image

from vlcli.demo.samples import draw_chart, draw_page, draw_scene
from vlcli.ingestion.ingest import ingest
from vlcli.steps.base import RunOptions
from vlcli.steps.bin.features import dispersion, num_classes, text_area_ratio
from vlcli.steps.bin.rules import BinRules
from vlcli.steps.bin.step import BinSettings, BinStep
from vlcli.table.storage import Table
from vlcli.testing.tiny_models import tiny_blip, tiny_clip


def make_images(folder: str, n: int, size: tuple[int, int]) -> list[str]:
    """Scenes, charts and pages as JPEGs."""
    paths = []
    for i in range(n):
        rng = random.Random(i)
        kind = i % 3
        if kind == 0:
            img = draw_scene(rng, np.random.default_rng(i), size)
        elif kind == 1:
            img = draw_chart(rng, size)[1]
        else:
            img = draw_page(rng, (size[1], size[0]))
        path = os.path.join(folder, f"img_{i:04d}.jpg")
        img.convert("RGB").save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def seed_way(paths: list[str], models: dict[str, Any]) -> float:
    """One image at a time, one decode per model call, OCR and YOLO twice; returns seconds."""
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb") as fh:
            data = fh.read()

        def load(data: bytes = data) -> Image.Image:
            return Image.open(io.BytesIO(data)).convert("RGB")

        for _ in range(2):  # decision, then explanation: the seed called both models again
            img = load()
            boxes = models["ocr"].read([img])[0]
            text_area_ratio([b.box for b in boxes], img.width, img.height)
            img = load()
            found = models["detector"].detect([img])[0]
            num_classes([d.label for d in found])
            dispersion([d.box for d in found], img.width, img.height)
        caption = models["captioner"].caption([load()])[0]
        models["clip"].score([load()], [caption])
    return time.perf_counter() - started


def vl_way(
    table_path: str, settings: BinSettings, batch_size: int, models: dict[str, Any]
) -> tuple[float, dict[str, float]]:
    """`vl bin`'s step over the table, reusing loaded models; returns seconds and per-model seconds."""
    from vlcli.steps.runner import run_step

    step = BinStep(settings, BinRules())
    step.setup = lambda: None  # type: ignore[method-assign]  # models are loaded once, outside the timing
    step.models = dict(models)
    started = time.perf_counter()
    report = run_step(Table.open(table_path), step, RunOptions(batch_size=batch_size, workers=2))
    seconds = time.perf_counter() - started
    assert report.done == report.pending, report
    return seconds, step.seconds


def main() -> None:
    """Run both ways on the same images and print images/s, the ratio and each model's share."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", default="800x600")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "images")
        os.makedirs(folder)
        paths = make_images(folder, args.images, size)  # type: ignore[arg-type]
        settings = BinSettings(
            detector="yolov8n.yaml",
            captioner=tiny_blip(os.path.join(tmp, "blip")),
            clip=tiny_clip(os.path.join(tmp, "clip")),
            device="cpu",
        )
        step = BinStep(settings)
        step.setup()
        models = step.models
        for m in ("ocr", "detector"):  # warm-up outside the timing
            getattr(models[m], "read" if m == "ocr" else "detect")([Image.open(paths[0]).convert("RGB")])
        seed_seconds = seed_way(paths, models)
        table_path = os.path.join(tmp, "t.lance")
        ingest(folder, table_path)
        vl_seconds, shares = vl_way(table_path, settings, args.batch_size, models)
    n = args.images
    print(f"bin: {n} images of {args.size}, real OCR (rapidocr), random yolov8n, tiny BLIP + CLIP, CPU")
    print(f"  seed way: {n / seed_seconds:6.2f} images/s ({seed_seconds:.1f} s)")
    print(
        f"  vl bin:   {n / vl_seconds:6.2f} images/s ({vl_seconds:.1f} s)  -> {seed_seconds / vl_seconds:.2f}x"
    )
    total = sum(shares.values()) or 1.0
    print(
        "  vl bin time by model: "
        + ", ".join(f"{m} {s:.1f}s ({s / vl_seconds:.0%})" for m, s in shares.items())
    )
    print(f"  outside the models (decode, features, commits): {max(0.0, vl_seconds - total):.1f}s")


if __name__ == "__main__":
    main()
