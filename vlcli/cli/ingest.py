"""`vl ingest SRC TABLE`: parse options, call `vlcli.ingestion.ingest.ingest` once, print the summary."""

from __future__ import annotations

from typing import Annotated

import typer

from vlcli.cli.common import Quiet, RichProgress, handles_errors
from vlcli.cli.render import render
from vlcli.images import DEFAULT_MAX_PIXELS
from vlcli.ingestion.ingest import DEFAULT_MAX_FILE_SIZE, IngestOptions, ingest

Src = Annotated[
    str,
    typer.Argument(
        help="A folder of images, a text file of paths, a Parquet file or folder, "
        "a saved Hugging Face dataset folder, or a hub dataset id (owner/name).",
        show_default=False,
    ),
]
TablePath = Annotated[
    str,
    typer.Argument(
        help="The vl table to add rows to (created when missing): a .lance folder or a Lance URI (s3://, gs://, az://, file://)."
    ),
]
Dataset = Annotated[
    str | None,
    typer.Option(
        "--dataset", help="Dataset name for every row (default: from data/<name>/train/, else SRC's name)."
    ),
]
Split = Annotated[str, typer.Option("--split", help="Split of a Hugging Face dataset.")]
ImageColumn = Annotated[
    str | None, typer.Option("--image-column", help="Column holding the images (Parquet / Hugging Face).")
]
KeepColumns = Annotated[
    str | None,
    typer.Option(
        "--keep-columns", help="Comma-separated source columns to carry along (Parquet / Hugging Face)."
    ),
]
MaxPixels = Annotated[
    int,
    typer.Option("--max-pixels", min=1, help="Larger images get an error row (decompression-bomb guard)."),
]
MaxFileSize = Annotated[
    int,
    typer.Option(
        "--max-file-size",
        min=1,
        help="Larger files (in MiB) get an error row and are not read; FIFOs and devices are never read.",
    ),
]
AllowExternalPaths = Annotated[
    bool,
    typer.Option(
        "--allow-external-paths",
        help="Parquet / Hugging Face image cells holding only a path may point outside the dataset's folder.",
    ),
]
BatchRows = Annotated[int, typer.Option("--batch-rows", min=1, help="Rows per append (one commit each).")]


def _columns(value: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in (value or "").split(",") if name.strip())


@handles_errors
def command(
    src: Src,
    table: TablePath,
    dataset: Dataset = None,
    split: Split = "train",
    image_column: ImageColumn = None,
    keep_columns: KeepColumns = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    max_file_size: MaxFileSize = DEFAULT_MAX_FILE_SIZE // 2**20,
    allow_external_paths: AllowExternalPaths = False,
    batch_rows: BatchRows = 512,
    quiet: Quiet = False,
) -> None:
    """Add the images of SRC to TABLE, one row each; rerunning adds only what is new."""
    options = IngestOptions(
        dataset=dataset,
        split=split,
        image_column=image_column,
        keep_columns=_columns(keep_columns),
        max_pixels=max_pixels,
        max_file_size=max_file_size * 2**20,
        allow_external_paths=allow_external_paths,
        batch_rows=batch_rows,
    )
    report = ingest(src, table, options, progress=RichProgress(enabled=False if quiet else None))
    render(report)
