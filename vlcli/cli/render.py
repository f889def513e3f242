"""Everything the CLI prints about a result: the two consoles, and `render(report)` with one renderer
per report type (a step's counts, its summary, ingest, the run, its plan, export, review page, repair,
status). Commands call `render`; nothing else formats a report."""

from __future__ import annotations

from datetime import timedelta
from functools import singledispatch
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from vlcli.exports.export import ExportReport
from vlcli.ingestion.ingest import IngestReport
from vlcli.ingestion.reference import Reference
from vlcli.review.cards import ReviewReport
from vlcli.review.status import TableStatus
from vlcli.run.pipeline import PipelineReport, Plan
from vlcli.steps.base import StepReport, Summary
from vlcli.steps.bin.rules import BINS
from vlcli.steps.bin.step import BinReport, Explanation
from vlcli.steps.filter.step import FilterReport
from vlcli.steps.validate.step import ValidateReport
from vlcli.table.optimize import OptimizeReport
from vlcli.table.repair import RepairReport
from vlcli.table.storage import CompactionPlan

console = Console()
err_console = Console(stderr=True)

# The parts of the ingest summary worth a line in `vl status`; `--json` has all of it.
LAST_INGEST_KEYS = ("source", "seen", "added", "duplicates", "errors", "finished")


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 error', '2 errors' (with thousands separators)."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB'."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@singledispatch
def render(report: Any) -> None:
    """Print a report on the terminal; each report type registers its renderer below."""
    raise TypeError(f"no renderer for {type(report).__name__}")


def human_duration(age: timedelta) -> str:
    """timedelta(days=7) -> '7d', timedelta(minutes=90) -> '90m'."""
    seconds = age.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:g}s"


@render.register
def render_step(report: StepReport) -> None:
    """A step run: counts, changed settings, top reasons, speed, how to resume; then its summary."""
    state = "interrupted" if report.interrupted else "done"
    console.print(
        f"[bold]{report.step}[/] {state}: {report.done:,} ok, {report.skipped:,} skipped, "
        f"{plural(report.errors, 'error')} in {report.seconds:.1f}s ({report.rows_per_second:,.1f} rows/s)",
        highlight=False,
    )
    for key, (before, now) in report.changed_settings.items():
        console.print(
            f"[yellow]note:[/] {key} was {before!r} in the last run and is {now!r} now; rows done before keep "
            "their old values (rerun with --redo to recompute them)",
            highlight=False,
        )
    if report.pending == 0 and not report.interrupted:
        hint = (
            " and no errors to retry"
            if report.retry_errors
            else " (use --retry-errors to redo rows that failed)"
        )
        console.print(f"nothing pending{hint}", style="dim")
    if report.reasons:
        table = RichTable("reason", "rows", box=None, show_header=True, header_style="dim")
        for reason, count in report.reasons.most_common(10):
            table.add_row(reason, f"{count:,}")
        console.print(table)
    if report.summary is not None:
        render(report.summary)


@render.register
def render_summary(report: Summary) -> None:
    """A step's global part with nothing to say beyond its counts."""


@render.register
def render_filter(report: FilterReport) -> None:
    """Kept rows, rejections by reason, duplicate groups."""
    rejected = sum(report.reasons.values())
    console.print(
        f"[bold]filter[/]: {report.kept:,} kept, {rejected:,} rejected of {report.rows:,} rows"
        + (f", {report.not_scored:,} not scored yet" if report.not_scored else ""),
        highlight=False,
    )
    for reason, count in report.reasons.most_common():
        console.print(f"  {reason:<20} {count:,}", highlight=False)
    if report.duplicate_groups:
        console.print(
            f"  {plural(report.duplicate_groups, 'image')} kept with near-duplicates dropped", highlight=False
        )
    if report.references:
        contaminated = report.reasons.get("contaminated", 0)
        console.print(
            f"  {plural(contaminated, 'image')} matching the evaluation sets {', '.join(report.references)}",
            highlight=False,
        )


@render.register
def render_reference(ref: Reference) -> None:
    """The reference table an evaluation set went into."""
    how = f"{ref.added:,} images ingested" if ref.added else "reused"
    console.print(
        f"[bold]reference[/] {ref.name}: {ref.rows:,} images in {ref.path} ({how})", highlight=False
    )


def render_forgotten(count: int) -> None:
    """How many remembered evaluation sets `--forget-against` dropped."""
    console.print(f"no longer checking against {plural(count, 'evaluation set')}", highlight=False)


@render.register
def render_bins(report: BinReport) -> None:
    """Per-bin counts against quotas, and any shortfall."""
    console.print(
        f"[bold]bins[/] ({report.rule} rule, {report.candidates:,} candidate rows):", highlight=False
    )
    for b in BINS:
        short = report.shortfall.get(b)
        note = f"  [yellow]short by {short:,}[/]" if short else ""
        console.print(
            f"  {b}: {report.counts.get(b, 0):,} of quota {report.quotas.get(b, 0):,}{note}", highlight=False
        )
    console.print(f"  unassigned: {report.unassigned:,}", highlight=False)


@render.register
def render_explanation(ex: Explanation) -> None:
    """`vl bin --explain ID`: one image's criteria, ranks and bin."""
    console.print(f"[bold]{ex.image_id}[/]: bin {ex.bin or '-'} (selected: {ex.selected})", highlight=False)
    if ex.caption:
        console.print(f"caption: {ex.caption}", highlight=False, markup=False)
    out = RichTable("bin", "criterion", "value", "test", "passes", box=None)
    for c in ex.criteria:
        mark = "-" if c.passed is None else ("yes" if c.passed else "no")
        out.add_row(c.bin, c.name, "NULL" if c.value is None else str(c.value), c.test, mark)
    console.print(out)
    for metric, (rank, total) in ex.ranks.items():
        console.print(f"rank by {metric}: {rank:,} of {total:,}", highlight=False)


@render.register
def render_validation(report: ValidateReport) -> None:
    """Items, valid items, failures by reason, and what was not validated."""
    checks = f" (model checks: {', '.join(report.checks)})" if report.checks else ""
    console.print(
        f"[bold]validate[/]: {report.valid:,} of {report.items:,} items valid, in {report.rows:,} rows "
        f"({report.rows_with_valid:,} with at least one valid item){checks}",
        highlight=False,
    )
    for reason, count in report.reasons.most_common():
        console.print(f"  {reason:<26} {count:,}", highlight=False)
    if report.not_validated:
        console.print(
            f"  {report.not_validated:,} rows with Q/A not validated yet (pending or failed model checks)",
            highlight=False,
        )
    if report.without_qa:
        console.print(f"  {report.without_qa:,} rows without Q/A", style="dim", highlight=False)
    if report.ungrounded_skipped:
        console.print(
            f"[yellow]note:[/] {report.ungrounded_skipped:,} items have no OCR text, objects or caption for "
            "their image: the image-grounding check was skipped for them (run `vl bin` first)",
            highlight=False,
        )


@render.register
def render_ingest(report: IngestReport) -> None:
    """Counts, duplicates, top error reasons, ignored files, speed."""
    console.print(
        f"[bold]ingest[/]: {report.seen:,} seen = {report.added:,} added + "
        f"{plural(report.duplicates, 'duplicate')} + {plural(report.errors, 'error')}; "
        f"{report.ignored:,} ignored; {report.seconds:.1f}s ({report.mb_per_second:,.1f} MB/s)",
        highlight=False,
        soft_wrap=True,
    )
    if report.duplicates:
        twins = report.duplicates - report.already_in_table
        console.print(
            f"  duplicates: {report.already_in_table:,} already in the table, "
            f"{twins:,} identical to an earlier item of this run (stored once)",
            highlight=False,
            soft_wrap=True,
        )
    if report.reasons:
        reasons = RichTable(box=None, show_header=False, padding=(0, 0, 0, 2))
        for reason, count in report.reasons.most_common(5):
            reasons.add_row(reason, f"{count:,}")
        console.print(reasons)
    if report.ignored:
        kinds = ", ".join(f"{ext} {n:,}" for ext, n in report.ignored_extensions.most_common(5))
        console.print(
            f"  ignored {report.ignored:,} files without an image extension ({kinds})",
            highlight=False,
            soft_wrap=True,
        )
    if report.temp_files_removed:
        console.print(
            f"  removed {plural(report.temp_files_removed, 'temporary file')} left by an interrupted earlier run",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"table: {report.table}", highlight=False, style="dim", soft_wrap=True)


@render.register
def render_plan(p: Plan) -> None:
    """`vl run --dry-run`: source, steps with pending rows and models, nothing written."""
    console.print(f"[bold]plan[/] for {p.table} (preset {p.preset}); nothing was written", highlight=False)
    if p.source is not None:
        items = "unknown number of" if p.source_items is None else f"{p.source_items:,}"
        console.print(f"  ingest: {items} items from {p.source}", highlight=False)
    if p.sample is not None:
        console.print(f"  sample: {p.sample:,} images (seed {p.seed})", highlight=False)
    out = RichTable("step", "pending rows", "models to load", box=None, header_style="dim")
    for s in p.steps:
        pending = "after earlier steps" if s.pending is None else f"{s.pending:,}"
        models = [m + (f" [yellow]({s.missing[m]})[/]" if m in s.missing else "") for m in s.models]
        out.add_row(s.name, pending, ", ".join(models) or "-")
    console.print(out)
    missing = [m for s in p.steps for m in s.missing]
    if missing:
        console.print(
            f"{len(missing)} model(s) are not here yet: a run downloads those on the model hub (it needs "
            "network); offline, use --preset offline or local folders",
            highlight=False,
        )


@render.register
def render_run(report: PipelineReport) -> None:
    """`vl run`'s end: rows in, kept, bins, Q/A, time per step."""
    console.print(f"\n[bold]run done[/] in {report.seconds:.1f}s", highlight=False)
    for part in run_summary_parts(report.summary):
        console.print(f"  {part}", highlight=False)


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


@render.register
def render_export(report: ExportReport) -> None:
    """What was written, what was skipped and how to load it."""
    cropped = f", {report.cropped:,} cropped" if report.cropped else ""
    items = f" ({report.items:,} Q/A items)" if report.note is not None else ""
    console.print(
        f"exported [bold]{report.rows:,}[/] rows{items}{cropped} to {escape(report.target)} "
        f"({report.file_count:,} files, {human_bytes(report.bytes_written)}) in {report.seconds:.1f}s",
        highlight=False,
    )
    if report.note is not None:
        left_out = f"; {report.skipped_items:,} items left out as not valid" if report.skipped_items else ""
        console.print(f"{report.note}{left_out}", style="dim", markup=False, highlight=False, soft_wrap=True)
    if report.images is not None:
        console.print(f"images in {report.images}", style="dim", markup=False, highlight=False)
    if report.skipped:
        reasons = ", ".join(f"{reason} ({n:,})" for reason, n in report.skipped.most_common())
        console.print(
            f"[yellow]skipped {sum(report.skipped.values()):,} rows:[/] {escape(reasons)}",
            highlight=False,
            soft_wrap=True,
        )
    if report.by_dataset:
        console.print("one folder per dataset", style="dim", highlight=False)
    if report.columns:
        console.print(
            f"columns: {', '.join(report.columns)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
            style="dim",
        )
    console.print(
        f"load it with: import datasets; ds = {report.load_hint()}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if report.pushed is not None:
        console.print(f"pushed to {report.pushed}", markup=False, highlight=False, soft_wrap=True)


@render.register
def render_review(report: ReviewReport) -> None:
    """What the review page holds, then its path on a line of its own."""
    of = f"of {report.selected:,} selected rows" if report.where else f"of {report.rows:,} rows"
    context = f" (+{report.context:,} kept twins)" if report.context else ""
    console.print(
        f"review page: [bold]{report.cards:,}[/] cards {of}{context}, {human_bytes(report.bytes_written)}, "
        f"in {report.seconds:.1f}s",
        highlight=False,
    )
    if report.thumbnail_errors:
        reasons = ", ".join(f"{r} ({n:,})" for r, n in report.thumbnail_errors.most_common(5))
        console.print(f"[yellow]no thumbnail:[/] {escape(reasons)}", highlight=False, soft_wrap=True)
    console.print(report.path, markup=False, highlight=False, soft_wrap=True)


@render.register
def render_repair(report: RepairReport) -> None:
    """Duplicate rows and temporary files removed."""
    console.print(
        f"[bold]repair[/]: {plural(report.duplicates_removed, 'duplicate row')} removed, "
        f"{plural(report.temp_files_removed, 'temporary file')} removed "
        f"({report.temp_bytes_removed / 1e6:,.1f} MB) in {report.seconds:.1f}s",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"table: {report.table}", highlight=False, style="dim", soft_wrap=True)


@render.register
def render_compaction(plan: CompactionPlan) -> None:
    """What `vl optimize --compact` would rewrite, image bytes first."""
    if not plan.fragments:
        console.print("compaction: nothing to compact", highlight=False, soft_wrap=True)
        return
    console.print(
        f"[bold]compaction[/] would rewrite {plural(plan.fragments, 'fragment')} "
        f"({plan.rows:,} rows, up to {plan.target_rows:,} a fragment): {human_bytes(plan.bytes)}, "
        f"of which {human_bytes(plan.image_bytes)} image bytes",
        highlight=False,
        soft_wrap=True,
    )


@render.register
def render_optimize(report: OptimizeReport) -> None:
    """Fragments compacted, versions and bytes cleaned."""
    if report.compaction is not None and not report.compaction.fragments:
        render_compaction(report.compaction)
    if report.compaction is not None and report.compaction.fragments and not report.compacted:
        console.print("compaction declined: nothing changed", highlight=False, soft_wrap=True)
    if report.compacted:
        console.print(
            f"[bold]compacted[/]: {plural(report.fragments_removed, 'fragment')} fewer",
            highlight=False,
            soft_wrap=True,
        )
    if report.cleanup is not None:
        console.print(
            f"[bold]cleanup[/]: {plural(report.cleanup.versions, 'version')} older than {human_duration(report.older_than)} "
            f"removed ({human_bytes(report.cleanup.bytes)})",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"table: {report.table}", highlight=False, style="dim", soft_wrap=True)


@render.register
def render_status(status: TableStatus) -> None:
    """`vl status`: per-step counts, top reasons, filter decisions, tags, the last run and ingest."""
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


def _dim_zero(n: int, colour: str | None = None) -> str:
    if n == 0:
        return "[dim]0[/]"
    return f"[{colour}]{n:,}[/]" if colour else f"{n:,}"
