"""`vl crop TABLE`: DINOv2 smart crop of every pending row."""

from __future__ import annotations

from typing import Annotated

import typer

from vlcli.cli.common import StepFlags, handles_errors, step_flags
from vlcli.cli.render import render
from vlcli.steps.crop.step import SPEC, CropSettings, CropStep, parse_aspects, parse_scales
from vlcli.steps.runner import run_step
from vlcli.table.storage import Table


@handles_errors
@step_flags(SPEC.batch_size)
def command(
    table: Annotated[
        str,
        typer.Argument(help="The vl table: a .lance folder or a Lance URI (s3://, gs://, az://, file://)."),
    ],
    model: Annotated[str, typer.Option(help="DINOv2/DINOv3 checkpoint: a hub id or a local folder.")] = (
        "facebook/dinov2-base"
    ),
    revision: Annotated[str | None, typer.Option(help="Model revision (branch, tag or commit).")] = None,
    backend: Annotated[
        str, typer.Option(help="Embedder backend: transformers, or null (no model: measures the pipeline).")
    ] = "transformers",
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
    preprocess: Annotated[
        str,
        typer.Option(
            help="exact: PIL decode and resize to R, as the seed (boxes identical); fast: decode at a "
            "reduced JPEG scale and resize once, on the device, to the model's input (~5x less CPU)."
        ),
    ] = "exact",
    decode: Annotated[
        str,
        typer.Option(
            help="cpu, or gpu: decode JPEGs on the CUDA device in batches (needs --preprocess fast; "
            "other formats decode on the CPU)."
        ),
    ] = "cpu",
    *,
    flags: StepFlags,
) -> None:
    """Smart crop: embed N candidate crops and the full image, keep the crop most like the whole.

    Writes crop_box (original pixels), crop_score, embedding and crop_status; never rewrites images.
    """
    settings = CropSettings(
        model=model,
        revision=revision,
        backend=backend,
        resize_to=resize_to,
        num_crops=num_crops,
        aspects=parse_aspects(aspect),
        scales=parse_scales(scales),
        min_score=min_score,
        min_side=min_side,
        keep_embedding=embedding,
        preprocess=preprocess,
        decode=decode,
        device=flags.device,
        dtype=flags.dtype,
        trust_remote_code=flags.trust_remote_code,
    )
    opts = flags.options(SPEC.batch_size)
    report = run_step(Table.open(table), CropStep(settings), opts, flags.progress())
    render(report)
