"""`vl demo` as a library: generate a sample folder, ingest it, run the whole pipeline, write the review page."""

from __future__ import annotations

import os
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlcli.demo.samples import MIN_IMAGES, SampleSet, write_samples
from vlcli.errors import UsageError
from vlcli.ingestion.ingest import IngestReport, ingest
from vlcli.review.page import write_review
from vlcli.run.config import Settings
from vlcli.run.pipeline import resolve, run_pipeline
from vlcli.steps.base import Progress, StepReport
from vlcli.steps.bin.step import BinReport
from vlcli.steps.filter.step import FilterReport
from vlcli.table.storage import Table

DEFAULT_DIRECTORY = "vl-demo"
DEFAULT_IMAGES = 48
DATASET = "demo"
TABLE_NAME = "demo.lance"
EXPORT_NAME = "demo-export"  # where the printed `vl export` hint writes; --overwrite clears it too

ProgressFactory = Callable[[], Progress]
MODELS_NAME = "models"  # DIR/models: where earlier versions built the tiny models (--overwrite removes it)
REVIEW_NAME = "review.html"

# Every step, in pipeline order: the filter runs first (nudenet's real model ships in its wheel), so no
# model time goes on rejects; OCR in the bin step uses the real models shipped in the rapidocr wheel.
DEMO_STEPS: tuple[str, ...] = ("filter", "crop", "bin", "synth", "validate")


# No LLM server is assumed: the in-process stand-in writes the Q/A (not meaningful). The offline preset
# has it already; with --real-models it is set on top of the default preset.
STUB_LLM = {"backend": "stub", "model": "stub"}


def demo_settings(real_models: bool) -> Settings:
    """`vl run` settings of the demo: exactly those of `resume_command`, so that command resumes the
    demo's table instead of redoing steps (the offline preset's tiny models live in its own folder)."""
    layer: Settings = {"run": {"preset": "default" if real_models else "offline", "steps": list(DEMO_STEPS)}}
    if real_models:
        layer["synth"] = dict(STUB_LLM)
    return resolve(layer, None)


def resume_command(table: Path, real_models: bool) -> str:
    """The `vl run` command with the demo's settings: rerun on the demo's table, it has nothing to do."""
    if not real_models:
        return f"vl run {shlex.quote(str(table))} --preset offline"
    stub = " ".join(f"--set synth.{k}={v}" for k, v in STUB_LLM.items())
    return f"vl run {shlex.quote(str(table))} {stub}"


@dataclass
class DemoResult:
    """What a demo run wrote and did."""

    directory: Path
    images: Path  # the generated folder, DIR/data/demo/train
    table: Path  # DIR/demo.lance
    samples: SampleSet
    ingest: IngestReport
    steps: list[StepReport] = field(default_factory=list)
    decisions: FilterReport | None = None
    bins: BinReport | None = None
    run: dict[str, Any] = field(default_factory=dict)  # the summary `vl run` stored on the table
    review: Path | None = None  # DIR/review.html
    seconds: float = 0.0
    resume: str = ""  # the `vl run` command that resumes the table (it finds nothing left to do)


def demo_paths(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Where the demo writes: the image folder (data/<dataset>/train layout) and the table."""
    root = Path(directory)
    return root / "data" / DATASET / "train", root / TABLE_NAME


def _prepare_directory(directory: Path, overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} is a file, not a folder: choose another DIR")
    if not directory.exists() or not any(directory.iterdir()):
        return
    if not overwrite:
        raise UsageError(
            f"{directory} is not empty: pass --overwrite to replace the demo there, or choose another DIR"
        )
    # Remove only what the demo itself writes: --overwrite on a folder with other files must not delete them.
    images, table = demo_paths(directory)
    for path in (
        images.parent,
        table,
        directory / EXPORT_NAME,
        directory / MODELS_NAME,
        directory / REVIEW_NAME,
    ):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_demo(
    directory: str | os.PathLike[str] = DEFAULT_DIRECTORY,
    n: int = DEFAULT_IMAGES,
    seed: int = 0,
    overwrite: bool = False,
    progress_factory: ProgressFactory | None = None,
    real_models: bool = False,
) -> DemoResult:
    """Write `n` generated images under `directory`, ingest them into a table, run every demo step.

    Without `real_models` the model steps use tiny random-weight stand-ins (see `vlcli.testing.tiny_models`), so
    the demo runs with no model hub; their outputs are not meaningful.
    """
    if n < MIN_IMAGES:
        raise UsageError(f"--images must be at least {MIN_IMAGES} (one of each kind of sample), got {n}")
    started = time.perf_counter()
    root = Path(directory)
    _prepare_directory(root, overwrite)
    images, table_path = demo_paths(root)
    samples = write_samples(images, n, seed)
    # Only the generated folder: other data/<name>/ folders in DIR are not the demo's. Its files sit
    # under data/demo/train/, so ingest names their dataset "demo".
    report = ingest(images, table_path, progress=_progress(progress_factory))
    pipeline = run_pipeline(table_path, demo_settings(real_models), progress_factory=progress_factory)
    steps = pipeline.steps
    review = Path(write_review(Table.open(table_path), root / REVIEW_NAME).path) if steps else None
    return DemoResult(
        directory=root,
        images=images,
        table=table_path,
        samples=samples,
        ingest=report,
        steps=steps,
        decisions=next((r.summary for r in steps if isinstance(r.summary, FilterReport)), None),
        bins=next((r.summary for r in steps if isinstance(r.summary, BinReport)), None),
        run=pipeline.summary,
        review=review,
        seconds=time.perf_counter() - started,
        resume=resume_command(table_path, real_models),
    )


def _progress(factory: ProgressFactory | None) -> Progress | None:
    return factory() if factory is not None else None
