"""Where a table stands: per-step done / pending / skipped / error counts, versions, size, provenance."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from vlcli.errors import QueryError
from vlcli.steps import step_class
from vlcli.steps.base import reason_key
from vlcli.table.schema import FILTER_KEEP, step_names
from vlcli.table.storage import Table

TOP_REASONS = 5


@dataclass
class StepStatus:
    """Counts for one step's status column; done + pending + blocked + skipped + errors = rows."""

    step: str
    done: int = 0
    pending: int = 0
    blocked: int = 0
    skipped: int = 0
    errors: int = 0
    reasons: list[tuple[str, int]] = field(default_factory=list)
    provenance: dict[str, Any] | None = None

    @property
    def total(self) -> int:
        """Every row the counts cover."""
        return self.done + self.pending + self.blocked + self.skipped + self.errors


@dataclass
class TableStatus:
    """A snapshot of a table: rows, per-step counts, versions, tags, size and recorded metadata."""

    path: str
    rows: int
    version: int
    versions: int
    tags: dict[str, int]
    size_bytes: int
    steps: list[StepStatus]
    last_ingest: dict[str, Any] | None = None
    decisions: dict[str, int] | None = None  # the filter's verdicts: "kept" or a reason -> rows
    last_run: dict[str, Any] | None = None  # the summary `vl run` stored at its end

    def step(self, name: str) -> StepStatus:
        """The counts of the step called `name`."""
        for s in self.steps:
            if s.step == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (reasons as {reason: rows})."""
        out = asdict(self)
        for step in out["steps"]:
            step["reasons"] = dict(step["reasons"])
        return out


def table_status(table: Table) -> TableStatus:
    """Count every step's outcomes, reading only the status columns (never image bytes)."""
    meta = table.metadata()
    steps = step_names(table.schema)
    counts = _status_counts(table, steps, meta) if steps else {}
    last_ingest = meta.get("ingest.last")
    # ingest records its run under `ingest.last`; model steps under `provenance.<step>`
    provenance = {name: meta.get(f"provenance.{name}") for name in steps}
    if provenance.get("ingest") is None:
        provenance["ingest"] = last_ingest
    return TableStatus(
        path=table.path,
        rows=table.count(),
        version=table.version,
        versions=table.versions(),
        tags=table.tags(),
        size_bytes=table.size_on_disk(),
        steps=[_step_status(name, counts[name], provenance[name]) for name in steps],
        last_ingest=last_ingest,
        decisions=_decisions(table),
        last_run=meta.get("run"),
    )


def _decisions(table: Table) -> dict[str, int] | None:
    """Rows kept and rejected by reason, from the filter's keep/reason columns (when present)."""
    if FILTER_KEEP.name not in table.schema.names:
        return None
    frame = (
        table.lazy()
        .filter(pl.col("filter_keep").is_not_null())
        .group_by(
            pl.when(pl.col("filter_keep")).then(pl.lit("kept")).otherwise(pl.col("filter_reason")).alias("k")
        )
        .agg(pl.len().alias("n"))
        .collect()
    )
    return {str(k): int(n) for k, n in sorted(frame.iter_rows(), key=lambda kv: -kv[1])}


# status value (None: not done) -> rows, and how many of the rows not done the step would take now
_Counts = tuple[dict[str | None, int], int]


def _status_counts(table: Table, steps: list[str], meta: dict[str, Any]) -> dict[str, _Counts]:
    """One group-by per status column (a single lazy scan of the status columns), and per step the rows
    its runner would take now, counted with the runner's own predicate and the step's recorded settings."""
    lf = table.lazy()
    queries = [lf.group_by(pl.col(f"{s}_status").alias("status")).agg(pl.len().alias("n")) for s in steps]
    frames = pl.collect_all(queries)
    out: dict[str, _Counts] = {}
    for step, frame in zip(steps, frames, strict=True):
        by_status = {row["status"]: int(row["n"]) for row in frame.iter_rows(named=True)}
        out[step] = by_status, _pending(table, step, meta, by_status.get(None, 0))
    return out


def pending_where(table: Table, step: str, meta: dict[str, Any] | None = None) -> str | None:
    """The predicate of the rows `step` would take now, built as its runner builds it, with the settings
    the step last ran with (`meta`: the table's metadata); None for ingest: every row not done."""
    if step == "ingest":
        return None
    meta = table.metadata() if meta is None else meta
    params = (meta.get(f"provenance.{step}") or {}).get("params")
    return step_class(step).todo_filter(False, table.schema.names, params)


def _pending(table: Table, step: str, meta: dict[str, Any], not_done: int) -> int:
    """Rows `step` would take now."""
    where = pending_where(table, step, meta)
    if where is None or not_done == 0:
        return not_done
    try:
        return table.count(where)
    except QueryError:
        return 0  # the predicate names a column an earlier step has not added yet: nothing is ready


def outcome_counts(table: Table) -> dict[str, list[tuple[str, int]]]:
    """Per step: rows ok, pending, blocked, then each skip or error reason, most rows first (no zeros)."""
    steps = step_names(table.schema)
    if not steps:
        return {}
    out: dict[str, list[tuple[str, int]]] = {}
    for step, counts in _status_counts(table, steps, table.metadata()).items():
        status = _step_status(step, counts, None, top=None)
        first = [("ok", status.done), ("pending", status.pending), ("blocked", status.blocked)]
        out[step] = [(k, n) for k, n in first if n] + status.reasons
    return out


def _step_status(
    step: str, counts: _Counts, provenance: dict[str, Any] | None, top: int | None = TOP_REASONS
) -> StepStatus:
    """Fold raw status values into done / pending / blocked / skipped / errors and top reasons."""
    out = StepStatus(step=step, provenance=provenance)
    by_status, out.pending = counts
    out.blocked = by_status.get(None, 0) - out.pending  # not done, and the step would not take them now
    reasons: Counter[str] = Counter()
    for status, n in by_status.items():
        if status is None:
            continue
        if status == "ok":
            out.done += n
        else:
            if status.startswith("skipped"):
                out.skipped += n
            else:
                out.errors += n
            reasons[reason_key(status)] += n
    out.reasons = reasons.most_common(top)
    return out
