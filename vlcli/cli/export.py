"""`vl export TABLE --hf DIR | --parquet DIR | --images DIR | --jsonl FILE | --llava FILE | --sharegpt FILE`:
a Hugging Face dataset, Parquet shards, image files or Q/A training files, with each row's crop view."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vlcli.cli.common import Quiet, RichProgress, TableArg, handles_errors
from vlcli.cli.render import render
from vlcli.exports.export import DEFAULT_SHARD_ROWS, export
from vlcli.exports.records import QAOptions
from vlcli.exports.views import ViewOptions
from vlcli.table.storage import Table


@handles_errors
def command(
    table: TableArg,
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
            "several datasets. With --jsonl/--llava/--sharegpt: the images those records point at.",
        ),
    ] = None,
    jsonl: Annotated[
        Path | None,
        typer.Option(
            "--jsonl",
            metavar="FILE",
            help="Write one JSON line per Q/A item in DCVLR's shape (image, bin, features, question, options, "
            "answer, reasoning).",
        ),
    ] = None,
    llava: Annotated[
        Path | None,
        typer.Option(
            "--llava", metavar="FILE", help="Write a LLaVA conversation list (JSON); needs --images DIR."
        ),
    ] = None,
    sharegpt: Annotated[
        Path | None,
        typer.Option(
            "--sharegpt",
            metavar="FILE",
            help="Write ShareGPT samples as LLaMA-Factory reads them (JSON); needs --images DIR.",
        ),
    ] = None,
    turns: Annotated[
        str,
        typer.Option(
            "--turns",
            metavar="single|multi",
            help="--llava/--sharegpt: one sample per Q/A item, or one multi-turn conversation per image.",
        ),
    ] = "single",
    no_reasoning: Annotated[
        bool,
        typer.Option(
            "--no-reasoning", help="--llava/--sharegpt: answer with the final answer only, no reasoning."
        ),
    ] = False,
    think: Annotated[
        bool,
        typer.Option("--think", help="--llava/--sharegpt: put the reasoning inside <think>...</think>."),
    ] = False,
    all_items: Annotated[
        bool,
        typer.Option("--all-items", help="Q/A exports: also items that failed validation."),
    ] = False,
    push_to_hub: Annotated[
        str | None,
        typer.Option(
            "--push-to-hub",
            metavar="REPO",
            help="After --hf, upload the dataset to this Hub repository (owner/name); the token is read "
            "from HF_TOKEN.",
        ),
    ] = None,
    private: Annotated[
        bool, typer.Option("--private", help="With --push-to-hub, create the repository private.")
    ] = False,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            metavar="SQL",
            help="SQL predicate selecting rows, e.g. \"dataset = 'charts'\" (Q/A exports: replaces the "
            "default, rows kept by the filter).",
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
    by default only rows with ingest_status = 'ok'. Q/A exports (--jsonl, --llava, --sharegpt, and --hf
    on a table with Q/A: one row per item) take rows kept by the filter and items that passed validation."""
    report = export(
        Table.open(table),
        hf=hf,
        parquet=parquet,
        images=images,
        jsonl=jsonl,
        llava=llava,
        sharegpt=sharegpt,
        qa=QAOptions(turns=turns, reasoning=not no_reasoning, think=think, all_items=all_items),  # type: ignore[arg-type]
        push_to_hub=push_to_hub,
        private=private,
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
