"""The once-only work of a step run, done by the one process that owns the run (never by a shard):
before the rows (check, columns, reopened rows, --redo) and after them (provenance, versions, tag, the
step's global part)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from vlcli import __version__
from vlcli.errors import UsageError
from vlcli.steps.base import RunOptions, Step, StepReport
from vlcli.table.schema import status_column
from vlcli.table.storage import Table


def begin(table: Table, step: Step, opts: RunOptions, report: StepReport) -> None:
    """Before any row: check the settings, add the step's columns, reopen stale rows, apply --redo.

    A shard only checks: its parent (or an earlier run) did the rest."""
    step.check(table)
    if opts.shard is not None:
        missing = [c.name for c in step.columns() if c.name not in table.schema.names]
        if missing:
            raise UsageError(
                f"the table has no {missing[-1]} column yet: run `vl {step.name} TABLE --limit 0` once "
                "without --shard to add the step's columns, then start the shards"
            )
        return
    table.ensure_columns(c.field() for c in step.columns())
    if not opts.redo:
        step.reopen(table)
    report.changed_settings = _changed_settings(table, step)
    if opts.redo or (opts.redo_if_changed and report.changed_settings):
        _reset(table, step)
        # Recorded now, so a rerun after an interruption resumes the redo instead of starting it over.
        _record_provenance(table, step, rows=0)


def pending_where(table: Table, step: Step, opts: RunOptions) -> str:
    """The predicate of the rows this run takes: the step's pending rows, --where, and the shard."""
    where = step.pending_filter(opts.retry_errors, table.schema.names)
    if opts.where:
        where = f"({where}) AND ({opts.where})"
    if opts.shard is not None:
        where = f"({where}) AND {opts.shard.predicate()}"
    return where


def end(table: Table, step: Step, report: StepReport) -> None:
    """After the rows: record provenance and tag the version (when rows ran), free the models, then run
    the step's global part."""
    if report.processed or report.pending:
        _finish(table, step, report)  # records provenance, which names the loaded models
    step.close()  # the global part needs no model: free them before it
    report.summary = step.finish(table)


# Settings that change how a step runs, not what it writes: a change makes no row stale.
OPERATIONAL_SETTINGS = frozenset(
    {"concurrency", "base_url", "api_key_env", "max_retries", "trust_remote_code", "all_rows", "device"}
)


def _changed_settings(table: Table, step: Step) -> dict[str, tuple[Any, Any]]:
    """Parameters that differ from the last recorded run: rows done then are stale (see --redo)."""
    last = table.metadata().get(f"provenance.{step.name}", {}).get("params", {})
    now = json.loads(json.dumps(step.provenance(), default=str))  # as stored: tuples become lists
    return {
        k: (last.get(k), v)
        for k, v in now.items()
        if k in last and last[k] != v and not isinstance(v, dict) and k not in OPERATIONAL_SETTINGS
    }


def _reset(table: Table, step: Step) -> None:
    """Set the step's status back to NULL on every row so all of them are redone (resumably)."""
    status = status_column(step.name).field()
    ids: list[str] = []
    for batch in table.scan(["id"], f"{step.status} IS NOT NULL", batch_size=65_536):
        ids.extend(batch.column("id").to_pylist())
    table.write_back(pa.table({"id": ids, status.name: pa.nulls(len(ids), pa.string())}))


def _record_provenance(table: Table, step: Step, rows: int) -> None:
    table.set_metadata(
        f"provenance.{step.name}",
        {
            "vl_version": __version__,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "params": step.provenance(),
            "rows": rows,
        },
    )


def _finish(table: Table, step: Step, report: StepReport) -> None:
    _record_provenance(table, step, report.processed)
    table.cleanup()
    report.tag = table.tag(step.name)
