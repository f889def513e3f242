"""`vl export TABLE --hf DIR | --parquet DIR`: rows as a Hugging Face dataset or Parquet shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vlcli.cli.common import Quiet, RichProgress, console, handles_errors
from vlcli.cli.status import human_bytes
from vlcli.export import DEFAULT_SHARD_ROWS, ExportReport, export
from vlcli.storage import Table


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
    quiet: Quiet = False,
) -> None:
    """Export rows with their original image bytes; by default only rows with ingest_status = 'ok'."""
    report = export(
        Table.open(table),
        hf=hf,
        parquet=parquet,
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
    """Print what was written and how to load it."""
    console.print(
        f"exported [bold]{report.rows:,}[/] rows to {escape(report.target)} ({len(report.files)} files, "
        f"{human_bytes(report.bytes_written)}) in {report.seconds:.1f}s",
        highlight=False,
    )
    console.print(
        f"columns: {', '.join(report.columns)}", markup=False, highlight=False, soft_wrap=True, style="dim"
    )
    console.print(
        f"load it with: import datasets; ds = {report.load_hint()}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
