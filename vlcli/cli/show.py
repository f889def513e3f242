"""`vl show TABLE --out review.html`: one self-contained HTML page to review a table in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vlcli.cli.common import Quiet, RichProgress, console, handles_errors
from vlcli.cli.status import human_bytes
from vlcli.review import DEFAULT_LIMIT, DEFAULT_THUMB_SIZE, write_review
from vlcli.review_cards import ReviewReport
from vlcli.storage import Table


@handles_errors
def command(
    table: Annotated[Path, typer.Argument(help="The table (a Lance folder).")],
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


def render(report: ReviewReport) -> None:
    """Print what the page holds, then its path on a line of its own."""
    of = f"of {report.selected:,} selected rows" if report.where else f"of {report.rows:,} rows"
    context = f" (+{report.context:,} kept twins)" if report.context else ""
    console.print(
        f"review page: [bold]{report.cards:,}[/] cards {of}{context}, {human_bytes(report.bytes_written)}, "
        f"in {report.seconds:.1f}s",
        highlight=False,
    )
    if report.thumbnail_errors:
        reasons = ", ".join(f"{r} ({n:,})" for r, n in report.thumbnail_errors.most_common(5))
        console.print(f"[yellow]no thumbnail:[/] {escape(reasons)}", highlight=False, soft_wrap=True)
    console.print(report.path, markup=False, highlight=False, soft_wrap=True)
