"""`vl demo [DIR]`: generate sample images, ingest them, run every step, show the table's status."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from vlcli.cli.common import Quiet, RichProgress, handles_errors
from vlcli.cli.render import console, err_console, human_bytes, render
from vlcli.demo.demo import DEFAULT_DIRECTORY, DEFAULT_IMAGES, EXPORT_NAME, DemoResult, run_demo
from vlcli.demo.samples import MIN_IMAGES
from vlcli.review.status import table_status
from vlcli.table.storage import Table
from vlcli.testing.tiny_models import BANNER

# Plural labels for the sample kinds, in the order the summary lists them.
KIND_LABELS = {
    "scene": "photo-like scenes",
    "chart": "charts",
    "document": "documents",
    "near_duplicate": "near-duplicates",
    "exact_duplicate": "exact duplicate",
    "corrupt": "corrupt",
}


@handles_errors
def command(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder to write the sample images and the table into.")
    ] = Path(DEFAULT_DIRECTORY),
    images: Annotated[
        int, typer.Option("--images", min=MIN_IMAGES, help="How many sample files to generate.")
    ] = DEFAULT_IMAGES,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generator (same seed, same bytes).")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier demo in DIR (other files are left alone).")
    ] = False,
    real_models: Annotated[
        bool,
        typer.Option(
            "--real-models",
            help="Use the real default models (downloads them) instead of tiny offline stand-ins.",
        ),
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Run the whole pipeline on generated samples: scenes, charts, documents, duplicates, a broken file."""
    progress = None if quiet else (lambda: RichProgress())
    result = run_demo(directory, images, seed, overwrite, progress_factory=progress, real_models=real_models)
    if not real_models:
        err_console.print(f"[yellow]note:[/] {BANNER}", highlight=False)
    if not quiet:
        _print_written(result)
        render(result.ingest)
        for report in result.steps:
            render(report)
        console.print()
    render(table_status(Table.open(result.table)))
    if not quiet:
        _print_next(result)
    if result.review is not None:
        console.print(f"review page: {result.review}", highlight=False, markup=False, soft_wrap=True)


def _print_written(result: DemoResult) -> None:
    kinds = ", ".join(f"{len(paths)} {KIND_LABELS[kind]}" for kind, paths in result.samples.by_kind().items())
    console.print(
        f"wrote {len(result.samples.samples)} files ({human_bytes(result.samples.bytes_written())}) "
        f"to {result.images}: {kinds}",
        highlight=False,
        soft_wrap=True,
    )


def _print_next(result: DemoResult) -> None:
    """Commands to try on the demo's table, each runnable as printed, in this order."""
    table = shlex.quote(str(result.table))
    export = result.directory / EXPORT_NAME
    lines = [
        f"vl status {table}",
        f'vl query {table} "SELECT format, count(*) AS n FROM images GROUP BY format"',
        f"vl query {table} \"SELECT source, ingest_status FROM images WHERE ingest_status <> 'ok'\"",
        f'vl query {table} "SELECT bin, count(*) AS n FROM images WHERE bin_selected GROUP BY bin"',
        f"vl export {table} --jsonl {shlex.quote(str(export / 'qa.jsonl'))} --all-items",
        f"vl export {table} --parquet {shlex.quote(str(export / 'parquet'))}",
    ]
    console.print(f"\ndone in {result.seconds:.1f}s; try next:", highlight=False)
    for line in lines:
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    console.print(
        "the demo's own settings, rerun on its table (every step finds nothing left to do):", highlight=False
    )
    console.print(f"  {result.resume}", highlight=False, markup=False, soft_wrap=True)
    console.print("then on your own images, with real models small enough for a CPU:", highlight=False)
    console.print("  vl run path/to/your/images my.lance --preset fast", highlight=False, markup=False)
