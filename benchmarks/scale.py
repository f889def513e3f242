"""Scale-out on one machine: `vl crop` with a tiny DINOv2 on generated photos, one process vs
`--procs 2` vs `--engine ray`, same table each time.

Reports rows/s (median of --repeat runs, and the ratio to one process in the same run), split into the
start-up (launch to the first committed batch: worker processes or Ray actors importing and loading the
model) and the steady rate after it, bytes written,
whether the image data files were left untouched and whether every mode wrote the same step columns.
Then the driver's commit cost per row and bytes per commit, the inputs of docs/scaling.md's estimate.

Targets (issue 13): --procs 2 >= 0.9x one process using both cores; Ray >= 0.8x; identical outputs.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vlcli.demo.samples import draw_scene
from vlcli.steps.base import RunOptions
from vlcli.steps.crop.step import CropSettings, CropStep
from vlcli.steps.runner import run_step
from vlcli.table.schema import CROP_BOX, CROP_SCORE, ID, ingest_schema, status_column
from vlcli.table.storage import Table
from vlcli.testing.tiny_models import tiny_dinov2

CROP_STATUS = status_column("crop")
MODES = ("local", "procs2", "ray")


def build(path: Path, images: int, fragment_rows: int, size: tuple[int, int]) -> None:
    """A table of `images` generated photos (JPEG), appended in fragments of `fragment_rows`."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import table_rows

    rng, noise = random.Random(0), np.random.default_rng(0)
    table = Table.create(path, ingest_schema())
    for start in range(0, images, fragment_rows):
        blobs = []
        for _ in range(min(fragment_rows, images - start)):
            buf = io.BytesIO()
            draw_scene(rng, noise, size).save(buf, "JPEG", quality=90)
            blobs.append(buf.getvalue())
        table.append(table_rows(blobs))


def image_files(path: Path) -> dict[str, int]:
    """The data files of the table and their sizes (the image column lives in the first ones)."""
    return {p.name: p.stat().st_size for p in (path / "data").glob("*.lance")}


def options(mode: str, batch: int) -> RunOptions:
    """The runner options of one mode, each using both cores."""
    base = RunOptions(batch_size=batch, workers=2, commit_seconds=5.0)
    if mode == "procs2":
        return replace(base, procs=2)
    if mode == "ray":
        return replace(base, engine="ray", workers=1)
    return base


class Clock:
    """A progress sink that notes when the first rows were committed: start-up vs steady state."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.first_rows = 0

    def start(self, step: str, total: int | None) -> None:
        """Nothing to draw."""

    def advance(self, rows: int, errors: int) -> None:
        """Note the first batch's time and size."""
        if self.first is None:
            self.first, self.first_rows = time.perf_counter(), rows

    def finish(self) -> None:
        """Nothing to close."""


def run_once(
    mode: str, source: Path, work: Path, model: str, batch: int, resize_to: int, crops: int
) -> dict[str, Any]:
    """Copy the source table, crop it in `mode`; rows/s, bytes written, outputs."""
    path = work / f"{mode}-{time.monotonic_ns()}.lance"
    shutil.copytree(source, path)
    table = Table.open(str(path))
    files_before = image_files(path)
    size_before = table.size_on_disk()
    step = CropStep(
        CropSettings(model=model, resize_to=resize_to, num_crops=crops, device="cpu", dtype="fp32")
    )
    clock = Clock()
    started = time.perf_counter()
    report = run_step(table, step, options(mode, batch), clock)
    ended = time.perf_counter()
    seconds = ended - started
    first = clock.first or ended
    steady = (report.processed - clock.first_rows) / max(ended - first, 1e-9)
    table.refresh()
    outputs = (
        table.lazy().select(ID.name, CROP_BOX.name, CROP_SCORE.name, CROP_STATUS.name).collect().sort(ID.name)
    )
    after = image_files(path)
    untouched = all(after.get(name) == size for name, size in files_before.items())
    return {
        "rows_per_s": report.processed / seconds,
        "startup_s": first - started,
        "steady_rows_per_s": steady,
        "bytes_written": table.size_on_disk() - size_before,
        "images_untouched": untouched,
        "outputs": outputs,
        "done": report.done,
    }


def commit_cost(work: Path, rows: int = 20_000, window: int = 4096) -> tuple[float, int]:
    """The driver's cost of committing crop results in windows of `window` rows (the default commit
    window): seconds per row and bytes written per commit, on a table of `rows` rows."""
    table = Table.create(str(work / "commit.lance"), ingest_schema())
    ids = [f"{i:032x}" for i in range(rows)]
    for start in range(0, rows, 1000):
        part = ids[start : start + 1000]
        table.append(
            pa.table({ID.name: part, "image": [b"x" * 64] * len(part), "ingest_status": ["ok"] * len(part)})
        )
    table.ensure_columns([CROP_BOX.field(), CROP_SCORE.field(), CROP_STATUS.field()])
    size, seconds, commits = table.size_on_disk(), 0.0, 0
    shuffled = random.Random(0).sample(ids, len(ids))  # results arrive in any order across workers
    for start in range(0, rows, window):
        chunk = shuffled[start : start + window]
        results = pa.table(
            {
                ID.name: chunk,
                CROP_BOX.name: pa.array([[0, 0, 10, 10]] * len(chunk), CROP_BOX.type),
                CROP_SCORE.name: pa.array([0.5] * len(chunk), CROP_SCORE.type),
                CROP_STATUS.name: ["ok"] * len(chunk),
            }
        )
        began = time.perf_counter()
        table.write_back(results)
        seconds += time.perf_counter() - began
        commits += 1
    return seconds / rows, (table.size_on_disk() - size) // commits


def cli_rates(source: Path, work: Path, model: str, args: argparse.Namespace) -> dict[str, float]:
    """Rows/s of `vl crop` as a user runs it (imports, model load and all) in one process and with
    --procs 2, each on a fresh copy of the table, interleaved --repeat times (medians)."""
    flags = {"local": ["--workers", "2"], "procs2": ["--procs", "2"]}
    rates: dict[str, list[float]] = {mode: [] for mode in flags}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for rep in range(args.repeat):
        for mode, extra in flags.items():
            path = work / f"cli-{mode}-{rep}.lance"
            shutil.copytree(source, path)
            command = [
                sys.executable,
                "-m",
                "vlcli.cli",
                "crop",
                str(path),
                "--model",
                model,
                "--device",
                "cpu",
            ]
            command += ["--resize-to", str(args.resize_to), "--num-crops", str(args.num_crops), "-q", *extra]
            began = time.perf_counter()
            subprocess.run(command, check=True, env=env, capture_output=True)
            rates[mode].append(args.images / (time.perf_counter() - began))
    return {mode: statistics.median(r) for mode, r in rates.items()}


def main() -> None:
    """Run each mode --repeat times and print medians, ratios and the output check."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--fragment-rows", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", default="1600x1200", help="generated photo size, WxH")
    parser.add_argument("--resize-to", type=int, default=1024, help="crop's short side before cutting")
    parser.add_argument("--num-crops", type=int, default=15)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--cli", action="store_true", help="also time `vl crop` vs `vl crop --procs 2` as commands"
    )
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if "ray" in modes:
        try:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        except ImportError:
            print("ray is not installed (pip install 'vlcli[ray]'): skipping --engine ray")
            modes.remove("ray")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = tiny_dinov2(work / "dinov2")
        source = work / "source.lance"
        width, height = (int(v) for v in args.size.split("x"))
        build(source, args.images, args.fragment_rows, (width, height))
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
        for _ in range(args.repeat):
            for mode in modes:  # interleaved, so drift on a noisy machine hits every mode alike
                runs[mode].append(
                    run_once(mode, source, work, model, args.batch_size, args.resize_to, args.num_crops)
                )
        base = statistics.median(r["rows_per_s"] for r in runs[modes[0]])
        steady_base = statistics.median(r["steady_rows_per_s"] for r in runs[modes[0]])
        reference = runs[modes[0]][0]["outputs"]
        print(
            f"{args.images} photos {args.size}, tiny DINOv2, resize to {args.resize_to}, {args.num_crops} crops, "
            f"{os.cpu_count()} CPUs, median of {args.repeat}"
        )
        print(
            f"{'mode':8} {'rows/s':>8} {'ratio':>6} {'start s':>8} {'steady/s':>9} {'ratio':>6} "
            f"{'MB written':>10} {'images untouched':>16} {'same output':>11}"
        )
        for mode in modes:
            rate = statistics.median(r["rows_per_s"] for r in runs[mode])
            written = statistics.median(r["bytes_written"] for r in runs[mode]) / 1e6
            untouched = all(r["images_untouched"] for r in runs[mode])
            same = all(r["outputs"].equals(reference) for r in runs[mode])
            startup = statistics.median(r["startup_s"] for r in runs[mode])
            steady = statistics.median(r["steady_rows_per_s"] for r in runs[mode])
            print(
                f"{mode:8} {rate:8.1f} {rate / base:6.2f} {startup:8.1f} {steady:9.1f} {steady / steady_base:6.2f} "
                f"{written:10.2f} {untouched!s:>16} {same!s:>11}"
            )
        if args.cli:
            rates = cli_rates(source, work, model, args)
            print(
                f"vl crop as a command: {rates['local']:.1f} rows/s; --procs 2: {rates['procs2']:.1f} rows/s "
                f"({rates['procs2'] / rates['local']:.2f}x)"
            )
        per_row, per_commit = commit_cost(work)
        print(
            f"driver commit: {per_row * 1e6:.1f} us per row, {per_commit / 1e3:.1f} kB per commit of 4,096 rows"
        )
        print(f"single committer limit at this cost: {1 / per_row:,.0f} rows/s")


if __name__ == "__main__":
    main()
