"""The pipeline's own ceilings (issue 14): how fast filter, crop, bin and export --images run when the
models cost nothing (the `null` backends), per CPU core, and where the time goes.

On a GPU the model stops being the limit; what is left is the CPU work around it (decode, resize, cut,
hash, encode, commit). This measures exactly that part on generated 1600x1200 JPEGs (photo-like scenes
from `vlcli.demo.samples`, cached in the temp folder), each step on a fresh copy of one table:
- images/s wall and images per CPU-second ("per core": the process's CPU time, all threads, so a shared
  machine's other load does not count) with `--workers 1` and `--workers 2`;
- crop with `--preprocess fast` too, when the crop step has that setting;
- a profile of one serial pass of each step's per-row work (prepare per row, process per batch, in this
  thread, under cProfile timed in CPU seconds): the top functions by cumulative time, in ms per image,
  and the CPU time of prepare (decode, resize, cut, hash) and process (device-side work and the model)
  apart;
- start-up: `vl --help`, and `vl crop --backend null --limit 1` (launch, imports, table open, one decoded
  batch, one commit: an upper bound on launch-to-first-batch, the null model's load being ~0), wall and
  CPU seconds (on a shared machine the CPU figure is the one that does not count others' load).
Targets (per core, null models) are printed beside the measurements.

Run: `python benchmarks/ceilings.py` (500 images: a few minutes; the corpus takes ~1-2 minutes to draw
once); `--n 40` for a quick look.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlcli.demo.samples import draw_scene
from vlcli.exports.export import export
from vlcli.exports.views import ViewOptions, render
from vlcli.steps.base import RunOptions, Step
from vlcli.steps.bin.step import BinSettings, BinStep
from vlcli.steps.crop.step import CropSettings, CropStep
from vlcli.steps.filter.step import FilterRules, FilterStep, ScoreSettings
from vlcli.steps.runner import run_step
from vlcli.table.schema import CROP_BOX, ID, IMAGE, ingest_schema
from vlcli.table.storage import Table

SIZE = (1600, 1200)
TARGETS = {  # images per CPU-second, null models (issue 14)
    "filter": 300.0,
    "crop": 40.0,
    "crop --preprocess fast": 150.0,
    "export --images": 100.0,
}
HELP_TARGET_S = 0.3
FIRST_BATCH_TARGET_S = 1.0
_SCRIPT = Path(sys.executable).with_name("vl")
VL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "vlcli.cli"]


def corpus(n: int, folder: Path) -> Path:
    """A table of `n` generated 1600x1200 JPEG scenes, built once and kept in `folder`."""
    path = folder / f"vl-ceilings-{n}x{SIZE[0]}x{SIZE[1]}.lance"
    if (path / "_versions").exists():
        return path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import table_rows

    started = time.perf_counter()
    rng, noise = random.Random(0), np.random.default_rng(0)
    # Drawn at half size and enlarged, then given full-size sensor noise from one shared field (rolled
    # per image): ~5x faster to make than drawing at full size, and it decodes like a noisy photo.
    grain = noise.normal(0.0, 4.0, (SIZE[1], SIZE[0], 3)).astype(np.int16)
    tmp = path.with_suffix(".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    table = Table.create(tmp, ingest_schema())
    for start in range(0, n, 100):
        blobs = []
        for _ in range(min(100, n - start)):
            buf = io.BytesIO()
            small = draw_scene(rng, noise, (SIZE[0] // 2, SIZE[1] // 2))
            pixels = np.asarray(small.resize(SIZE, Image.Resampling.BICUBIC), np.int16)
            pixels = pixels + np.roll(grain, (rng.randrange(SIZE[1]), rng.randrange(SIZE[0])), axis=(0, 1))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
            blobs.append(buf.getvalue())
        table.append(table_rows(blobs))
    tmp.rename(path)
    print(
        f"corpus: {n} JPEGs of {SIZE[0]}x{SIZE[1]} drawn in {time.perf_counter() - started:.0f} s -> {path}"
    )
    return path


@dataclass
class Measure:
    """One timed run: images, wall seconds, CPU seconds of this process (all threads)."""

    name: str
    workers: int
    images: int
    wall: float
    cpu: float

    @property
    def per_core(self) -> float:
        """Images per CPU-second."""
        return self.images / self.cpu if self.cpu > 0 else 0.0


def timed(name: str, workers: int, images: int, run: Callable[[], Any]) -> Measure:
    """Run `run` once, measuring wall and process CPU time."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return Measure(name, workers, images, time.perf_counter() - wall, time.process_time() - cpu)


def fresh(source: str | Path, work: Path, tag: str) -> Table:
    """A copy of the source table to run one step on."""
    path = work / f"{tag}-{time.monotonic_ns()}.lance"
    shutil.copytree(source, path)
    return Table.open(str(path))


def crop_settings(fast: bool) -> CropSettings:
    """Crop with the null embedder (on the CPU), the exact or the `--preprocess fast` path."""
    extra = {"preprocess": "fast"} if fast else {}
    return CropSettings(backend="null", device="cpu", **extra)  # type: ignore[arg-type]


def has_fast_crop() -> bool:
    """Whether the crop step has the `--preprocess fast` setting (issue 14's CROP part)."""
    return "preprocess" in {f.name for f in fields(CropSettings)}


STEPS: dict[str, Callable[[], Step]] = {
    # the target is pHash and the size rules; with an NSFW model the image is also decoded for it
    "filter": lambda: FilterStep(ScoreSettings(nsfw="none", device="cpu"), FilterRules()),
    "filter --nsfw null": lambda: FilterStep(ScoreSettings(nsfw="null", device="cpu"), FilterRules()),
    "crop": lambda: CropStep(crop_settings(False)),
    "crop --preprocess fast": lambda: CropStep(crop_settings(True)),
    "bin": lambda: BinStep(
        BinSettings(ocr="null", detector="null", captioner="null", clip="null", device="cpu")
    ),
}


def run_steps(source: str | Path, work: Path, n: int, names: list[str], workers: list[int]) -> list[Measure]:
    """Each step end to end through the runner (scan, prepare pool, process, commits, finish)."""
    out = []
    for name in names:
        for w in workers:
            table = fresh(source, work, name.split()[0])
            step = STEPS[name]()
            opts = RunOptions(workers=w, batch_size=32 if name.startswith("filter") else 16)
            out.append(timed(name, w, n, partial(run_step, table, step, opts)))
            print(
                f"  {name:<24} --workers {w}: {out[-1].images / out[-1].wall:7.1f} images/s wall", flush=True
            )
    return out


def run_exports(cropped: str, work: Path, n: int, workers: list[int]) -> list[Measure]:
    """`vl export --images` of the crop views (JPEG sources: re-encoded as JPEG)."""
    out = []
    for w in workers:
        target = work / f"export-{time.monotonic_ns()}"
        table = Table.open(str(cropped))
        out.append(timed("export --images", w, n, partial(export, table, images=target, workers=w)))
        print(f"  export --images          --workers {w}: {out[-1].images / out[-1].wall:7.1f} images/s wall")
        shutil.rmtree(target, ignore_errors=True)
    return out


def rows_of(table: Table, step: Step) -> list[dict[str, Any]]:
    """The rows a step reads (its optional columns where the table has them), as dicts."""
    names = [*step.reads, *(c for c in getattr(step, "optional_reads", ()) if c in table.schema.names)]
    rows: list[dict[str, Any]] = table.to_arrow(names).to_pylist()
    return rows


@dataclass
class Phases:
    """CPU seconds of a serial pass's phases (under cProfile), and how many images it took."""

    images: int
    prepare: float = 0.0
    process: float = 0.0

    def line(self, name: str) -> str:
        """Per-image cost of each phase, and the images per CPU-second of prepare alone."""
        prep, proc = 1000 * self.prepare / self.images, 1000 * self.process / self.images
        return (
            f"{name:<24} prepare {prep:7.2f} ms/image ({1000 / prep if prep else 0:6.1f} images/CPU-s), "
            f"process {proc:7.2f} ms/image"
        )


def serial_pass(step: Step, rows: list[dict[str, Any]], batch: int, phases: Phases) -> None:
    """The step's per-row work in this thread: prepare every row, process in batches (no commits)."""
    cpu = time.process_time()
    items = [step.prepare(r) for r in rows]
    phases.prepare += time.process_time() - cpu
    cpu = time.process_time()
    for start in range(0, len(items), batch):
        step.process(items[start : start + batch])
    phases.process += time.process_time() - cpu


def profile(run: Callable[[], Any], images: int, top: int) -> list[str]:
    """Top functions by cumulative time of `run`, in ms per image."""
    prof = cProfile.Profile(
        time.process_time
    )  # CPU time: other processes' load on a shared machine is not ours
    prof.runcall(run)
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, func), (_, calls, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = Path(file).name if file.startswith("/") else file
        rows.append((cum, calls, f"{func} ({where}:{line})"))
    rows.sort(reverse=True)
    skip = ("runcall", "<listcomp>", "serial_pass", "export_rows")
    kept = [r for r in rows if not r[2].startswith(skip)][:top]
    return [f"    {1000 * cum / images:8.2f} ms/image  {calls:7d} calls  {what}" for cum, calls, what in kept]


def profiles(
    source: str, cropped: str, n: int, names: list[str], top: int
) -> tuple[dict[str, list[str]], dict[str, Phases]]:
    """One serial, profiled pass over `n` rows per step (and of export's per-row render), with phases."""
    out: dict[str, list[str]] = {}
    phases: dict[str, Phases] = {}
    for name in names:
        step = STEPS[name]()
        step.setup()
        rows = rows_of(Table.open(source), step)[:n]
        batch = 32 if name.startswith("filter") else 16
        phases[name] = p = Phases(len(rows))
        out[name] = profile(partial(serial_pass, step, rows, batch, p), len(rows), top)
    table = Table.open(cropped)
    rows = table.to_arrow([ID.name, IMAGE.name, CROP_BOX.name]).to_pylist()[:n]
    options = ViewOptions()

    def export_rows() -> None:
        cpu = time.process_time()
        for r in rows:
            render(r["image"], tuple(r["crop_box"]) if r["crop_box"] else None, options)
        phases["export --images"].prepare += time.process_time() - cpu

    phases["export --images"] = Phases(len(rows))
    out["export --images"] = profile(export_rows, len(rows), top)
    return out, phases


def launch(cmd: list[str], repeat: int = 3) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (the child's, all threads) of a command."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def startup(source: str | Path, work: Path) -> dict[str, tuple[float, float]]:
    """`vl --help` and `vl crop --backend null --limit 1`: wall and CPU seconds."""
    table = fresh(source, work, "startup")
    crop = [*VL, "crop", str(table.path), "--backend", "null", "--device", "cpu", "--limit", "1"]
    return {
        "vl --help": launch([*VL, "--help"]),
        "vl crop --backend null --limit 1 (launch to first batch committed)": launch(crop),
        "python -c 'import torch' (inside the line above: crop's tensors need it)": launch(
            [sys.executable, "-c", "import torch"]
        ),
    }


def report(
    measures: list[Measure],
    starts: dict[str, tuple[float, float]],
    prof: dict[str, list[str]],
    phases: dict[str, Phases],
    n: int,
) -> None:
    """The results table, targets beside, then the profiles."""
    print(f"\n{n} generated {SIZE[0]}x{SIZE[1]} JPEGs, null models, CPU")
    print(f"{'step':<24} {'workers':>7} {'images/s wall':>14} {'images/CPU-s':>13} {'target/core':>12}  met")
    for m in measures:
        target = TARGETS.get(m.name)
        met = "" if target is None else ("yes" if m.per_core >= target else "NO")
        shown = f"{target:.0f}" if target else "-"
        print(
            f"{m.name:<24} {m.workers:>7} {m.images / m.wall:>14.1f} {m.per_core:>13.1f} {shown:>12}  {met}"
        )
    for what, (seconds, cpu) in starts.items():
        target = HELP_TARGET_S if what == "vl --help" else FIRST_BATCH_TARGET_S
        met = f" (target <= {target} s: {'yes' if min(seconds, cpu) <= target else 'NO'})"
        print(f"{what}: {seconds:.2f} s wall, {cpu:.2f} s CPU{met if what.startswith('vl') else ''}")
    print("\nper phase, one serial pass in one thread (under cProfile; prepare = decode, resize, cut, hash):")
    for name, p in phases.items():
        print(p.line(name))
    for name, lines in prof.items():
        print(f"\nprofile, {name} (one serial pass, cumulative):")
        print("\n".join(lines))


def main() -> None:
    """Parse the options, build or reuse the corpus, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=500, help="images (default 500)")
    parser.add_argument("--workers", default="1,2", help="prepare workers to try (default 1,2)")
    parser.add_argument("--steps", default="filter,crop,bin,export", help="which of filter,crop,bin,export")
    parser.add_argument("--top", type=int, default=12, help="functions per profile")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiles")
    parser.add_argument(
        "--profile-n", type=int, default=100, help="images in each profiled pass (default 100)"
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()), help="corpus folder")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    wanted = args.steps.split(",")
    names = [
        s for s in STEPS if s.split()[0] in wanted and (s != "crop --preprocess fast" or has_fast_crop())
    ]
    if "crop" in wanted and not has_fast_crop():
        print("crop --preprocess fast: not measured (the crop step has no `preprocess` setting yet)")
    source = corpus(args.n, args.cache)
    with tempfile.TemporaryDirectory(prefix="vl-ceilings-") as tmp:
        work = Path(tmp)
        measures = run_steps(source, work, args.n, names, workers)
        cropped = fresh(source, work, "cropped")
        run_step(cropped, STEPS["crop"](), RunOptions(workers=2))
        if "export" in wanted:
            measures += run_exports(cropped.path, work, args.n, workers)
        starts = startup(source, work)
        prof, phases = (
            ({}, {})
            if args.no_profile
            else profiles(str(source), cropped.path, args.profile_n, names, args.top)
        )
        report(measures, starts, prof, phases, args.n)


if __name__ == "__main__":
    main()
