"""`vl query TABLE "SQL"`: polars SQL over the table (registered as `images`)."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any

import polars as pl
import typer
from rich.markup import escape
from rich.table import Table as RichTable

from vlcli.cli.common import TableArg, handles_errors
from vlcli.cli.render import console
from vlcli.table.query import printable, query
from vlcli.table.storage import Table

DEFAULT_TABLE_ROWS = 50
MIN_COLUMN_WIDTH = 8  # a column narrower than this shows only '…': leave it out and say so


class OutputFormat(str, Enum):
    """How `vl query` prints its result."""

    table = "table"
    csv = "csv"
    json = "json"


@handles_errors
def command(
    table: TableArg,
    sql: Annotated[
        str,
        typer.Argument(
            help='A query over `images`, e.g. "SELECT format, count(*) FROM images GROUP BY format".'
        ),
    ],
    output: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format.")
    ] = OutputFormat.table,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", min=0, help=f"Print at most N rows (table format: {DEFAULT_TABLE_ROWS} by default)."
        ),
    ] = None,
) -> None:
    """Run polars SQL over the table (as `images`), reading only the columns it names; bytes show as <N bytes>."""
    if output is OutputFormat.table:
        shown = DEFAULT_TABLE_ROWS if limit is None else limit
        result = query(Table.open(table), sql, limit=shown + 1)  # one extra row tells whether there are more
        binary = [name for name, dtype in result.schema.items() if dtype == pl.Binary]
        unnamed = [name for name in binary if not _named(name, sql)]  # came with `*`: bytes, not data to read
        render_table(
            printable(result.head(shown).drop(unnamed)),
            more=result.height > shown,
            no_wrap=binary,
            left_out=unnamed,
        )
        return
    result = printable(query(Table.open(table), sql, limit=limit), nested_as_json=output is OutputFormat.csv)
    sys.stdout.write(result.write_csv() if output is OutputFormat.csv else result.write_json() + "\n")


def render_table(
    df: pl.DataFrame, *, more: bool, no_wrap: Sequence[str] = (), left_out: Sequence[str] = ()
) -> None:
    """Print a result as a rich table of the columns that fit the terminal, saying which rows and columns
    were left out (`left_out`: binary columns the query did not name)."""
    cells = [[_cell(v) for v in row] for row in df.iter_rows()]
    full = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(df.columns)]
    widths = [w if name in no_wrap else min(MIN_COLUMN_WIDTH, w) for name, w in zip(df.columns, full)]
    fit, used = 0, 0
    while fit < len(widths) and (fit == 0 or used + widths[fit] + 2 <= console.width):
        used += widths[fit] + 2  # a column's padding: one space each side
        fit += 1
    out = RichTable(box=None, header_style="bold")
    for name, width in zip(df.columns[:fit], widths):
        out.add_column(escape(name), no_wrap=name in no_wrap, min_width=width)
    for row in cells:
        out.add_row(*row[:fit])
    console.print(out)
    rows = f"{df.height:,} row{'s' if df.height != 1 else ''}"
    note = f"first {rows} shown; more not shown (use --limit N or --format csv)" if more else rows
    console.print(note, style="dim", highlight=False)
    if left_out:
        console.print(
            f"not shown: {', '.join(left_out)} (image bytes; name the column to see its size)",
            style="dim",
            markup=False,
            highlight=False,
        )
    if fit < len(df.columns):
        hidden = df.columns[fit:]
        names = ", ".join(hidden[:5]) + (", ..." if len(hidden) > 5 else "")
        console.print(
            f"{len(hidden)} more column{'s' if len(hidden) != 1 else ''} did not fit in {console.width} "
            f"characters: {names} (select fewer columns, or use --format csv or json)",
            style="dim",
            markup=False,
            highlight=False,
        )


def _named(column: str, sql: str) -> bool:
    """Whether `sql` names `column` (not merely `images`, or `*`)."""
    return re.search(rf"(?<![\w]){re.escape(column)}(?![\w])", sql, re.IGNORECASE) is not None


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]null[/]"
    return escape(str(value))
