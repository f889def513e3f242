"""Worker processes: the per-row part of a step run in N child processes, one shard of the table's
fragments each (`--procs N`, `--gpus 0,1`). The parent did the once-only work before the rows and does
it after them; each child runs the in-process engine on its shard, with its own device and threads."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools
import multiprocessing
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from vlcli.errors import StepInterrupted, VlError, WorkerFailed
from vlcli.steps.base import Progress, RunOptions, Shard, Step, StepReport
from vlcli.steps.lifecycle import begin, pending_where
from vlcli.steps.local import run_rows
from vlcli.table.storage import Table
from vlcli.text import first_line, one_line


def visible_gpus() -> tuple[str, ...]:
    """The GPU ids this process may use (`--gpus all`): CUDA_VISIBLE_DEVICES when set, else the GPUs
    `nvidia-smi -L` or torch lists; empty on a machine without one."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = (d.strip() for d in env.split(","))
        # CUDA ignores everything from the first invalid id on ("-1" hides every GPU)
        return tuple(itertools.takewhile(lambda d: d != "" and not d.startswith("-"), ids))
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            listing = subprocess.run(
                [smi, "-L"], capture_output=True, text=True, timeout=30, check=True
            ).stdout
            return tuple(str(i) for i in range(sum(line.startswith("GPU ") for line in listing.splitlines())))
        except (OSError, subprocess.SubprocessError):
            pass
    if importlib.util.find_spec("torch") is None:
        return ()
    import torch

    return tuple(str(i) for i in range(torch.cuda.device_count()))


@dataclasses.dataclass
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    log: str
    error: str | None = None  # the error it reported before exiting
    interrupted: bool = False


def run_rows_in_processes(
    table: Table, step: Step, opts: RunOptions, where: str, report: StepReport, progress: Progress | None
) -> None:
    """The per-row part in `opts.workers_processes` child processes, one shard each: every row matching
    `where` (at most `opts.limit` in all). A failed child does not stop the others; once all have ended
    it raises WorkerFailed naming it. Ctrl-C stops them all, keeping what they committed."""
    count = opts.workers_processes
    logs = tempfile.mkdtemp(prefix=f"vl-{step.name}-workers-")
    workers: list[_Worker] = []
    interrupted = threading.Event()
    try:
        with _forward_interrupts(workers, interrupted):
            for index, child_opts in _child_options(table, opts, where, count):
                if interrupted.is_set():
                    break
                workers.append(_start(table, step, child_opts, _child_environment(opts, index, count), logs))
            _collect(workers, report, progress)
    finally:
        for worker in workers:  # only after an error in this process: the loop above waits for them all
            if worker.process.is_alive():
                worker.process.terminate()
            worker.process.join()
    report.interrupted = interrupted.is_set() or any(w.interrupted for w in workers)
    failed = [w for w in workers if w.process.exitcode != 0]
    if report.interrupted:
        shutil.rmtree(logs, ignore_errors=True)
        raise StepInterrupted(
            f"{step.name} interrupted after {report.processed} rows; everything committed is kept: "
            "rerun the same command to resume",
            report,
        )
    if failed:
        raise WorkerFailed(_failure_message(step, failed, len(workers), count, logs), report)
    shutil.rmtree(logs, ignore_errors=True)


def _child_options(
    table: Table, opts: RunOptions, where: str, count: int
) -> Iterator[tuple[int, RunOptions]]:
    """Each shard with pending rows and its options: its share of --limit and of the prepare workers."""
    shards = [Shard(i, count) for i in range(count)]
    shards = [s for s in shards if table.count(f"({where}) AND {s.predicate()}")]
    workers = max(1, opts.workers // count)
    for n, shard in enumerate(shards):
        limit = None
        if opts.limit is not None:  # split exactly, so the children never take more than the limit
            limit = opts.limit // len(shards) + (n < opts.limit % len(shards))
            if limit == 0:
                continue
        yield (
            shard.index,
            dataclasses.replace(opts, shard=shard, procs=1, gpus=(), workers=workers, limit=limit),
        )


def _start(table: Table, step: Step, opts: RunOptions, env: dict[str, str], logs: str) -> _Worker:
    """Start the child for the shard in `opts`, with `env` (its device, its share of the CPU threads)."""
    assert opts.shard is not None
    index = opts.shard.index
    log = os.path.join(logs, f"worker-{index}.log")
    reader, writer = multiprocessing.get_context("spawn").Pipe(duplex=False)
    # Lance's runtime is not fork-safe: children start fresh and receive the step by pickle.
    process = multiprocessing.get_context("spawn").Process(
        target=_child,
        args=(table.path, table.storage_options, pickle.dumps(step), opts, writer, log),
        name=f"vl-{step.name}-{index}",
    )
    with _environment(env):
        process.start()
    writer.close()  # the child holds the only writer: its end of the pipe closing means it has gone
    return _Worker(index, process, reader, log)


def _child_environment(opts: RunOptions, index: int, count: int) -> dict[str, str]:
    """The variables child `index` of `count` starts with: its GPU (--gpus) and its share of the CPU threads."""
    threads = str(max(1, _cpus() // count))
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if opts.gpus:
        env["CUDA_VISIBLE_DEVICES"] = opts.gpus[index % len(opts.gpus)]
    return env


def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` set in os.environ while the block runs (a spawned child copies the environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _forward_interrupts(workers: list[_Worker], interrupted: threading.Event) -> Iterator[None]:
    """Ctrl-C asks every child to stop (they commit what they finished) instead of stopping this process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame: Any) -> None:
        interrupted.set()
        for worker in workers:
            if worker.process.is_alive() and worker.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _collect(workers: list[_Worker], report: StepReport, progress: Progress | None) -> None:
    """Pass the children's progress on and add up their reports, until every child has gone."""
    open_ = {w.conn: w for w in workers}
    while open_:
        for conn in wait(list(open_), timeout=1.0):
            assert isinstance(conn, Connection)
            try:
                message = conn.recv()
            except (EOFError, OSError, ValueError):  # it exited (or died mid-message)
                conn.close()
                del open_[conn]
                continue
            _receive(open_[conn], message, report, progress)
    for worker in workers:
        worker.process.join()


def _receive(
    worker: _Worker, message: tuple[Any, ...], report: StepReport, progress: Progress | None
) -> None:
    kind, *values = message
    if kind == "advance" and progress is not None:
        progress.advance(*values)
    elif kind == "report":
        done, skipped, errors, reasons, interrupted = values
        report.done += done
        report.skipped += skipped
        report.errors += errors
        report.reasons.update(reasons)
        worker.interrupted = interrupted
    elif kind == "failed":
        worker.error = values[0]


def _failure_message(step: Step, failed: list[_Worker], started: int, count: int, logs: str) -> str:
    parts = []
    for worker in failed:
        code = worker.process.exitcode
        assert code is not None
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"failed (exit code {code})"
        last = worker.error or _last_line(worker.log)
        parts.append(f"worker {worker.index}/{count} {how}" + (f": {last}" if last else ""))
    others = "The other workers finished. " if len(failed) < started else ""
    return one_line(
        f"{step.name}: {'; '.join(parts)}. {others}Every row committed is kept: rerun the same command to "
        f"resume (worker logs: {logs})",
        limit=2000,
    )


def _last_line(log: str) -> str:
    try:
        with open(log, errors="replace") as fh:
            lines = [line.strip() for line in fh.read()[-8192:].splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


class _SendProgress:
    """A child's progress, sent to the parent that draws the one bar."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def start(self, step: str, total: int | None) -> None:
        """The parent started the bar with the whole run's total."""

    def advance(self, rows: int, errors: int) -> None:
        """Send `rows` committed rows (`errors` of them errors) to the parent."""
        self.conn.send(("advance", rows, errors))

    def finish(self) -> None:
        """The parent finishes the bar."""


def _child(
    path: str, storage: dict[str, str], pickled: bytes, opts: RunOptions, conn: Connection, log: str
) -> None:
    """One worker: the in-process engine over its shard; sends its progress and its counts."""
    _redirect_output(log)
    signal.signal(signal.SIGINT, _interrupt_once)
    report = StepReport(step="", retry_errors=opts.retry_errors)
    step: Step | None = None
    error: str | None = None
    try:
        # unpickled here, not by multiprocessing, so a step that cannot load in a child says why in its log
        step = pickle.loads(pickled)  # pickled by the parent a moment ago
        table = Table.open(path, storage)  # the same URI and storage options as the parent's
        begin(table, step, opts, report)  # a shard only checks
        where = pending_where(table, step, opts)
        if table.count(where):
            run_rows(table, step, opts, where, report, _SendProgress(conn))
    except StepInterrupted:
        pass  # the report says so
    except BaseException as exc:
        traceback.print_exc()
        error = first_line(exc) if isinstance(exc, VlError) else f"{type(exc).__name__}: {first_line(exc)}"
    finally:
        if step is not None:
            step.close()
    conn.send(
        ("report", report.done, report.skipped, report.errors, dict(report.reasons), report.interrupted)
    )
    if error is not None:
        conn.send(("failed", error))
        sys.exit(1)


def _redirect_output(log: str) -> None:
    """Everything the child prints (native libraries included) goes to its log, line by line, so the
    parent can quote its last line and the one progress bar stays clean."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)


def _interrupt_once(signum: int, frame: Any) -> None:
    # Ctrl-C reaches a child twice (from the terminal and from the parent): the second must not cut the
    # commit that the first started.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt
