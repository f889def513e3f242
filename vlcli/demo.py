"""`vl demo` as a library: generate a sample folder, ingest it, run every step the demo knows."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vlcli.errors import UsageError
from vlcli.ingest import IngestReport, ingest
from vlcli.samples import MIN_IMAGES, SampleSet, write_samples
from vlcli.steps.base import Progress, Step, StepReport, run_step
from vlcli.steps.bin import BinReport, BinSettings, BinStep
from vlcli.steps.crop import CropSettings, CropStep
from vlcli.steps.filter import FilterReport, FilterStep
from vlcli.storage import Table
from vlcli.tiny_models import tiny_blip, tiny_clip, tiny_dinov2

DEFAULT_DIRECTORY = "vl-demo"
DEFAULT_IMAGES = 48
DATASET = "demo"
TABLE_NAME = "demo.lance"
EXPORT_NAME = "demo-export"  # where the printed `vl export` hint writes; --overwrite clears it too

ProgressFactory = Callable[[], Progress]
MODELS_NAME = "models"  # DIR/models: the tiny offline stand-ins, built once


@dataclass(frozen=True)
class DemoModels:
    """Which models the demo's steps load: tiny offline stand-ins, or the real defaults."""

    real: bool
    folder: Path

    def crop(self) -> CropSettings:
        """Crop settings: the real default model, or a tiny random DINOv2 built offline."""
        if self.real:
            return CropSettings()
        # The samples are ~640 px: a 512 short side keeps the demo quick on a laptop CPU.
        return CropSettings(model=tiny_dinov2(self.folder / "tiny-dinov2"), resize_to=512)

    # Every step that exists, in pipeline order; adding one is one line.
    def bin(self) -> BinSettings:
        """Bin settings: the real defaults, or the shipped OCR models plus random/tiny stand-ins."""
        if self.real:
            return BinSettings()
        return BinSettings(
            detector="yolov8n.yaml",  # ultralytics builds it with random weights, no download
            captioner=tiny_blip(self.folder / "tiny-blip"),
            clip=tiny_clip(self.folder / "tiny-clip"),
            decode_side=640,
        )


# The filter runs first (nudenet's real model ships in its wheel), so no model time goes on rejects;
# OCR in the bin step uses the real models shipped in the rapidocr wheel.
DEMO_STEPS: tuple[Callable[[DemoModels], Step], ...] = (
    lambda models: FilterStep(),
    lambda models: CropStep(models.crop()),
    lambda models: BinStep(models.bin()),
)


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
    seconds: float = 0.0


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
    for path in (images.parent, table, directory / EXPORT_NAME, directory / MODELS_NAME):
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

    Without `real_models` the model steps use tiny random-weight stand-ins (see `vlcli.tiny_models`), so
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
    table = Table.open(table_path)
    models = DemoModels(real=real_models, folder=root / MODELS_NAME)
    steps = [run_step(table, make(models), None, _progress(progress_factory)) for make in DEMO_STEPS]
    decisions = next((r.summary for r in steps if isinstance(r.summary, FilterReport)), None)
    bins = next((r.summary for r in steps if isinstance(r.summary, BinReport)), None)
    return DemoResult(
        directory=root,
        images=images,
        table=table_path,
        samples=samples,
        ingest=report,
        steps=steps,
        decisions=decisions,
        bins=bins,
        seconds=time.perf_counter() - started,
    )


def _progress(factory: ProgressFactory | None) -> Progress | None:
    return factory() if factory is not None else None
