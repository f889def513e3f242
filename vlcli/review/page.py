"""`vl show`: one self-contained HTML review page of a table: counts per step, thumbnails with their crop
box, filter verdicts, duplicate groups, bins, OCR, objects, captions and Q/A with their validation."""

from __future__ import annotations

import base64
import functools
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
from PIL import Image

from vlcli.errors import QueryError, UsageError
from vlcli.exports.views import default_workers, map_rows
from vlcli.images import ImageProblem, decode, encode, upright_size
from vlcli.review.cards import Card, QASummary, ReviewReport, Summary, Thumb
from vlcli.review.html import REASON_CHARS, render_page
from vlcli.review.status import outcome_counts, pending_where
from vlcli.steps.base import Progress
from vlcli.steps.filter.contamination import remembered
from vlcli.table.predicate import Predicate, conjoin, parse_where
from vlcli.table.schema import step_names
from vlcli.table.storage import Table, table_exists
from vlcli.text import one_line

DEFAULT_LIMIT = 500
DEFAULT_THUMB_SIZE = 256
THUMB_QUALITY = 80
# Image rows are big: small scan batches keep memory flat while the pool makes thumbnails.
SCAN_ROWS = 32
TOP_REASONS = 10
# A card's status for a step that has not done the row and would not take it now (`vl status`: blocked).
BLOCKED = "blocked"
# Everything a card can show; only those the table has are read (never `embedding` or `synth_raw`).
CARD_COLUMNS = (
    "id",
    "source",
    "dataset",
    "width",
    "height",
    "format",
    "image",
    "nsfw_score",
    "dup_of",
    "contam_of",
    "contam_distance",
    "filter_keep",
    "filter_reason",
    "crop_box",
    "crop_score",
    "ocr_text",
    "objects",
    "num_objects",
    "caption",
    "clip_score",
    "bin",
    "bin_selected",
    "synth_qa",
    "validate_results",
    "valid_count",
)


def write_review(
    table: Table,
    out: str | os.PathLike[str],
    where: str | Predicate | None = None,
    limit: int | None = DEFAULT_LIMIT,
    *,
    thumb_size: int = DEFAULT_THUMB_SIZE,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ReviewReport:
    """Write the review page of the rows matching `where` (all rows by default), at most `limit` cards,
    to `out`; the header counts always cover the whole table."""
    started = time.perf_counter()
    _check_options(limit, thumb_size, workers)
    condition = parse_where(where)  # once: one condition, nothing after a ';' silently dropped
    snapshot = table.snapshot()  # one version for counts and cards, whatever commits meanwhile
    selected = _count(snapshot, condition)
    order, context = card_order(snapshot, conjoin(condition), limit)
    cards = load_cards(snapshot, order, context, thumb_size, workers or default_workers(), progress)
    summary = summarize(snapshot)
    report = ReviewReport(
        path=str(Path(out).resolve()),
        rows=summary.rows,
        selected=selected,
        cards=len(cards),
        context=sum(c.context for c in cards),
        where=None if condition is None else condition.text,
    )
    report.thumbnail_errors.update(c.thumb.problem for c in cards if c.thumb.problem)
    page = render_page(snapshot.path, summary, cards, report, limit=limit, thumb_size=thumb_size)
    report.bytes_written = _write_atomically(Path(out), page.encode("utf-8"))
    report.seconds = time.perf_counter() - started
    return report


def _check_options(limit: int | None, thumb_size: int, workers: int | None) -> None:
    if limit is not None and limit < 0:
        raise UsageError("--limit must be 0 or more")
    if not 32 <= thumb_size <= 1024:
        raise UsageError("--thumb-size must be between 32 and 1024")
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")


def _count(table: Table, where: Predicate | None) -> int:
    try:
        return table.count(conjoin(where))
    except QueryError as exc:
        raise QueryError(f"--where {str(where)!r}: {exc}") from exc


# --- which rows, in which order ------------------------------------------------------------------


def card_order(table: Table, where: str | None, limit: int | None) -> tuple[list[str], set[str]]:
    """Ids of the cards in page order: each near-duplicate group together, its kept row first (pulled in
    when `where` leaves it out: the `context` set), at most `limit` cards."""
    if limit == 0:
        return [], set()
    if "dup_of" not in table.schema.names:
        ids = [i for b in table.scan(["id"], where, limit=limit) for i in b.column(0).to_pylist()]
        return ids, set()
    frame = pl.from_arrow(table.to_arrow(["id", "dup_of"], where))
    assert isinstance(frame, pl.DataFrame)
    frame = (
        frame.with_row_index("pos")
        .with_columns(root=pl.coalesce("dup_of", "id"))
        .with_columns(
            first=pl.col("pos").min().over("root"), root_selected=pl.col("root").is_in(frame["id"].implode())
        )
        .sort(["first", pl.col("dup_of").is_not_null(), "pos"])
    )
    if limit is not None:
        frame = frame.head(limit)
    order: list[str] = []
    context: set[str] = set()
    previous = None
    for row_id, root, root_selected in frame.select("id", "root", "root_selected").iter_rows():
        if root != previous and not root_selected:
            order.append(root)
            context.add(root)
        order.append(row_id)
        previous = root
    return (order if limit is None else order[:limit]), context


def card_columns(schema: pa.Schema) -> list[str]:
    """The columns a card shows that the table has, plus every step's status column."""
    statuses = [f"{s}_status" for s in step_names(schema)]
    return [c for c in CARD_COLUMNS if c in schema.names] + statuses


def load_cards(
    table: Table,
    order: Sequence[str],
    context: set[str],
    thumb_size: int,
    workers: int,
    progress: Progress | None = None,
) -> list[Card]:
    """Read the rows in `order` and make their thumbnails on `workers` threads; cards come back in order."""
    if not order:
        return []
    columns = card_columns(table.schema)
    predicate = "id IN (" + ", ".join(_sql_string(i) for i in dict.fromkeys(order)) + ")"
    by_id: dict[str, Card] = {}

    def job(batch: pa.RecordBatch) -> list[Callable[[], Thumb]]:
        images = batch.column("image").to_pylist() if "image" in batch.schema.names else [None] * len(batch)
        return [functools.partial(thumbnail, data, thumb_size) for data in images]

    if progress is not None:
        progress.start("show", len(order))
    try:
        batches = table.scan(columns, predicate, batch_size=SCAN_ROWS)
        for batch, thumbs in map_rows(batches, job, workers):
            rows = batch.drop_columns(["image"]) if "image" in batch.schema.names else batch
            for row, thumb in zip(rows.to_pylist(), thumbs, strict=True):
                by_id.setdefault(row["id"], Card(row=row, thumb=thumb, context=row["id"] in context))
            if progress is not None:
                progress.advance(batch.num_rows, sum(t.problem is not None for t in thumbs))
    finally:
        if progress is not None:
            progress.finish()
    cards = [by_id[i] for i in order if i in by_id]  # a dup_of naming a row that is gone has no card
    _mark_groups(cards)
    _mark_blocked(table, cards)
    _attach_matches(table, cards, thumb_size)
    return cards


def _attach_matches(table: Table, cards: list[Card], thumb_size: int) -> None:
    """Give each contaminated card the thumbnail of the evaluation image it matched, read from its
    reference table (a reference no longer remembered or gone shows no picture)."""
    wanted: dict[str, dict[str, list[Card]]] = {}  # reference name -> evaluation id -> cards
    for card in cards:
        name, _, ref_id = str(card.row.get("contam_of") or "").rpartition(":")
        if name:
            wanted.setdefault(name, {}).setdefault(ref_id, []).append(card)
    paths = {r["name"]: r["path"] for r in remembered(table)}
    for name, by_id in wanted.items():
        if name not in paths or not table_exists(paths[name]):
            continue
        predicate = "id IN (" + ", ".join(_sql_string(i) for i in by_id) + ")"
        for batch in Table.open(paths[name]).scan(["id", "image"], predicate, batch_size=SCAN_ROWS):
            for ref_id, data in zip(batch.column("id").to_pylist(), batch.column("image").to_pylist()):
                match = thumbnail(data, thumb_size)
                for card in by_id.get(ref_id, []):
                    card.match = match


def _mark_blocked(table: Table, cards: list[Card]) -> None:
    """Say BLOCKED for each NULL status its step would not take now, as `vl status` counts it."""
    meta = table.metadata()
    for step in step_names(table.schema):
        status = f"{step}_status"
        waiting = [c for c in cards if status in c.row and c.row[status] is None]
        where = pending_where(table, step, meta)
        if not waiting or where is None:
            continue
        chosen = "id IN (" + ", ".join(_sql_string(c.row["id"]) for c in waiting) + ")"
        try:
            pending = {
                i for b in table.scan(["id"], f"({where}) AND {chosen}") for i in b.column(0).to_pylist()
            }
        except QueryError:
            pending = set()  # the predicate names a column an earlier step has not added: nothing is ready
        for card in waiting:
            if card.row["id"] not in pending:
                card.row[status] = BLOCKED


def _mark_groups(cards: list[Card]) -> None:
    """Consecutive cards sharing a kept id (two or more) form a duplicate group."""
    roots = [c.row.get("dup_of") or c.row["id"] for c in cards]
    sizes = Counter(roots)
    for card, root in zip(cards, roots, strict=True):
        if sizes[root] > 1:
            card.group = root


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --- thumbnails ----------------------------------------------------------------------------------


def thumbnail(data: bytes | None, size: int = DEFAULT_THUMB_SIZE, quality: int = THUMB_QUALITY) -> Thumb:
    """The whole upright image with its long side at most `size`, as a JPEG data URL; JPEGs decode in
    draft mode at the smallest scale that still covers `size`. Never raises for bad bytes."""
    if data is None:
        return Thumb(problem="no image bytes")
    try:
        (width, height), _ = upright_size(data)
        long_side, short_side = max(width, height), min(width, height)
        min_side = max(1, math.ceil(size * short_side / long_side)) if long_side > size else None
        img = decode(data, min_side=min_side)
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        jpeg = encode(img, "JPEG", quality)
    except ImageProblem as exc:
        return Thumb(problem=str(exc))
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    return Thumb(url=url, width=width, height=height)


# --- header counts -------------------------------------------------------------------------------


def summarize(table: Table) -> Summary:
    """Counts per step and reason, filter verdicts, bin sizes and Q/A validity over the whole table,
    reading only the columns counted (one lazy scan, several group-bys)."""
    names = table.schema.names
    lf = table.lazy()
    return Summary(
        rows=table.count(),
        steps=outcome_counts(table),
        decisions=_decisions(lf) if "filter_keep" in names else None,
        bins=_bins(lf, "bin_selected" in names) if "bin" in names else None,
        qa=_qa(lf, "validate_results" in names) if "synth_qa" in names else None,
    )


def _decisions(lf: pl.LazyFrame) -> list[tuple[str, int]]:
    verdict = pl.when(pl.col("filter_keep")).then(pl.lit("kept")).otherwise(pl.col("filter_reason"))
    frame = (
        lf.filter(pl.col("filter_keep").is_not_null())
        .group_by(verdict.fill_null("rejected").alias("k"))
        .agg(pl.len().alias("n"))
        .collect()
    )
    return sorted(((str(k), int(n)) for k, n in frame.iter_rows()), key=lambda kv: (kv[0] != "kept", -kv[1]))


def _bins(lf: pl.LazyFrame, has_selected: bool) -> list[tuple[str, int, int]]:
    selected = pl.col("bin_selected").fill_null(False).sum() if has_selected else pl.lit(0)
    frame = (
        lf.group_by(pl.col("bin").fill_null("none").alias("k"))
        .agg(pl.len().alias("n"), selected.alias("s"))
        .sort("k")
        .collect()
    )
    rows = [(str(k), int(n), int(s)) for k, n, s in frame.iter_rows()]
    return sorted(rows, key=lambda r: r[0] == "none")  # unassigned last


def _qa(lf: pl.LazyFrame, has_validation: bool) -> QASummary:
    items = pl.col("synth_qa").list.len().fill_null(0)
    exprs = [(items > 0).sum().alias("rows"), items.sum().alias("items")]
    if has_validation:
        verdicts = pl.col("validate_results").list.eval(pl.element().struct.field("valid"))
        exprs += [
            pl.col("validate_results").list.len().fill_null(0).sum().alias("validated"),
            verdicts.list.eval(pl.element().cast(pl.Int64)).list.sum().fill_null(0).sum().alias("valid"),
            verdicts.list.eval((~pl.element()).cast(pl.Int64)).list.sum().fill_null(0).sum().alias("invalid"),
        ]
    counts = lf.select(exprs).collect().row(0, named=True)
    number = {k: int(v or 0) for k, v in counts.items()}
    out = QASummary(
        rows=number["rows"],
        items=number["items"],
        validated=number.get("validated", 0),
        valid=number.get("valid", 0),
        invalid=number.get("invalid", 0),
    )
    if has_validation:
        reasons = (
            lf.select(pl.col("validate_results").explode().alias("r"))
            .filter(pl.col("r").struct.field("valid").not_())
            .select(pl.col("r").struct.field("reasons").explode().alias("k"))
            .drop_nulls()
            .group_by("k")
            .agg(pl.len().alias("n"))
            .collect()
        )
        folded: Counter[str] = Counter()
        for reason, n in reasons.iter_rows():
            folded[one_line(reason, REASON_CHARS)] += n
        out.reasons = folded.most_common(TOP_REASONS)
    return out


# --- output --------------------------------------------------------------------------------------


def _write_atomically(path: Path, data: bytes) -> int:
    """Write `data` to `path` through a temporary file beside it, so a crash never leaves half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(data)
