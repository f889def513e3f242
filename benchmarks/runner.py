"""Runner overhead: a no-op step over 100,000 rows. Rows/s and bytes written vs the new column's size.

Targets (issue 2): >= 5,000 rows/s; bytes written <= 2x the new column's size (image bytes never rewritten).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from vlcli.steps.base import RunOptions, Step
from vlcli.steps.runner import run_step
from vlcli.table.schema import Column, ingest_schema
from vlcli.table.storage import Table


class NoopStep(Step):
    """Writes one int64 per row and does nothing else."""

    name = "noop"
    writes = (Column("noop_value", pa.int64(), "a constant"),)

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        return [{"noop_value": 1} for _ in items]


def build(path: str, rows: int, image_bytes: int, fragment_rows: int) -> Table:
    """A table with `rows` rows of fake image bytes, appended in fragments of `fragment_rows`."""
    table = Table.create(path, ingest_schema())
    blob = np.random.default_rng(0).bytes(image_bytes)
    for start in range(0, rows, fragment_rows):
        n = min(fragment_rows, rows - start)
        table.append(
            pa.table(
                {
                    "id": [f"{i:032x}" for i in range(start, start + n)],
                    "image": [blob] * n,
                    "ingest_status": ["ok"] * n,
                }
            )
        )
    return table


def measure(
    rows: int, image_bytes: int, batch_size: int, fragment_rows: int, workdir: str
) -> tuple[float, int, int]:
    """One run: rows/s, bytes written during the run, and bytes kept once old versions are cleaned up."""
    table = build(os.path.join(workdir, f"t{time.monotonic_ns()}.lance"), rows, image_bytes, fragment_rows)
    table.cleanup(older_than=timedelta(0))
    before = table.size_on_disk()
    start = time.perf_counter()
    report = run_step(table, NoopStep(), RunOptions(batch_size=batch_size, workers=1))
    seconds = time.perf_counter() - start
    during = table.size_on_disk() - before
    table.cleanup(older_than=timedelta(0))
    assert report.done == rows
    return rows / seconds, during, table.size_on_disk() - before


def main() -> None:
    """Run the benchmark and print medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--image-bytes", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=RunOptions().batch_size)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fragment-rows", type=int, nargs="+", default=[512, 10_000])
    args = parser.parse_args()
    for fragment_rows in args.fragment_rows:
        report(args, fragment_rows)


def report(args: argparse.Namespace, fragment_rows: int) -> None:
    """Measure and print one fragment size (512 rows is what `vl ingest` writes per append)."""
    with tempfile.TemporaryDirectory() as workdir:
        runs = [
            measure(args.rows, args.image_bytes, args.batch_size, fragment_rows, workdir)
            for _ in range(args.repeat)
        ]
    speeds = [s for s, _, _ in runs]
    during = statistics.median(d for _, d, _ in runs)
    kept = statistics.median(k for _, _, k in runs)
    new_columns = pa.table({"noop_value": [1] * args.rows, "noop_status": ["ok"] * args.rows}).nbytes
    print(
        f"runner: no-op step, {args.rows:,} rows in fragments of {fragment_rows:,}, batch {args.batch_size:,}, "
        f"{args.repeat} runs"
    )
    print(
        f"  rows/s median {statistics.median(speeds):,.0f} (min {min(speeds):,.0f}, max {max(speeds):,.0f})"
    )
    print(
        f"  new columns in Arrow: {new_columns:,} bytes; image bytes in table: {args.rows * args.image_bytes:,}"
    )
    print(f"  written during the run (every commit): {during:,.0f} bytes = {during / new_columns:.2f}x")
    print(f"  kept after cleanup_old_versions: {kept:,.0f} bytes = {kept / new_columns:.2f}x")


if __name__ == "__main__":
    main()
