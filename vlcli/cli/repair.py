"""`vl repair TABLE`: remove duplicate ids and files interrupted runs left behind."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from vlcli.cli.common import TableArg, handles_errors
from vlcli.cli.render import render
from vlcli.table.repair import repair
from vlcli.table.storage import ORPHAN_AGE

DEFAULT_TEMP_AGE = ORPHAN_AGE.total_seconds() / 60
TablePath = TableArg
TempAge = Annotated[
    float,
    typer.Option(
        "--temp-age",
        min=0,
        help="Remove temporary files untouched for this many minutes (younger ones may belong to a "
        "run still writing; 0 when nothing else uses the table).",
    ),
]


@handles_errors
def command(table: TablePath, temp_age: TempAge = DEFAULT_TEMP_AGE) -> None:
    """Remove duplicate rows (same id, from ingests that ran at once) and temporary files left by killed runs.

    Of rows sharing an id, the one with the most columns filled is kept. Safe to rerun.
    """
    render(repair(table, timedelta(minutes=temp_age)))
