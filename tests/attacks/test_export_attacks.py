"""Exports under attack: a SIGKILL mid-write never leaves a partial file under a final name."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from vlcli.exports.export import export
from vlcli.table.storage import Table

# Writes shards of 2 rows from batches of 1 row, and SIGKILLs itself with the second shard half written.
KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import pyarrow as pa
    from vlcli.exports.export import write_parquet_shards

    schema = pa.schema([("id", pa.string())])

    def batches():
        for i in range(3):
            yield pa.record_batch([pa.array([f"row-{i}"])], schema=schema)
        os.kill(os.getpid(), signal.SIGKILL)

    write_parquet_shards(batches(), __import__("pathlib").Path(sys.argv[1]), schema, 2)
    """
)


def test_a_killed_parquet_export_leaves_no_partial_shard(
    make_table: Callable[..., Table], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out)], capture_output=True, timeout=60)
    assert killed.returncode == -9, killed.stderr.decode()
    shards = sorted(out.glob("part-*.parquet"))
    # the finished shard is whole; the one being written when the process died is not there under its name
    assert [p.name for p in shards] == ["part-00000.parquet"]
    assert pq.read_table(shards[0]).column("id").to_pylist() == ["row-0", "row-1"]
    # what the killed export left is its own: --overwrite replaces it
    report = export(make_table(3), parquet=out, overwrite=True)
    assert report.rows == 3 and sorted(p.name for p in out.iterdir()) == ["part-00000.parquet"]
