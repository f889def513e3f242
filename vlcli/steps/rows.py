"""The per-row work every engine shares: prepare rows, process them (a failing batch row by row), turn
results into the step's columns, and commit them in windows."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from vlcli.errors import StepInterrupted
from vlcli.steps.base import Progress, RunOptions, Step, StepReport, error_status
from vlcli.table.storage import Table

Prepared = tuple[str, bool, Any]  # (id, ok, prepared value or status text)


def held_bytes(value: Any, depth: int = 0) -> int:
    """Bytes a prepared value holds in pixels and buffers: images, arrays and bytes, also inside tuples,
    lists, dicts and objects' attributes (a few levels down)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    nbytes = getattr(value, "nbytes", None)  # numpy arrays, torch tensors
    if isinstance(nbytes, int):
        return nbytes
    if hasattr(value, "getbands") and isinstance(getattr(value, "size", None), tuple):  # a PIL image
        width, height = value.size
        return int(width * height * len(value.getbands()))
    if depth >= 3 or isinstance(value, (str, int, float)):
        return 0
    if isinstance(value, dict):
        return sum(held_bytes(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(held_bytes(v, depth + 1) for v in value)
    return sum(held_bytes(v, depth + 1) for v in getattr(value, "__dict__", {}).values())


Chunk = list[tuple[Prepared, int]]  # prepared rows with the bytes each holds


def prepare_chunk(step: Step, rows: list[dict[str, Any]]) -> Chunk:
    out: Chunk = []
    for row in rows:
        try:
            value = step.prepare(row)
            out.append(((row["id"], True, value), held_bytes(value)))
        except Exception as exc:
            out.append(((row["id"], False, error_status(exc)), 0))
    return out


def _normalise(step: Step, result: dict[str, Any]) -> dict[str, Any]:
    status = result.get(step.status) or "ok"
    if not (status == "ok" or status.startswith("skipped") or status.startswith("error")):
        raise ValueError(f"{step.name}: bad status {status!r} (use ok, 'skipped: why' or 'error: why')")
    row = {c.name: result.get(c.name) for c in step.writes}
    row[step.status] = status
    return row


def _failed(step: Step, status: str) -> dict[str, Any]:
    row: dict[str, Any] = {c.name: None for c in step.writes}
    row[step.status] = status
    return row


def _process_one(step: Step, value: Any) -> dict[str, Any]:
    try:
        outs = step.process([value])
        if len(outs) != 1:
            raise RuntimeError(f"{step.name}.process returned {len(outs)} results for 1 row")
        return _normalise(step, outs[0])
    except Exception as exc:
        return _failed(step, error_status(exc))


def process_prepared(step: Step, prepared: Sequence[Prepared]) -> list[dict[str, Any]]:
    """Results in input order; a failing batch falls back to row by row so one bad row fails alone."""
    results = {row_id: _failed(step, value) for row_id, ok, value in prepared if not ok}
    good = [(row_id, value) for row_id, ok, value in prepared if ok]
    if good:
        try:
            outs = step.process([v for _, v in good])
            if len(outs) != len(good):
                raise RuntimeError(f"{step.name}.process returned {len(outs)} results for {len(good)} rows")
            results.update(
                {row_id: _normalise(step, out) for (row_id, _), out in zip(good, outs, strict=False)}
            )
        except Exception:
            results.update({row_id: _process_one(step, value) for row_id, value in good})
    return [{"id": row_id, **results[row_id]} for row_id, _, _ in prepared]


def results_table(step: Step, rows: list[dict[str, Any]]) -> pa.Table:
    schema = pa.schema([pa.field("id", pa.string()), *(c.field() for c in step.columns())])
    return pa.Table.from_pylist(rows, schema=schema)


class Committer:
    """Buffers finished rows and commits them every `commit_rows` rows or `commit_seconds`.

    Each commit rewrites the touched fragments' copy of the step's columns, so committing every
    small batch would write far more than the columns hold; a crash loses at most one window.
    """

    def __init__(self, table: Table, step: Step, opts: RunOptions, report: StepReport) -> None:
        self.table, self.step, self.opts, self.report = table, step, opts, report
        self.rows: list[dict[str, Any]] = []
        self.last = time.monotonic()

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Buffer rows; commit when the window is full."""
        self.rows.extend(rows)
        if (
            len(self.rows) >= self.opts.commit_rows
            or time.monotonic() - self.last >= self.opts.commit_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Commit whatever is buffered."""
        if self.rows:
            self.table.write_back(results_table(self.step, self.rows))
            for r in self.rows:
                self.report.count(r[self.step.status])
            self.rows = []
        self.last = time.monotonic()


def commit_all(
    results: Iterable[list[dict[str, Any]]], committer: Committer, progress: Progress | None
) -> None:
    """Commit every batch of finished rows in windows, telling `progress`; Ctrl-C keeps what was committed."""
    step, report = committer.step, committer.report
    try:
        for rows in results:
            committer.add(rows)
            if progress is not None:
                progress.advance(len(rows), sum(r[step.status].startswith("error") for r in rows))
        committer.flush()
    except KeyboardInterrupt:
        committer.flush()  # finished rows are kept; the batches in flight are abandoned
        report.interrupted = True
        raise StepInterrupted(
            f"{step.name} interrupted after {report.processed} rows; everything committed is kept: "
            "rerun the same command to resume",
            report,
        ) from None
