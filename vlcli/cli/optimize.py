"""`vl optimize TABLE`: remove old versions' files and, with --compact, merge small fragments."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from vlcli.cli.common import TableArg, handles_errors
from vlcli.cli.render import render
from vlcli.errors import UsageError
from vlcli.table.optimize import optimize
from vlcli.table.storage import KEEP_VERSIONS_ENV, CompactionPlan, Table, parse_duration


@handles_errors
def command(
    table: TableArg,
    older_than: Annotated[
        str | None,
        typer.Option(
            help="Remove versions older than this (90s, 30m, 2h, 7d); a reader still on one fails. "
            f"Default: the retention window (${KEEP_VERSIONS_ENV}, else 7d).",
        ),
    ] = None,
    compact: Annotated[
        bool,
        typer.Option(
            "--compact", help="First merge small fragments and drop deleted rows (rewrites their images)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Compact without asking.")] = False,
) -> None:
    """Free space: delete the files of versions older than the retention window, and compact on request.

    Steps never delete recent versions, so a long export or review reading one keeps working; run this
    when nothing reads old versions. --compact says how many bytes it would rewrite before doing it.
    """
    age = None if older_than is None else parse_duration(older_than, "--older-than")

    def confirm(plan: CompactionPlan) -> bool:
        render(plan)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError("--compact rewrites the bytes above: pass --yes to compact non-interactively")
        return typer.confirm("Compact?", default=False)

    render(optimize(Table.open(table), age, compact, confirm))
