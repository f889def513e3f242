"""`--procs N` / `--gpus`: one step's rows in N worker processes, one shard of fragments each; the parent
does the once-only work, shows one progress and names a worker that failed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import jpeg_bytes, table_rows
from fake_steps import DigestStep
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.errors import WorkerFailed
from vlcli.steps.base import RunOptions, Shard, Step
from vlcli.steps.procs import visible_gpus
from vlcli.steps.runner import run_step
from vlcli.table.schema import Column, ingest_schema
from vlcli.table.storage import Table

COLUMNS = ["id", "digest_sha1", "digest_pixels", "digest_status"]

INTERRUPTED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from fake_steps import DigestStep
from vlcli.errors import StepInterrupted
from vlcli.steps.base import RunOptions
from vlcli.steps.runner import run_step
from vlcli.table.storage import Table
try:
    run_step(Table.open({table!r}), DigestStep(log={log!r}, delay=0.2), RunOptions(procs=2, batch_size=2, commit_rows=2))
except StepInterrupted as exc:
    print("interrupted after", exc.report.processed, "rows")
    sys.exit(exc.exit_code)
"""


def fragmented_table(
    path: Path, fragments: int = 4, rows: int = 6, size: tuple[int, int] = (64, 48)
) -> Table:
    """A table of `fragments` appends, so both shards of two get rows."""
    table = Table.create(path, ingest_schema())
    for f in range(fragments):
        table.append(table_rows([jpeg_bytes(i, size) for i in range(f * rows, (f + 1) * rows)]))
    return table


def rows_of(table: Table) -> list[dict[str, Any]]:
    return sorted(Table.open(table.path).to_arrow(COLUMNS).to_pylist(), key=lambda r: str(r["id"]))


def shard_ids(table: Table, shard: Shard) -> list[str]:
    return [i for b in table.scan(["id"], shard.predicate()) for i in b.column("id").to_pylist()]


class Recorder:
    """A Progress that keeps what it was told."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.rows = 0
        self.errors = 0
        self.finished = False

    def start(self, step: str, total: int | None) -> None:
        self.total = total

    def advance(self, rows: int, errors: int) -> None:
        self.rows += rows
        self.errors += errors

    def finish(self) -> None:
        self.finished = True


class PidLogStep(DigestStep):
    """DigestStep that logs the ids it processes to one file per process (`<folder>/<pid>.log`)."""

    def __init__(self, folder: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.folder = folder

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        out = super().process(items)
        with open(os.path.join(self.folder, f"{os.getpid()}.log"), "a") as fh:
            fh.write("".join(f"{i}\n" for i, _, _ in items))
        return out


class KillOnceStep(DigestStep):
    """DigestStep that prints a last line and SIGKILLs its own process on `victim`, the first time only."""

    def __init__(self, victim: str, marker: str, log: str) -> None:
        super().__init__(log=log)
        self.victim = victim
        self.marker = marker

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        if any(i == self.victim for i, _, _ in items) and not os.path.exists(self.marker):
            Path(self.marker).touch()
            print(f"last words before {self.victim[:8]}")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().process(items)


class BrokenSetupStep(DigestStep):
    """DigestStep whose models never load."""

    def setup(self) -> None:
        print("looking for weights")
        raise RuntimeError("no weights at /nowhere")


class EnvStep(Step):
    """Writes the device and thread count its process was given."""

    name = "env"
    writes = (Column("env_seen", pa.string(), "CUDA_VISIBLE_DEVICES/OMP_NUM_THREADS of the worker"),)

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        seen = f"{os.environ.get('CUDA_VISIBLE_DEVICES')}/{os.environ.get('OMP_NUM_THREADS')}"
        return [{"env_seen": seen} for _ in items]


def test_two_processes_write_what_one_does_with_one_progress_and_report(tmp_path: Path) -> None:
    single = fragmented_table(tmp_path / "single.lance", size=(256, 192))
    table = fragmented_table(tmp_path / "procs.lance", size=(256, 192))
    poisoned = frozenset(shard_ids(table, Shard(1, 2))[:1])
    run_step(single, DigestStep(fail_ids=poisoned), RunOptions(batch_size=4))
    image_bytes = sum(table.to_arrow(["file_size"]).column("file_size").to_pylist())
    images_before = table.to_arrow(["id", "image"]).sort_by("id")
    size_before = table.size_on_disk()
    logs = tmp_path / "pids"
    logs.mkdir()
    progress = Recorder()

    report = run_step(
        table, PidLogStep(str(logs), fail_ids=poisoned), RunOptions(procs=2, batch_size=4), progress
    )

    assert rows_of(table) == rows_of(single)
    per_process = {p.stem: set(p.read_text().split()) for p in logs.iterdir()}
    assert len(per_process) == 2 and str(os.getpid()) not in per_process, "two workers, not this process"
    first, second = per_process.values()
    assert not first & second and first | second == {r["id"] for r in rows_of(table)} - poisoned
    assert (progress.total, progress.rows, progress.errors, progress.finished) == (24, 24, 1, True)
    assert (report.done, report.errors, report.processed) == (23, 1, 24)
    assert report.reasons == {"error: ValueError": 1}
    assert report.tag is not None, "the parent tagged the version once the workers were done"
    table = Table.open(table.path)
    assert table.to_arrow(["id", "image"]).sort_by("id").equals(images_before)
    written = table.size_on_disk() - size_before
    assert written < image_bytes / 4, ("no image bytes rewritten", written, image_bytes)


def test_a_killed_worker_is_named_the_others_finish_and_the_rerun_completes(tmp_path: Path) -> None:
    reference = fragmented_table(tmp_path / "reference.lance")
    run_step(reference, DigestStep(), RunOptions(batch_size=2))
    table = fragmented_table(tmp_path / "t.lance")
    victim = shard_ids(table, Shard(1, 2))[-3]  # after a few of shard 1's batches have committed
    first_log = tmp_path / "first.log"
    step = KillOnceStep(victim, str(tmp_path / "killed"), str(first_log))
    opts = RunOptions(procs=2, batch_size=2, commit_rows=2, workers=2)

    with pytest.raises(WorkerFailed) as failed:
        run_step(table, step, opts)

    message = str(failed.value)
    assert "worker 1/2 was killed by SIGKILL" in message and "worker 0/2" not in message
    assert f"last words before {victim[:8]}" in message
    assert "rerun the same command to resume" in message and "\n" not in message
    after_kill = Table.open(table.path)
    committed = {r["id"] for r in rows_of(after_kill) if r["digest_status"] is not None}
    assert set(shard_ids(after_kill, Shard(0, 2))) <= committed, "the other worker finished its shard"
    assert victim not in committed and len(committed) > 12, "shard 1 committed rows before the kill"
    assert "provenance.digest" not in after_kill.metadata(), "no once-only end after a failed worker"

    second_log = tmp_path / "second.log"
    report = run_step(after_kill, KillOnceStep(victim, str(tmp_path / "killed"), str(second_log)), opts)

    redone = second_log.read_text().split()
    assert len(redone) == len(set(redone)) and not committed & set(redone), "no committed row redone"
    assert report.processed == 24 - len(committed)
    assert rows_of(after_kill) == rows_of(reference)


def test_a_worker_that_raises_is_named_with_its_error(tmp_path: Path) -> None:
    table = fragmented_table(tmp_path / "t.lance", fragments=2, rows=2)

    with pytest.raises(WorkerFailed) as failed:
        run_step(table, BrokenSetupStep(), RunOptions(procs=2))

    message = str(failed.value)
    assert "worker 0/2 failed (exit code 1): RuntimeError: no weights at /nowhere" in message
    assert "worker 1/2 failed" in message and "The other workers" not in message
    assert failed.value.exit_code == 1
    assert Table.open(table.path).count("digest_status IS NOT NULL") == 0


def test_each_worker_gets_its_device_and_a_share_of_the_threads_and_of_the_limit(tmp_path: Path) -> None:
    table = fragmented_table(tmp_path / "t.lance", fragments=2, rows=4)

    report = run_step(table, EnvStep(), RunOptions(gpus=("7", "9"), limit=5, batch_size=1, commit_rows=1))

    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    seen = Table.open(table.path).to_arrow(["id", "env_seen"]).to_pylist()
    by_id = {r["id"]: r["env_seen"] for r in seen if r["env_seen"] is not None}
    assert report.processed == len(by_id) == 5, "--limit 5 split 3 + 2, never more"
    assert {by_id[i] for i in shard_ids(table, Shard(0, 2)) if i in by_id} == {f"7/{threads}"}
    assert {by_id[i] for i in shard_ids(table, Shard(1, 2)) if i in by_id} == {f"9/{threads}"}
    assert os.environ.get("CUDA_VISIBLE_DEVICES") != "7", "the parent's environment is restored"


def test_visible_gpus_honours_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert visible_gpus() == ("0", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,-1,3")
    assert visible_gpus() == ("2",)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == ()


def test_visible_gpus_is_empty_on_a_cpu_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA driver")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == ()


def test_cli_procs_filters_as_one_process_does_and_decides_duplicates_once(tmp_path: Path) -> None:
    tables = []
    for name in ("single.lance", "procs.lance"):
        table = fragmented_table(tmp_path / name, fragments=3, rows=3)
        # near copies of shard 0's first image in a fragment of shard 1: the global part must see both shards
        table.append(table_rows([jpeg_bytes(0, quality=q) for q in (60, 40)]))
        tables.append(table)
    single, procs = tables

    one = CliRunner().invoke(app, ["filter", single.path, "--nsfw", "none", "--min-side", "0"])
    two = CliRunner().invoke(app, ["filter", procs.path, "--nsfw", "none", "--min-side", "0", "--procs", "2"])

    assert one.exit_code == 0 and two.exit_code == 0, (one.output, two.output)
    assert "2 rejected" in two.output and "duplicate" in two.output
    columns = [n for n in Table.open(single.path).schema.names if n not in ingest_schema().names]
    assert "filter_keep" in columns and "phash" in columns
    written = [Table.open(t.path).to_arrow(["id", *columns]).sort_by("id") for t in tables]
    assert written[0].equals(written[1])


def test_ctrl_c_stops_every_worker_keeping_what_they_committed(tmp_path: Path) -> None:
    reference = fragmented_table(tmp_path / "reference.lance")
    run_step(reference, DigestStep(), RunOptions(batch_size=2))
    table = fragmented_table(tmp_path / "t.lance")
    first_log = tmp_path / "first.log"
    code = INTERRUPTED_RUN.format(tests=str(Path(__file__).parent), table=table.path, log=str(first_log))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (
        not (first_log.exists() and len(first_log.read_text().split()) >= 4) and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)  # the parent only: it passes Ctrl-C on to its workers
    out, _ = proc.communicate(timeout=60)

    assert proc.returncode == 130 and "interrupted after" in out, out
    committed = {r["id"] for r in rows_of(table) if r["digest_status"] is not None}
    assert 0 < len(committed) < 24 and committed <= set(first_log.read_text().split())
    second_log = tmp_path / "second.log"
    run_step(Table.open(table.path), DigestStep(log=str(second_log)), RunOptions(procs=2, batch_size=2))
    assert not committed & set(second_log.read_text().split()), "no committed row is done again"
    assert rows_of(table) == rows_of(reference)
