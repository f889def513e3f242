"""`vl query TABLE "SQL"`: polars SQL over the table (registered as `images`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.markup import escape
from rich.table import Table as RichTable

from vlcli.cli.common import console, handles_errors
from vlcli.query import printable, query
from vlcli.storage import Table

DEFAULT_TABLE_ROWS = 50


class OutputFormat(str, Enum):
    """How `vl query` prints its result."""

    table = "table"
    csv = "csv"
    json = "json"


@handles_errors
def command(
    table: Annotated[Path, typer.Argument(help="The table (a Lance folder).")],
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
        render_table(printable(result.head(shown)), more=result.height > shown, no_wrap=binary)
        return
    result = printable(query(Table.open(table), sql, limit=limit), nested_as_json=output is OutputFormat.csv)
    sys.stdout.write(result.write_csv() if output is OutputFormat.csv else result.write_json() + "\n")


def render_table(df: pl.DataFrame, *, more: bool, no_wrap: Sequence[str] = ()) -> None:
    """Print a result as a rich table, saying when rows were left out."""
    out = RichTable(box=None, header_style="bold")
    for name in df.columns:
        out.add_column(escape(name), no_wrap=name in no_wrap)
    for row in df.iter_rows():
        out.add_row(*(_cell(v) for v in row))
    console.print(out)
    rows = f"{df.height:,} row{'s' if df.height != 1 else ''}"
    note = f"first {rows} shown; more not shown (use --limit N or --format csv)" if more else rows
    console.print(note, style="dim", highlight=False)


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]null[/]"
    return escape(str(value))
