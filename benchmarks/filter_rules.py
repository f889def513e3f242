"""`vl filter`'s global part (`apply_rules`) on a table of N already scored rows: seconds and peak RSS.

    python benchmarks/filter_rules.py [--n 1000000] [--repeat 3]

The table is built through the Table API, no image decoded: tiny placeholder image bytes, random 64-bit
pHashes of which 2% are near copies (0 to 10 bits flipped) of other rows, widths and heights of 100-2000
px (some rows too small), NSFW scores, filter_status 'ok'. Then, in order:
- first run: no stored decision, every group searched;
- rerun, nothing changed (median of --repeat runs);
- a threshold change: --min-side alternately 300 and 256 (median of --repeat runs);
- an evaluation set added (--against): a reference table holding the hashes of 50 kept group members.
Each line prints the median seconds, the peak RSS of that stage alone (Linux: VmHWM reset through
/proc/self/clear_refs), how far above the stage's starting RSS that peak is, and the table versions it
committed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

from vlcli.steps.filter.contamination import REFERENCE_KEY
from vlcli.steps.filter.step import FilterRules, apply_rules
from vlcli.table.schema import FILTER_STATUS, ID, NSFW_SCORE, PHASH, REF_HASHES, ingest_schema
from vlcli.table.storage import Table

CHUNK = 1_000_000  # rows appended per commit while building


def planted(n: int, seed: int = 1) -> np.ndarray:
    """`n` random uint64 hashes, 2% of them copies of other rows with 0-10 bits flipped."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    copies = rng.choice(n, size=n // 50, replace=False)
    sources = rng.integers(0, n, size=len(copies))
    flips = np.zeros(len(copies), dtype=np.uint64)
    for _ in range(10):
        bit = rng.integers(0, 64, size=len(copies)).astype(np.uint64)
        flips ^= np.where(rng.random(len(copies)) < 0.3, np.uint64(1) << bit, np.uint64(0))
    h[copies] = h[sources] ^ flips
    return h


def build(path: Path, n: int) -> Table:
    """A table of `n` scored rows, as `vl filter`'s per-row part leaves it."""
    schema = pa.schema([*ingest_schema(), PHASH.field(), NSFW_SCORE.field(), FILTER_STATUS.field()])
    table = Table.create(path, schema)
    rng = np.random.default_rng(2)
    hashes = planted(n)
    for start in range(0, n, CHUNK):
        k = min(CHUNK, n - start)
        ids = pa.array([f"{i:016x}" for i in range(start, start + k)])
        table.append(
            pa.table(
                {
                    "id": ids,
                    "source": ids,
                    "dataset": pa.array(["bench"] * k),
                    "image": pa.array([b"\xff\xd8"] * k, pa.binary()),
                    "width": rng.integers(100, 2000, size=k, dtype=np.int32),
                    "height": rng.integers(100, 2000, size=k, dtype=np.int32),
                    "format": pa.array(["JPEG"] * k),
                    "file_size": np.full(k, 2, dtype=np.int64),
                    "ingest_status": pa.array(["ok"] * k),
                    "ingest_warnings": pa.nulls(k, pa.string()),
                    "phash": hashes[start : start + k].view(np.int64),
                    "nsfw_score": rng.random(k).astype(np.float32),
                    "filter_status": pa.array(["ok"] * k),
                },
                schema=schema,
            )
        )
    return table


def reference(path: Path, table: Table, count: int = 50) -> str:
    """An evaluation set holding the hashes of `count` kept members of near-duplicate groups."""
    kept = table.to_arrow(["dup_of"], "dup_of IS NOT NULL").column("dup_of").unique()[:count].to_pylist()
    where = "id IN (" + ", ".join(f"'{i}'" for i in kept) + ")"
    rows = table.to_arrow(["id", "phash"], where)
    ref = Table.create(path, pa.schema([ID.field(), REF_HASHES.field()]))
    ref.append(
        pa.table({"id": rows.column("id"), "ref_hashes": [[h] for h in rows.column("phash").to_pylist()]})
    )
    ref.set_metadata(REFERENCE_KEY, {"name": "eval"})
    return ref.path


def reset_peak() -> None:
    """Restart VmHWM from the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def status_mb(field: str) -> float:
    """VmHWM (peak RSS since the last reset) or VmRSS, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stage(table: Table, label: str, runs: list[Callable[[], object]]) -> None:
    """Time each of `runs`; print the median, the stage's peak RSS (and above the RSS it started at) and
    the versions committed."""
    reset_peak()
    start_mb = status_mb("VmRSS")
    version = table.version
    times = []
    for run in runs:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    table.refresh()
    print(
        f"{label:<34s}{statistics.median(times):10.2f}{status_mb('VmHWM'):10.0f}"
        f"{status_mb('VmHWM') - start_mb:+10.0f}{table.version - version:10d}  "
        + ", ".join(f"{t:.2f}" for t in times)
    )


def main() -> None:
    """Build the table, run the four stages and print them."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        table = build(Path(tmp) / "t.lance", args.n)
        print(f"{args.n:,} rows built in {time.perf_counter() - start:.1f} s; cpus {os.cpu_count()}")
        print(f"{'apply_rules':<34s}{'median s':>10s}{'peak MB':>10s}{'growth':>10s}{'versions':>10s}  runs")
        base = FilterRules()
        stage(table, "first run", [lambda: apply_rules(table, base)])
        stage(table, "rerun, nothing changed", [lambda: apply_rules(table, base)] * args.repeat)
        sides = [FilterRules(min_side=300 if k % 2 == 0 else 256) for k in range(args.repeat)]
        stage(table, "--min-side changed", [partial(apply_rules, table, r) for r in sides])
        ref = reference(Path(tmp) / "eval.lance", table)
        against = FilterRules(min_side=sides[-1].min_side, against=(ref,))
        stage(table, "--against added (50 kept members)", [lambda: apply_rules(table, against)])


if __name__ == "__main__":
    main()
