"""`vl show TABLE --out review.html`: one self-contained HTML page to review a table in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vlcli.cli.common import Quiet, RichProgress, TableArg, handles_errors
from vlcli.cli.render import render
from vlcli.review.page import DEFAULT_LIMIT, DEFAULT_THUMB_SIZE, write_review
from vlcli.table.storage import Table


@handles_errors
def command(
    table: TableArg,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="FILE", help="The HTML file to write (replaced if present)."),
    ] = Path("review.html"),
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            metavar="SQL",
            help="SQL predicate selecting the rows shown, e.g. \"filter_reason = 'duplicate'\" (default: all).",
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", min=0, help="Show at most N cards (the header counts still cover the whole table)."
        ),
    ] = DEFAULT_LIMIT,
    thumb_size: Annotated[
        int,
        typer.Option("--thumb-size", min=32, max=1024, help="Long side of the embedded JPEG thumbnails."),
    ] = DEFAULT_THUMB_SIZE,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Threads that decode thumbnails (default: one per core, at most 8)."
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Write one self-contained HTML page to review the table in a browser.

    Counts per step and reason over the whole table; then a card per row: the thumbnail with its crop box,
    the filter verdict, near-duplicates side by side, bin, OCR text, objects, caption and each Q/A with its
    validation; filters by bin, reason and validity in the page. Nothing is loaded from the network."""
    report = write_review(
        Table.open(table),
        out,
        where=where,
        limit=limit,
        thumb_size=thumb_size,
        workers=workers,
        progress=RichProgress(enabled=False if quiet else None),
    )
    render(report)
