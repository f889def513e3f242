"""`vl status TABLE`: per-step done / pending / skipped / error counts, versions, tags and size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table as RichTable

from vlcli.cli.common import console, handles_errors, plural
from vlcli.status import TableStatus, table_status
from vlcli.storage import Table

# The parts of the ingest summary worth a line; `--json` has all of it.
LAST_INGEST_KEYS = ("source", "seen", "added", "duplicates", "errors", "finished")


@handles_errors
def command(
    table: Annotated[Path, typer.Argument(help="The table (a Lance folder).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show how far every step has got: done, pending, blocked, skipped and errors with top reasons."""
    status = table_status(Table.open(table))
    if as_json:
        print(json.dumps(status.to_dict(), indent=2, default=str))
        return
    render(status)


def render(status: TableStatus) -> None:
    """Print a status snapshot as rich tables."""
    console.print(
        f"[bold]{escape(status.path)}[/]: {status.rows:,} rows, {human_bytes(status.size_bytes)} on disk, "
        f"version {status.version} ({plural(status.versions, 'table version')} kept)",
        highlight=False,
        soft_wrap=True,
    )
    counts = RichTable("step", "done", "pending", "blocked", "skipped", "errors", "last run", box=None)
    for s in status.steps:
        counts.add_row(
            s.step,
            f"[green]{s.done:,}[/]",
            f"{s.pending:,}",
            _dim_zero(s.blocked),
            _dim_zero(s.skipped, "yellow"),
            _dim_zero(s.errors, "red"),
            str((s.provenance or {}).get("finished", "")),
        )
    console.print(counts)
    reasons = RichTable("step", "top reasons", "rows", box=None, header_style="dim")
    for s in status.steps:
        for reason, n in s.reasons:
            reasons.add_row(s.step, escape(reason), f"{n:,}")
    if reasons.row_count:
        console.print(reasons)
    if status.decisions:
        verdicts = ", ".join(f"{name} {n:,}" for name, n in status.decisions.items())
        console.print(f"filter decisions: {verdicts}", highlight=False)
    if any(s.blocked for s in status.steps):
        console.print(
            "blocked: not done, and the step would not take the row now: its ingest failed, the filter "
            "rejected it, an earlier step has not done it yet or (synth) the bin step did not select it",
            style="dim",
        )
    if status.tags:
        tags = ", ".join(f"{name}" for name, _ in sorted(status.tags.items(), key=lambda kv: kv[1]))
        console.print(f"tags: {tags}", highlight=False)
    if status.last_run:
        console.print(
            f"last run: {run_summary_line(status.last_run)}", highlight=False, markup=False, soft_wrap=True
        )
    if status.last_ingest:
        shown = [k for k in LAST_INGEST_KEYS if k in status.last_ingest]
        summary = ", ".join(f"{k} {status.last_ingest[k]}" for k in shown)
        console.print(f"last ingest: {summary}", highlight=False, markup=False, soft_wrap=True)


def run_summary_parts(summary: dict[str, Any]) -> list[str]:
    """`vl run`'s stored summary as short phrases: rows, kept, bins, Q/A, seconds per step."""
    parts = [f"{summary.get('rows', 0):,} rows ({summary.get('ingested', 0):,} images)"]
    if "kept" in summary:
        parts.append(f"{summary['kept']:,} kept by the filter")
    if summary.get("bins"):
        parts.append("bins " + " ".join(f"{b}={n:,}" for b, n in summary["bins"].items()))
    if "qa_generated" in summary:
        parts.append(f"{summary['qa_generated']:,} Q/A generated")
    if "qa_valid" in summary:
        parts.append(f"{summary['qa_valid']:,} Q/A valid")
    seconds = summary.get("seconds", {})
    parts.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    return parts


def run_summary_line(summary: dict[str, Any]) -> str:
    """The stored summary in one line, with when it finished and its preset."""
    head = f"{summary.get('finished', '')} (preset {summary.get('preset', 'default')}, {summary.get('total_seconds', 0):.1f}s)"
    return "; ".join([head, *run_summary_parts(summary)])


def _dim_zero(n: int, colour: str | None = None) -> str:
    if n == 0:
        return "[dim]0[/]"
    return f"[{colour}]{n:,}[/]" if colour else f"{n:,}"


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB'."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
