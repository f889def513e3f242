"""`vl export TABLE --hf DIR | --parquet DIR | --images DIR`: a Hugging Face dataset, Parquet shards or
image files, with each row's crop view."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vlcli.cli.common import Quiet, RichProgress, console, handles_errors
from vlcli.cli.status import human_bytes
from vlcli.export import DEFAULT_SHARD_ROWS, ExportReport, export
from vlcli.storage import Table
from vlcli.views import ViewOptions


@handles_errors
def command(
    table: Annotated[Path, typer.Argument(help="The table (a Lance folder).")],
    hf: Annotated[
        Path | None,
        typer.Option(
            "--hf", metavar="DIR", help="Write a `datasets` dataset (save_to_disk) into this folder."
        ),
    ] = None,
    parquet: Annotated[
        Path | None, typer.Option("--parquet", metavar="DIR", help="Write part-NNNNN.parquet shards here.")
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            metavar="DIR",
            help="Write one image file per row here: <id>.<ext>, in <dataset>/ folders when the rows span "
            "several datasets.",
        ),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            "--where", metavar="SQL", help="SQL predicate selecting rows, e.g. \"dataset = 'charts'\"."
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns", metavar="A,B", help="Comma-separated columns (id and image always come along)."
        ),
    ] = None,
    no_image: Annotated[bool, typer.Option("--no-image", help="Leave the image bytes out.")] = False,
    all_rows: Annotated[
        bool, typer.Option("--all-rows", help="Also export rows whose ingest failed (their image is null).")
    ] = False,
    shard_rows: Annotated[
        int, typer.Option("--shard-rows", min=1, help="Rows per output shard.")
    ] = DEFAULT_SHARD_ROWS,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a previous export in the folder.")
    ] = False,
    no_crop: Annotated[
        bool, typer.Option("--no-crop", help="Export whole images even where crop_box is set.")
    ] = False,
    size: Annotated[
        int | None,
        typer.Option(
            "--size",
            metavar="R",
            min=1,
            help="Resize so the short side is R (antialiased; smaller images keep their size unless --upscale).",
        ),
    ] = None,
    upscale: Annotated[
        bool, typer.Option("--upscale", help="With --size, also enlarge smaller images.")
    ] = False,
    image_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="png|jpg",
            help="Encode images as png or jpg (default: jpg for JPEG sources, png for the rest; whole images "
            "that need no change keep their original bytes).",
        ),
    ] = None,
    quality: Annotated[
        int, typer.Option("--quality", min=1, max=100, help="JPEG quality of re-encoded images.")
    ] = 95,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Threads that crop, resize and encode images (default: one per core, at most 8).",
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Export rows, each image as its crop view where crop_box is set (the original bytes elsewhere);
    by default only rows with ingest_status = 'ok'."""
    report = export(
        Table.open(table),
        hf=hf,
        parquet=parquet,
        images=images,
        view=ViewOptions(crop=not no_crop, size=size, format=image_format, quality=quality, upscale=upscale),
        workers=workers,
        where=where,
        columns=columns.split(",") if columns is not None else None,
        image=not no_image,
        all_rows=all_rows,
        shard_rows=shard_rows,
        overwrite=overwrite,
        progress=RichProgress(enabled=False if quiet else None),
    )
    render(report)


def render(report: ExportReport) -> None:
    """Print what was written, what was skipped and how to load it."""
    cropped = f", {report.cropped:,} cropped" if report.cropped else ""
    console.print(
        f"exported [bold]{report.rows:,}[/] rows{cropped} to {escape(report.target)} ({report.file_count:,} "
        f"files, {human_bytes(report.bytes_written)}) in {report.seconds:.1f}s",
        highlight=False,
    )
    if report.skipped:
        reasons = ", ".join(f"{reason} ({n:,})" for reason, n in report.skipped.most_common())
        console.print(
            f"[yellow]skipped {sum(report.skipped.values()):,} rows:[/] {escape(reasons)}",
            highlight=False,
            soft_wrap=True,
        )
    if report.by_dataset:
        console.print("one folder per dataset", style="dim", highlight=False)
    if report.columns:
        console.print(
            f"columns: {', '.join(report.columns)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
            style="dim",
        )
    console.print(
        f"load it with: import datasets; ds = {report.load_hint()}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
