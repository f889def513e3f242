"""The contract test: a step killed with SIGKILL mid-run resumes to the same table, redoing no committed row."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fake_steps import DigestStep

from vlcli.steps.base import RunOptions
from vlcli.steps.runner import run_step
from vlcli.table.storage import Table

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from fake_steps import DigestStep
from vlcli.steps.base import RunOptions
from vlcli.steps.runner import run_step
from vlcli.table.storage import Table
run_step(Table.open({table!r}), DigestStep(log={log!r}, delay=0.15), RunOptions(batch_size=4, workers=2, commit_rows=4))
"""

COLUMNS = ["id", "digest_sha1", "digest_pixels", "digest_status"]


def _rows(table: Table) -> list[dict[str, object]]:
    return sorted(table.to_arrow(COLUMNS).to_pylist(), key=lambda r: str(r["id"]))


def _wait_for_lines(path: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().split()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"the step never logged {n} rows")


def test_sigkill_mid_run_then_rerun_equals_uninterrupted(
    make_table: Callable[..., Table], tmp_path: Path
) -> None:
    table = make_table(40)
    reference = Table.open(shutil.copytree(table.path, tmp_path / "reference.lance"))
    run_step(reference, DigestStep(), RunOptions(batch_size=4))

    first_log = tmp_path / "first.log"
    code = SCRIPT.format(tests=str(Path(__file__).parent), table=table.path, log=str(first_log))
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait_for_lines(first_log, 12)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    table = Table.open(table.path)
    committed = {r["id"] for r in _rows(table) if r["digest_status"] is not None}
    assert 0 < len(committed) < 40, "the kill should land mid-run"
    assert committed <= set(first_log.read_text().split())

    second_log = tmp_path / "second.log"
    report = run_step(table, DigestStep(log=str(second_log)), RunOptions(batch_size=4))
    redone = second_log.read_text().split()
    assert len(redone) == len(set(redone)), "each pending row is done once"
    assert not committed & set(redone), "no committed row is done again"
    assert committed | set(redone) == {r["id"] for r in _rows(table)}
    assert report.processed == 40 - len(committed)
    assert _rows(table) == _rows(reference)
