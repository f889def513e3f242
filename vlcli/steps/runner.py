"""`run_step`: one step over every pending row of a table, in this process, in worker processes (one
per shard) or on a Ray cluster; the once-only work around the rows is always done here, once."""

from __future__ import annotations

import time
from typing import Any

from vlcli.errors import UsageError
from vlcli.steps.base import Progress, RunOptions, Shard, Step, StepReport
from vlcli.steps.lifecycle import begin, end, pending_where
from vlcli.steps.local import run_rows
from vlcli.steps.procs import run_rows_in_processes, visible_gpus
from vlcli.steps.ray_engine import run_rows_on_ray
from vlcli.table.storage import Table


def run_step(
    table: Table, step: Step, options: RunOptions | None = None, progress: Progress | None = None
) -> StepReport:
    """Run `step` over every pending row of `table`, committing as it goes; resumable at any point."""
    opts = options or RunOptions()
    try:
        return _run(table, step, opts, progress)
    finally:
        step.close()


def _run(table: Table, step: Step, opts: RunOptions, progress: Progress | None) -> StepReport:
    report = StepReport(step=step.name, retry_errors=opts.retry_errors)
    started = time.perf_counter()
    begin(table, step, opts, report)
    where = pending_where(table, step, opts)
    pending = table.count(where)
    report.pending = pending if opts.limit is None else min(pending, opts.limit)
    if progress is not None:
        progress.start(step.name, report.pending)
    try:
        if report.pending and opts.workers_processes > 1:
            run_rows_in_processes(table, step, opts, where, report, progress)
        elif report.pending and opts.engine == "ray":
            run_rows_on_ray(table, step, opts, where, report, progress)
        elif report.pending:
            run_rows(table, step, opts, where, report, progress)
    finally:
        report.seconds = time.perf_counter() - started
        if progress is not None:
            progress.finish()
    if opts.shard is None:
        end(table, step, report)
    report.seconds = time.perf_counter() - started
    return report


def parse_gpus(text: str | None) -> tuple[str, ...]:
    """`--gpus`: `all` (every GPU this machine shows) or a list of device ids like `0,1`."""
    if text is None:
        return ()
    if text.strip() == "all":
        found = visible_gpus()
        if not found:
            raise UsageError(
                "--gpus all: no GPU found on this machine; use --procs N for CPU worker processes"
            )
        return found
    ids = tuple(part.strip() for part in text.split(",") if part.strip())
    if not ids or not all(i.isdigit() for i in ids) or len(set(ids)) != len(ids):
        raise UsageError(f"--gpus must be all or distinct device ids like 0,1 (not {text!r})")
    return ids


def scale_options(
    shard: str | None,
    procs: int,
    gpus: str | None,
    engine: str,
    address: str | None,
    gpus_per_worker: float | None,
) -> dict[str, Any]:
    """The RunOptions fields of the scale-out flags (--shard, --procs, --gpus, --engine, ...)."""
    if engine != "ray" and (address is not None or gpus_per_worker is not None):
        raise UsageError("--address and --gpus-per-worker go with --engine ray")
    return {
        "shard": Shard.parse(shard) if shard is not None else None,
        "procs": procs,
        "gpus": parse_gpus(gpus),
        "engine": engine,
        "address": address,
        "gpus_per_worker": gpus_per_worker,
    }
