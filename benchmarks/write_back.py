"""`Table.write_back` on tables of 1M and 4M rows: one merge-insert commit per 65,536 rows (as it was) against
one per WRITE_BACK_ROWS (as it is), measured in one run.

    python benchmarks/write_back.py [--sizes 1000000 4000000]

Each table holds tiny placeholder image bytes and three step columns, appended 1M rows per fragment. On each
table both ways write new values into the same number of rows spread over the table: 65,536 (one commit
either way: the cost of one commit), 1M, and every row. Each line prints seconds, versions committed and the
peak RSS above the RSS the write started at (Linux: VmHWM reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from filter_rules import reset_peak, status_mb

from vlcli.table import storage
from vlcli.table.schema import ID, IMAGE
from vlcli.table.storage import Table

CHUNK = 1_000_000  # rows appended per commit while building: one fragment each
OLD_ROWS = 65_536  # rows per commit of write_back before
CASES = [OLD_ROWS, 1_000_000, None]  # rows written; None: every row
SCHEMA = pa.schema(
    [
        ID.field(),
        IMAGE.field(),
        pa.field("note", pa.string()),
        pa.field("keep", pa.bool_()),
        pa.field("score", pa.float32()),
    ]
)


def build(path: Path, n: int) -> Table:
    """A table of `n` rows with NULL step columns."""
    table = Table.create(path, SCHEMA)
    for start in range(0, n, CHUNK):
        k = min(CHUNK, n - start)
        table.append(
            pa.table(
                {"id": [f"{i:016x}" for i in range(start, start + k)], "image": [b"\xff\xd8"] * k},
                schema=pa.schema([SCHEMA.field("id"), SCHEMA.field("image")]),
            )
        )
    return table


def pick(n: int, count: int, seed: int) -> list[str]:
    """Ids of `count` random rows of a table of `n`."""
    rows = np.random.default_rng(seed).choice(n, count, replace=False)
    return [f"{i:016x}" for i in rows]


def changes(ids: list[str], seed: int) -> pa.Table:
    """New step values for `ids`."""
    rng = np.random.default_rng(seed)
    k = len(ids)
    return pa.table(
        {
            "id": ids,
            "note": pa.array([f"n{seed}"] * k),
            "keep": pa.array(rng.random(k) < 0.9),
            "score": pa.array(rng.random(k).astype(np.float32)),
        }
    )


def measure(table: Table, rows: pa.Table, commit_rows: int) -> str:
    """Write `rows` in commits of `commit_rows`: seconds, versions, peak RSS growth."""
    storage.WRITE_BACK_ROWS = commit_rows
    version = table.version
    reset_peak()
    start_mb = status_mb("VmRSS")
    start = time.perf_counter()
    table.write_back(rows)
    seconds = time.perf_counter() - start
    return f"{seconds:8.2f} s {table.version - version:4d} v {status_mb('VmHWM') - start_mb:+6.0f} MB"


def main() -> None:
    """Build each table, write rows both ways, print a comparison."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    args = parser.parse_args()
    new_rows = storage.WRITE_BACK_ROWS
    print(f"cpus {os.cpu_count()}; write_back commits every {new_rows:,} rows (before: {OLD_ROWS:,})")
    print(f"{'table rows':>11s} {'rows written':>13s}   {'before: s, versions, peak':<30s}{'after'}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            table = build(Path(tmp) / "t.lance", n)
            for k, count in enumerate(CASES):
                count = min(count or n, n)
                # after first: the allocator's growth is charged to it, not to before
                after = measure(table, changes(pick(n, count, k + 10), k + 10), new_rows)
                before = measure(table, changes(pick(n, count, k), k), OLD_ROWS)
                print(f"{n:>11,d} {count:>13,d}   {before:<30s}{after}")
    storage.WRITE_BACK_ROWS = new_rows


if __name__ == "__main__":
    main()
