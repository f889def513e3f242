"""`vl status TABLE`: per-step done / pending / skipped / error counts, versions, tags and size."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vlcli.cli.common import TableArg, handles_errors
from vlcli.cli.render import render
from vlcli.review.status import table_status
from vlcli.table.storage import Table


@handles_errors
def command(
    table: TableArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show how far every step has got: done, pending, blocked, skipped and errors with top reasons."""
    status = table_status(Table.open(table))
    if as_json:
        print(json.dumps(status.to_dict(), indent=2, default=str))
        return
    render(status)
