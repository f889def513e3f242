"""Where a table stands: per-step done / pending / skipped / error counts, versions, size, provenance."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from vlcli.schema import INGEST_STATUS, step_names
from vlcli.steps.base import reason_key
from vlcli.storage import Table

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
    synth_all = _synth_takes_all(meta)
    counts = _status_counts(table, steps, synth_all) if steps else {}
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


def _synth_takes_all(meta: dict[str, Any]) -> bool:
    """Whether `vl synth` last ran with --all (every kept row) rather than the bin step's selection."""
    return bool(((meta.get("provenance.synth") or {}).get("params") or {}).get("all_rows"))


def _decisions(table: Table) -> dict[str, int] | None:
    """Rows kept and rejected by reason, from the filter's keep/reason columns (when present)."""
    if "filter_keep" not in table.schema.names:
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


# (status value or None, whether the row can still be taken by the step) -> rows
_Counts = dict[tuple[str | None, bool], int]

# Steps before the filter's decision: they run on every readable row, rejected or not.
_BEFORE_FILTER = ("ingest", "filter")


def _status_counts(table: Table, steps: list[str], synth_all: bool = False) -> dict[str, _Counts]:
    """One group-by per status column, all from a single lazy scan of the status columns."""
    lf = table.lazy()
    names = table.schema.names
    ingest_ok = (
        (pl.col(INGEST_STATUS.name) == "ok").fill_null(False) if INGEST_STATUS.name in names else pl.lit(True)
    )
    kept = pl.col("filter_keep").fill_null(True) if "filter_keep" in names else pl.lit(True)
    # `vl synth` takes only the rows the bin step selected, unless it last ran with --all
    selected = (
        pl.col("bin_selected").fill_null(False) if "bin_selected" in names and not synth_all else pl.lit(True)
    )

    def can_take(step: str) -> pl.Expr:
        if step in _BEFORE_FILTER:
            return ingest_ok
        return ingest_ok & kept & selected if step == "synth" else ingest_ok & kept

    counts = pl.len().alias("n")
    queries = [
        lf.group_by(pl.col(f"{s}_status").alias("status"), can_take(s).alias("ok")).agg(counts) for s in steps
    ]
    frames = pl.collect_all(queries)
    return {
        s: {(row["status"], bool(row["ok"])): int(row["n"]) for row in frame.iter_rows(named=True)}
        for s, frame in zip(steps, frames, strict=True)
    }


def outcome_counts(table: Table) -> dict[str, list[tuple[str, int]]]:
    """Per step: rows ok, pending, blocked, then each skip or error reason, most rows first (no zeros)."""
    steps = step_names(table.schema)
    if not steps:
        return {}
    meta = table.metadata()
    synth_all = _synth_takes_all(meta)
    out: dict[str, list[tuple[str, int]]] = {}
    for step, counts in _status_counts(table, steps, synth_all).items():
        status = _step_status(step, counts, None, top=None)
        first = [("ok", status.done), ("pending", status.pending), ("blocked", status.blocked)]
        out[step] = [(k, n) for k, n in first if n] + status.reasons
    return out


def _step_status(
    step: str, counts: _Counts, provenance: dict[str, Any] | None, top: int | None = TOP_REASONS
) -> StepStatus:
    """Fold raw status values into done / pending / blocked / skipped / errors and top reasons."""
    out = StepStatus(step=step, provenance=provenance)
    reasons: Counter[str] = Counter()
    for (status, ingest_ok), n in counts.items():
        if status is None:
            # A step never takes a row whose ingest failed (nor, after the filter, a rejected row): blocked.
            if ingest_ok or step == "ingest":
                out.pending += n
            else:
                out.blocked += n
        elif status == "ok":
            out.done += n
        else:
            if status.startswith("skipped"):
                out.skipped += n
            else:
                out.errors += n
            reasons[reason_key(status)] += n
    out.reasons = reasons.most_common(top)
    return out
