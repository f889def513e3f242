"""`run_step`: one step over every pending row of a table, in this process, in worker processes (one
per shard) or on a Ray cluster; the once-only work around the rows is always done here, once."""

from __future__ import annotations

import time

from vlcli.steps.base import Progress, RunOptions, Step, StepReport
from vlcli.steps.lifecycle import begin, end, pending_where
from vlcli.steps.local import run_rows
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
        if report.pending:
            run_rows(table, step, opts, where, report, progress)
    finally:
        report.seconds = time.perf_counter() - started
        if progress is not None:
            progress.finish()
    if opts.shard is None:
        end(table, step, report)
    report.seconds = time.perf_counter() - started
    return report
