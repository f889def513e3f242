"""`vl query` under repetition: a WHERE … LIMIT query over many fragments exits cleanly every time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import jpeg_bytes, table_rows

from vlcli.table.schema import ingest_schema
from vlcli.table.storage import Table

# Forks after importing polars and Lance (and before either starts a thread), so each run pays for the
# query and the interpreter's exit, not for the imports; the child exits through normal shutdown, where
# the abort happened.
REPEAT = """
import os, sys
from vlcli.table.query import query
from vlcli.table.storage import Table

path, sql, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
codes = []
for _ in range(runs):
    pid = os.fork()
    if pid == 0:
        print(query(Table.open(path), sql).height, flush=True)
        sys.exit(0)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print("exit codes:", *codes)
"""


@pytest.fixture(scope="module")
def fragmented(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A table of 64 fragments of two rows each."""
    path = tmp_path_factory.mktemp("fragments") / "t.lance"
    table = Table.create(path, ingest_schema())
    for i in range(0, 128, 2):
        table.append(table_rows([jpeg_bytes(i), jpeg_bytes(i + 1)]))
    assert len(table.fragment_ids()) == 64
    return path


@pytest.mark.skipif(not hasattr(os, "fork"), reason="repeats the query in forked processes")
def test_where_limit_query_exits_cleanly_50_times(fragmented: Path) -> None:
    sql = "SELECT id FROM images WHERE width > 10 LIMIT 1"
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", REPEAT, str(fragmented), sql, "50"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONFAULTHANDLER": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == "exit codes: " + " ".join(["0"] * 50), result.stderr[-2000:]
    assert lines[:-1] == ["1"] * 50  # every run printed the right result before exiting
