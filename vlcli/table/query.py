"""Polars SQL over a table registered as `images`, reading only the columns a query names."""

from __future__ import annotations

import json
import sys
import threading
import time
from types import FrameType

import polars as pl

from vlcli.errors import QueryError
from vlcli.table.storage import Table

TABLE_NAME = "images"
# polars panics (a BaseException) on some valid SQL over Lance scans, e.g. unnest() of a list of structs
_FAILURES = (pl.exceptions.PolarsError, pl.exceptions.PanicException)
_READER_MODULES = ("polars.", "lance.")  # Python code that Lance scans run on threads polars owns
SETTLE_SECONDS = 5.0


def lazy_query(table: Table, sql: str) -> pl.LazyFrame:
    """Plan `sql` over the table (registered as `images`) without reading any data."""
    context = pl.SQLContext({TABLE_NAME: table.lazy()})
    try:
        return context.execute(sql, eager=False)
    except _FAILURES as exc:
        raise QueryError(_message(exc)) from exc


def query(table: Table, sql: str, *, limit: int | None = None) -> pl.DataFrame:
    """Run `sql` and return the result; with `limit`, at most that many rows are computed and read."""
    lf = lazy_query(table, sql)
    if limit is not None:
        lf = lf.head(limit)
    try:
        return collect(lf)
    except _FAILURES as exc:
        raise QueryError(_message(exc)) from exc


def collect(lf: pl.LazyFrame) -> pl.DataFrame:
    """Collect `lf`, then wait until the Lance readers polars started have stopped running Python."""
    try:
        return lf.collect()
    finally:
        wait_for_readers()


def wait_for_readers(timeout: float = SETTLE_SECONDS) -> None:
    """Return once no other thread runs polars' or Lance's Python code (or after `timeout` seconds)."""
    # When a LIMIT stops a scan of many fragments early, polars returns the result while its reader
    # threads are still inside Lance's Python readers; an interpreter that exits then aborts
    # (PyGILState_Release, rc 134/139). A few quiet polls in a row: a reader may pause between calls.
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline:
        quiet = 0 if _readers_running() else quiet + 1
        time.sleep(0.002)


def _readers_running() -> bool:
    me = threading.get_ident()
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        current: FrameType | None = frame
        while current is not None:
            if str(current.f_globals.get("__name__", "")).startswith(_READER_MODULES):
                return True
            current = current.f_back
    return False


def _message(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    if isinstance(exc, pl.exceptions.PanicException):
        return f"polars failed on this query ({first}); try it without that function or in smaller parts"
    if "relation" in first and "not found" in first:
        first += f" (the table is called {TABLE_NAME!r}: SELECT ... FROM {TABLE_NAME})"
    return f"bad query: {first}"


def printable(df: pl.DataFrame, *, nested_as_json: bool = False) -> pl.DataFrame:
    """Binary columns as '<N bytes>' (for CSV also nested columns as JSON text), so any format can show them."""
    out = df
    for name, dtype in df.schema.items():
        if dtype == pl.Binary:
            size = pl.col(name).bin.size().cast(pl.String)
            out = out.with_columns(pl.format("<{} bytes>", size).alias(name))
        elif nested_as_json and dtype.is_nested():
            text = [None if v is None else json.dumps(v, default=str) for v in df[name].to_list()]
            out = out.with_columns(pl.Series(name, text, dtype=pl.String))
    return out
