"""`vl crop` + `vl export --images` against the seed's 3-stage smart crop, on the same images, in one run.

The claim (issue 3): the seed writes ~27 MB of tensors per image in stage 1, reads them back to embed in
stage 2 and again to save PNGs in stage 3; `vl crop` streams decode -> device-side candidate resize -> one
model batch, writes only columns, and `vl export --images` saves the crops. Targets:
- model-bound (dinov2-small's architecture, random weights, fp32): vl >= 1.15x faster end to end, >= 90% of
  `vl crop`'s wall time in the model forward, the same box as the seed on >= 99% of images, 0 intermediate
  bytes (the seed: ~27 MB per image);
- pipeline-bound (a 2-layer, 32-wide DINOv2 standing in for a fast GPU): >= 3x the seed's throughput;
- `--dtype bf16` on CPU: speed against fp32 and box agreement with fp32.

Fairness: one set of generated JPEGs (fixed seed) and one saved model folder per regime, loaded by path by
both pipelines; the same device (CPU), batch size (images per model batch, x (N+1) crops) and worker
count (the seed's process pools and DataLoader workers, vl's prepare and export threads); model load is
timed inside both; one untimed forward per batch shape and dtype warms the process up for both. The
images are split into `--rounds` chunks and each chunk runs through every pipeline in turn, the order
reversed every other chunk, so that load from other processes on a shared machine, which drifts over
minutes, lands on all pipelines alike (the load average is printed). Ingest into the tables is timed but
not counted: the seed reads a prepared dataset. The seed's stage-1 files fit in the page cache here, so
its disk cost shows as bytes, not as waiting on a disk. Output files: the seed saves PNG at PIL's default
zlib level 6, `vl export` at level 1 (its documented choice); both sizes are printed.

Run: `python benchmarks/crop_vs_seed.py` (100 images of 1600x1200, both regimes, `--repeat 1`: 10 to
20 minutes on 2 shared cores, nearly all of it in the dinov2-small forward); `--images 8 --regime pipeline
--rounds 1` for a quick look.
"""

from __future__ import annotations

import argparse
import inspect
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _seed_crop import SeedConfig, SeedTimes, cpu_seconds, run_seed

from vlcli.demo.samples import draw_scene
from vlcli.exports.export import export
from vlcli.ingestion.ingest import ingest
from vlcli.steps.base import RunOptions
from vlcli.steps.crop.step import CropSettings, CropStep
from vlcli.steps.runner import run_step
from vlcli.table.storage import Table

Box = tuple[int, int, int, int]

REGIMES = {
    # dinov2-small: https://huggingface.co/facebook/dinov2-small/blob/main/config.json
    "model": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "mlp_ratio": 4},
    "pipeline": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 4},
}
TITLES = {
    "model": "model-bound: dinov2-small architecture (random weights), fp32",
    "pipeline": "pipeline-bound: tiny DINOv2 (2 layers, hidden 32), fp32",
}


# --- inputs ----------------------------------------------------------------------------------------


def _draw(job: tuple[Path, int, int, tuple[int, int]]) -> None:
    path, seed, index, size = job
    rng, noise = random.Random(seed * 1_000_003 + index), np.random.default_rng([seed, index])
    draw_scene(rng, noise, size).save(path, "JPEG", quality=90)


def generate_images(folder: Path, n: int, size: tuple[int, int], seed: int, workers: int) -> list[str]:
    """`n` photo-like scenes (sky, hills, trees, houses, cars), deterministic per seed; kept as a cache."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"img_{i:04d}.jpg" for i in range(n)]
    todo = [(p, seed, i, size) for i, p in enumerate(paths) if not p.exists()]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(_draw, todo))
    return [str(p) for p in paths]


def build_model(folder: Path, arch: dict[str, int], seed: int) -> str:
    """A random-weight DINOv2 with dinov2's processor settings, saved like a hub checkpoint."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.Dinov2Config(patch_size=14, image_size=518, **arch)
    transformers.Dinov2Model(config).save_pretrained(folder)
    transformers.BitImageProcessor(
        size={"shortest_edge": 256},
        crop_size={"height": 224, "width": 224},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)
    return str(folder)


def seed_config(model_dir: str, args: argparse.Namespace) -> SeedConfig:
    """The seed reads the input size, mean and std from the same processor `vl crop` loads."""
    import transformers

    processor = transformers.AutoImageProcessor.from_pretrained(model_dir)
    return SeedConfig(
        mean=tuple(processor.image_mean),
        std=tuple(processor.image_std),
        num_crops=args.num_crops,
        resize_to=args.resize_to,
        input_size=int(processor.crop_size["height"]),
    )


def warm_up(model_dir: str, chunk_sizes: set[int], args: argparse.Namespace, dtypes: list[str]) -> None:
    """One forward per model batch shape and dtype, untimed, so neither pipeline pays first-call costs."""
    import transformers

    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    rows = {min(n, args.batch_size) for n in chunk_sizes} | {n % args.batch_size for n in chunk_sizes} - {0}
    with torch.inference_mode():
        for images in rows:
            x = torch.zeros(images * (args.num_crops + 1), 3, 224, 224)
            for dtype in dtypes:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                    model(pixel_values=x)


# --- vl --------------------------------------------------------------------------------------------


class TimedCropStep(CropStep):
    """`CropStep` whose embedder's `embed` (the model forward) accumulates its wall time."""

    model_seconds = 0.0

    def setup(self) -> None:
        super().setup()
        embed = self.embedder.embed

        def timed(pixels: Any) -> Any:
            started = time.perf_counter()
            try:
                return embed(pixels)
            finally:
                self.model_seconds += time.perf_counter() - started

        self.embedder.embed = timed


@dataclass
class VlTimes:
    """`vl crop` and `vl export --images` wall seconds, model seconds, CPU seconds (crop + export), bytes
    written, and the chosen boxes."""

    crop: float = 0.0
    model: float = 0.0
    export: float | None = None
    cpu: float = 0.0
    table_bytes: int = 0
    output_bytes: int = 0
    boxes: dict[str, Box] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """Crop plus export (crop alone when export is not available)."""
        return self.crop + (self.export or 0.0)


def export_images_available() -> bool:
    """True once `vl export --images` has landed in `vlcli.exports.export`."""
    return "images" in inspect.signature(export).parameters


def run_vl(base: str, out: Path, model_dir: str, dtype: str, args: argparse.Namespace) -> VlTimes:
    """`vl crop` on a copy of the ingested table, then `vl export --images`; boxes read back by file stem."""
    path = str(out / "table.lance")
    shutil.copytree(base, path)
    table = Table.open(path)
    before = table.size_on_disk()
    times = VlTimes()
    cpu = cpu_seconds()
    started = time.perf_counter()
    settings = CropSettings(
        model=model_dir, resize_to=args.resize_to, num_crops=args.num_crops, device="cpu", dtype=dtype
    )
    step = TimedCropStep(settings)
    report = run_step(table, step, RunOptions(batch_size=args.batch_size, workers=args.workers))
    times.crop = time.perf_counter() - started
    times.model = step.model_seconds
    if report.done != report.pending:
        raise RuntimeError(f"vl crop: {report.done} of {report.pending} rows ok: {dict(report.reasons)}")
    times.table_bytes = table.size_on_disk() - before
    if export_images_available():
        times.export, times.output_bytes = _export(table, out / "cropped_images", args)
    times.cpu = cpu_seconds() - cpu
    rows = table.to_arrow(["source", "crop_box", "crop_score"]).to_pylist()
    times.boxes = {Path(r["source"]).stem: tuple(r["crop_box"]) for r in rows}
    times.scores = {Path(r["source"]).stem: r["crop_score"] for r in rows}
    return times


def _export(table: Table, folder: Path, args: argparse.Namespace) -> tuple[float, int]:
    """`vl export TABLE --images DIR --format F --size R`: the crops at the seed's stage-3 size."""
    from vlcli.exports.views import ViewOptions

    started = time.perf_counter()
    report = export(
        table, images=folder, view=ViewOptions(format=args.format, size=args.resize_to), workers=args.workers
    )
    return time.perf_counter() - started, report.bytes_written


# --- comparing -------------------------------------------------------------------------------------


def seed_boxes_original(seed: SeedTimes) -> dict[str, Box]:
    """The seed's boxes (resized frame) mapped to original pixels by scaling each axis and rounding."""
    out: dict[str, Box] = {}
    for r in seed.records:
        (ow, oh), (rw, rh) = r["original_size"], r["resized_size"]
        left, top, right, bottom = r["crop_box"]
        out[r["image_id"]] = (
            round(left * ow / rw),
            round(top * oh / rh),
            round(right * ow / rw),
            round(bottom * oh / rh),
        )
    return out


def agreement(a: dict[str, Box], b: dict[str, Box]) -> tuple[int, list[str]]:
    """How many images got the identical box, and which did not."""
    differ = sorted(k for k in a if a[k] != b.get(k))
    return len(a) - len(differ), differ


# --- running and printing --------------------------------------------------------------------------


@dataclass
class RegimeRuns:
    """Every repeat of one regime, each the sum of its rounds."""

    name: str
    seed: list[SeedTimes] = field(default_factory=list)
    vl: list[VlTimes] = field(default_factory=list)
    bf16: list[VlTimes] = field(default_factory=list)
    load: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Chunk:
    """One round's images: their paths and a table holding just them."""

    paths: list[str]
    table: str


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the results."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_regime(name: str, chunks: list[Chunk], work: Path, args: argparse.Namespace) -> RegimeRuns:
    """Build the regime's model once and warm up; then per repeat and round, the seed, vl fp32 and (model
    regime) vl bf16 on the round's images, in reversed order every other round, so that load from other
    processes, which drifts over minutes, falls on all of them alike."""
    model_dir = build_model(work / f"model-{name}", REGIMES[name], args.seed)
    cfg = seed_config(model_dir, args)
    who = ["seed", "fp32"] + (["bf16"] if name == "model" and not args.no_bf16 else [])
    warm_up(model_dir, {len(c.paths) for c in chunks}, args, [w for w in who if w != "seed"])
    runs = RegimeRuns(name)
    for r in range(args.repeat):
        parts: dict[str, list[Any]] = {w: [] for w in who}
        for k, chunk in enumerate(chunks):
            for w in who if (r + k) % 2 == 0 else who[::-1]:
                log(f"{name}: repeat {r + 1}/{args.repeat}, round {k + 1}/{len(chunks)}: {w}")
                runs.load.append(os.getloadavg()[0])
                out = work / f"{name}-{r}-{k}-{w}"
                parts[w].append(_run_one(w, chunk, out, model_dir, cfg, args))
        runs.seed.append(_sum(SeedTimes(), parts["seed"]))
        runs.vl.append(_sum(VlTimes(), parts["fp32"]))
        if "bf16" in parts:
            runs.bf16.append(_sum(VlTimes(), parts["bf16"]))
    return runs


def _run_one(
    who: str, chunk: Chunk, out: Path, model_dir: str, cfg: SeedConfig, args: argparse.Namespace
) -> Any:
    if who != "seed":
        return run_vl(chunk.table, _mkdir(out), model_dir, who, args)
    times = run_seed(chunk.paths, str(out), model_dir, cfg, args.batch_size, args.workers, args.format)
    if not args.keep:
        shutil.rmtree(out / "preprocessed_tensors")  # GBs; its bytes are already counted
    return times


def _sum(total: Any, parts: list[Any]) -> Any:
    """Add up the rounds: numbers are summed, lists concatenated, dicts merged."""
    for part in parts:
        for f in fields(part):
            mine, theirs = getattr(total, f.name), getattr(part, f.name)
            if isinstance(theirs, dict):
                mine.update(theirs)
            elif isinstance(theirs, list):
                mine.extend(theirs)
            elif theirs is not None:
                setattr(total, f.name, (mine or 0) + theirs)
    return total


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def med(values: list[float]) -> float:
    """Median of the repeats."""
    return statistics.median(values)


def _row(label: str, n: int, wall: float, model: float | None = None, cpu: float | None = None) -> None:
    cols = f"{label:34s}{wall:8.1f}{n / wall:8.2f}"
    if model is not None:
        cols += f"{model:9.1f}{model / wall:8.1%}"
    elif cpu is not None:
        cols += " " * 17
    if cpu is not None:
        cols += f"{cpu:8.1f}"
    print(cols)


def _target(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report_regime(runs: RegimeRuns, n: int, args: argparse.Namespace) -> None:
    """Medians side by side, ratios, model share, bytes and box agreement."""
    s, v = runs.seed, runs.vl
    print(f"\n== {TITLES[runs.name]}")
    print(
        f"{n} images in {args.rounds} interleaved round(s), median of {len(s)} run(s); load average of the "
        f"machine before each part: {min(runs.load):.1f} to {max(runs.load):.1f} ({os.cpu_count()} cores)"
    )
    print(f"{'':34s}{'wall s':>8s}{'img/s':>8s}{'model s':>9s}{'model':>8s}{'CPU s':>8s}")
    _row(f"seed stage 1 ({args.workers} procs)", n, med([t.stage1 for t in s]))
    _row("seed stage 2 (DataLoader + model)", n, med([t.stage2 for t in s]), med([t.model for t in s]))
    _row(f"seed stage 3 (save {args.format})", n, med([t.stage3 for t in s]))
    seed_total, seed_crop = med([t.total for t in s]), med([t.crop for t in s])
    _row("seed total", n, seed_total, med([t.model for t in s]), med([t.cpu for t in s]))
    vl_crop, vl_model = med([t.crop for t in v]), med([t.model for t in v])
    _row("vl crop", n, vl_crop, vl_model)
    if v[0].export is None:
        print("vl export --images: not in vlcli.exports.export yet; vl totals below are crop only")
    else:
        _row(f"vl export --images --format {args.format}", n, med([t.export or 0.0 for t in v]))
    vl_total = med([t.total for t in v])
    _row("vl total", n, vl_total, vl_model, med([t.cpu for t in v]))
    if runs.bf16:
        _row("vl crop --dtype bf16", n, med([t.crop for t in runs.bf16]), med([t.model for t in runs.bf16]))
    ratio, goal = seed_total / vl_total, 1.15 if runs.name == "model" else 3.0
    print(f"speed-up end to end (seed / vl):   {ratio:5.2f}x   target >= {goal}x: {_target(ratio >= goal)}")
    print(f"speed-up crop only (seed stages 1+2 / vl crop): {seed_crop / vl_crop:5.2f}x")
    seed_model = med([t.model for t in s])
    if runs.name == "model":
        same_model = seed_total / (vl_total - vl_model + seed_model)
        print(
            f"speed-up end to end, vl's model time set to the seed's: {same_model:5.2f}x "
            "(the same forward on the same batches: this takes its run-to-run noise out)"
        )
    share = vl_model / vl_crop
    if runs.name == "model":
        print(f"vl crop wall time in model forward: {share:5.1%}   target >= 90%: {_target(share >= 0.9)}")
    seed_over = (seed_total - seed_model) / n
    print(
        f"not in the model, per image: seed {seed_over * 1e3:.0f} ms (all stages), "
        f"vl crop {(vl_crop - vl_model) / n * 1e3:.0f} ms + export {(vl_total - vl_crop) / n * 1e3:.0f} ms"
    )
    _report_bytes(s[0], v[0], n, args.format)
    _report_boxes(s[0], v[0], n)
    if runs.bf16:
        _report_bf16(runs, n)


def _report_bytes(seed: SeedTimes, vl: VlTimes, n: int, fmt: str) -> None:
    per_image = (seed.tensor_bytes + seed.json_bytes) / n
    print(
        f"intermediate files per image: seed {per_image / 1e6:.1f} MB (.pt + JSON), vl 0 B "
        f"(the table grew {vl.table_bytes / n / 1e3:.1f} kB/image: box, score, embedding, status)"
    )
    seed_out, vl_out = seed.output_bytes / n / 1e6, vl.output_bytes / n / 1e6
    levels = " (PNG: PIL at zlib level 6 vs libpng, up filter, level 1)" if fmt == "png" else ""
    print(f"output files per image: seed {seed_out:.2f} MB, vl {vl_out:.2f} MB{levels}")


def _report_boxes(seed: SeedTimes, vl: VlTimes, n: int) -> None:
    seed_boxes = seed_boxes_original(seed)
    same, differ = agreement(seed_boxes, vl.boxes)
    score = {r["image_id"]: r["similarity"] for r in seed.records}
    worst = max(abs(score[k] - vl.scores[k]) for k in score)
    print(
        f"same box as the seed: {same}/{n} = {same / n:.1%}   target >= 99%: {_target(same >= 0.99 * n)}   "
        f"max |score diff| {worst:.1e}"
    )
    for k in differ[:5]:
        print(f"  {k}: seed {seed_boxes[k]} ({score[k]:.6f}), vl {vl.boxes[k]} ({vl.scores[k]:.6f})")


def _report_bf16(runs: RegimeRuns, n: int) -> None:
    fp32, bf16 = runs.vl[0], runs.bf16[0]
    speed = med([t.crop for t in runs.vl]) / med([t.crop for t in runs.bf16])
    same, differ = agreement(fp32.boxes, bf16.boxes)
    worst = max(abs(fp32.scores[k] - bf16.scores[k]) for k in fp32.scores)
    print(
        f"vl crop bf16 vs fp32: {speed:.2f}x faster, same box {same}/{n} = {same / n:.1%}, "
        f"max |score diff| {worst:.1e}"
    )
    for k in differ[:5]:
        print(
            f"  {k}: fp32 {fp32.boxes[k]} ({fp32.scores[k]:.6f}), bf16 {bf16.boxes[k]} ({bf16.scores[k]:.6f})"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=100, help="generated images (default 100)")
    p.add_argument("--size", default="1600x1200", help="WxH of the generated images")
    p.add_argument("--regime", choices=["model", "pipeline", "both"], default="both")
    p.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    p.add_argument("--batch-size", type=int, default=8, help="images per model batch (x N+1 crops)")
    p.add_argument("--repeat", type=int, default=1, help="runs per regime; medians are printed")
    p.add_argument("--rounds", type=int, default=4, help="interleave seed and vl over this many image chunks")
    p.add_argument("--format", choices=["png", "jpg"], default="png", help="stage 3 / export file format")
    p.add_argument("--num-crops", type=int, default=15)
    p.add_argument("--resize-to", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0, help="seed of the images and of the random weights")
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16 run in the model-bound regime")
    p.add_argument("--cache", default="/tmp/vl-bench-crop-images", help="folder of generated images (reused)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (tensors, tables, crops)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Generate, ingest, run each regime, print."""
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download: every model is a local folder
    _quiet()
    width, height = (int(x) for x in args.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="vl-bench-crop-", dir="/tmp"))
    try:
        log(f"generating {args.images} images of {width}x{height} in {args.cache}")
        folder = Path(args.cache) / f"seed{args.seed}-{width}x{height}"
        paths = generate_images(folder, args.images, (width, height), args.seed, args.workers)
        chunks, ingest_s = make_chunks(paths, work, args.rounds)
        regimes = ["model", "pipeline"] if args.regime == "both" else [args.regime]
        results = [run_regime(name, chunks, work, args) for name in regimes]
        _print_header(args, width, height, ingest_s)
        for runs in results:
            report_regime(runs, args.images, args)
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def make_chunks(paths: list[str], work: Path, rounds: int) -> tuple[list[Chunk], float]:
    """Split the images into `rounds` folders, each ingested into its own table; return the ingest time."""
    chunks, seconds = [], 0.0
    size = -(-len(paths) // rounds)
    for k, start in enumerate(range(0, len(paths), size)):
        folder = work / f"images-{k}"
        folder.mkdir()
        for p in paths[start : start + size]:
            shutil.copy(p, folder)
        table = str(work / f"base-{k}.lance")
        started = time.perf_counter()
        ingest(str(folder), table)
        seconds += time.perf_counter() - started
        chunks.append(Chunk(sorted(str(f) for f in folder.iterdir()), table))
    return chunks, seconds


def _quiet() -> None:
    """No per-load progress bars; no warning about forking after lance started: the seed's pools fork
    (Python's default start method here, as the seed would get) and its children never touch lance."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message="lance is not fork-safe")


def _print_header(args: argparse.Namespace, width: int, height: int, ingest_s: float) -> None:
    print(
        f"crop vs seed: {args.images} generated JPEGs {width}x{height} (seed {args.seed}), CPU, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), {args.workers} workers, "
        f"batch {args.batch_size}, N={args.num_crops}, R={args.resize_to}, {args.format}"
    )
    print(f"vl ingest (not counted; the seed reads a prepared dataset): {ingest_s:.1f} s")


if __name__ == "__main__":
    main()
