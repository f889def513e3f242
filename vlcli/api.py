"""Small conveniences for Python users: open or create a table by path."""

from __future__ import annotations

import os

from vlcli.table.schema import ingest_schema
from vlcli.table.storage import Table


def open_table(path: str | os.PathLike[str]) -> Table:
    """Open an existing `vl` table."""
    return Table.open(path)


def create_table(path: str | os.PathLike[str]) -> Table:
    """Create an empty `vl` table with the ingest columns."""
    return Table.create(path, ingest_schema())
