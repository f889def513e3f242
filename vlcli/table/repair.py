"""`vl repair`: undo what concurrent or interrupted runs left behind in a table.

- Rows sharing one id (two ingests that ran at once on a table made before ids were its key): all copies
  but one are deleted, keeping the one with the most columns filled (the most step work), then the first.
- Temporary files a killed writer left in the table's folders (`.tmp*`), once untouched for `temp_age`.
- The table's `id` is declared its primary key, so concurrent ingests cannot duplicate ids again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta

from vlcli.table.storage import ORPHAN_AGE, Table


@dataclass
class RepairReport:
    """What `repair` removed."""

    table: str
    duplicates_removed: int = 0  # rows deleted because another row had the same id
    temp_files_removed: int = 0
    temp_bytes_removed: int = 0
    seconds: float = 0.0


def repair(table: str | os.PathLike[str], temp_age: timedelta = ORPHAN_AGE) -> RepairReport:
    """Remove duplicate ids and orphan temporary files from `table`; make `id` its key."""
    started = time.perf_counter()
    tbl = Table.open(table)
    report = RepairReport(table=tbl.path)
    # Files first: a table too damaged to scan still gets its disk space back.
    report.temp_files_removed, report.temp_bytes_removed = tbl.remove_orphan_files(temp_age)
    report.duplicates_removed = tbl.remove_duplicate_ids()
    tbl.declare_id_key()
    report.seconds = time.perf_counter() - started
    return report
