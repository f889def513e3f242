"""`vl crop TABLE`: DINOv2 smart crop of every pending row."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vlcli.cli.common import (
    BatchSize,
    CommitSeconds,
    Device,
    Dtype,
    Limit,
    Pool,
    Quiet,
    Redo,
    RetryErrors,
    RichProgress,
    TrustRemoteCode,
    Workers,
    handles_errors,
    print_report,
    run_options,
)
from vlcli.steps.base import run_step
from vlcli.steps.crop import CropSettings, CropStep, parse_aspects, parse_scales
from vlcli.storage import Table


@handles_errors
def command(
    table: Annotated[Path, typer.Argument(help="The vl table (a .lance folder).")],
    model: Annotated[str, typer.Option(help="DINOv2/DINOv3 checkpoint: a hub id or a local folder.")] = (
        "facebook/dinov2-base"
    ),
    revision: Annotated[str | None, typer.Option(help="Model revision (branch, tag or commit).")] = None,
    num_crops: Annotated[int, typer.Option("--num-crops", min=1, help="Candidates per image.")] = 15,
    resize_to: Annotated[int, typer.Option("--resize-to", min=16, help="Short side before cropping.")] = 1024,
    aspect: Annotated[
        str, typer.Option(help="Candidate aspect ratios, e.g. 1:1,4:3,16:9 (default: the seed's squares).")
    ] = "1:1",
    scales: Annotated[
        str, typer.Option(help="Candidate scales of the largest fitting box, e.g. 1.0,0.8.")
    ] = "1.0",
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Below this similarity keep the whole image.")
    ] = None,
    min_side: Annotated[
        int, typer.Option("--min-side", min=1, help="Skip images with a smaller short side.")
    ] = 32,
    embedding: Annotated[bool, typer.Option(help="Store the full image's embedding.")] = True,
    device: Device = "auto",
    dtype: Dtype = "auto",
    trust_remote_code: TrustRemoteCode = False,
    batch_size: BatchSize = 8,
    limit: Limit = None,
    retry_errors: RetryErrors = False,
    redo: Redo = False,
    workers: Workers = 2,
    pool: Pool = "thread",
    commit_seconds: CommitSeconds = 10.0,
    quiet: Quiet = False,
) -> None:
    """Smart crop: embed N candidate crops and the full image, keep the crop most like the whole.

    Writes crop_box (original pixels), crop_score, embedding and crop_status; never rewrites images.
    """
    settings = CropSettings(
        model=model,
        revision=revision,
        resize_to=resize_to,
        num_crops=num_crops,
        aspects=parse_aspects(aspect),
        scales=parse_scales(scales),
        min_score=min_score,
        min_side=min_side,
        keep_embedding=embedding,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
    )
    opts = run_options(batch_size, limit, retry_errors, workers, pool, redo, commit_seconds)
    handle = Table.open(table)
    report = run_step(handle, CropStep(settings), opts, RichProgress(enabled=None if not quiet else False))
    print_report(report)
