"""`vl similar TABLE ID`: the images nearest to one image by embedding."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table as RichTable

from vlcli.cli.common import TableArg, handles_errors
from vlcli.cli.render import console
from vlcli.table.similar import build_index, similar
from vlcli.table.storage import Table


@handles_errors
def command(
    table: TableArg,
    image_id: Annotated[
        str | None,
        typer.Argument(
            metavar="ID",
            help="The id of the query image, or its first characters (e.g. the 12 the review page shows).",
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many neighbours.")] = 10,
    build: Annotated[
        bool,
        typer.Option("--build-index", help="Build (or rebuild) the vector index first; for large tables."),
    ] = False,
) -> None:
    """Images most similar to ID by the embedding `vl crop` stores (cosine distance, smaller is closer)."""
    handle = Table.open(table)
    if build:
        console.print(f"built vector index {build_index(handle)}", highlight=False)
    if image_id is None:
        if not build:
            raise typer.BadParameter("give an image ID (or --build-index)", param_hint="ID")
        return
    frame = similar(handle, image_id, k)
    out = RichTable(*frame.columns, box=None)
    for row in frame.iter_rows():
        out.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(out)
