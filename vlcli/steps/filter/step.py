"""`vl filter`: a per-row part (pHash, NSFW score; resumable) and a global part (bounds, thresholds,
near-duplicate groups) recomputed from the stored columns in seconds, without decoding any image."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from vlcli.backends import create
from vlcli.errors import UsageError
from vlcli.images import decode, decode_budget, shrink
from vlcli.steps.base import Progress, RunOptions, Step, StepReport, StepSpec, Summary
from vlcli.steps.filter.contamination import Matches, find_matches, remember
from vlcli.steps.filter.dedup import dedup, fingerprint
from vlcli.steps.filter.phash import DRAFT_MIN_SIDE, phash, phash_draft, phash_pixels, to_int64
from vlcli.steps.runner import run_step
from vlcli.table.schema import (
    CONTAM_DISTANCE,
    CONTAM_OF,
    DATASET,
    DUP_OF,
    EMBEDDING,
    FILTER_KEEP,
    FILTER_REASON,
    FILTER_STATUS,
    HEIGHT,
    ID,
    IMAGE,
    INGEST_STATUS,
    NSFW_SCORE,
    PHASH,
    WIDTH,
)
from vlcli.table.storage import Table

if TYPE_CHECKING:
    from vlcli.hub import ModelRef

# What a step after the filter adds to its pending rows once `vl filter` has run: no model time on
# rejected rows.
KEPT = (FILTER_KEEP.name, "filter_keep IS NULL OR filter_keep = true")

REASONS = (
    "unreadable",
    "too_small",
    "too_large",
    "bad_aspect",
    "nsfw",
    "contaminated",
    "duplicate",
    "semantic_duplicate",
)


@dataclass(frozen=True)
class ScoreSettings:
    """What determines the per-row columns (changing them needs --redo)."""

    nsfw: str = "nudenet"  # a registered NSFW backend, or "none"
    nsfw_model: str | None = None  # for backends that take a model name (hf)
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False


@dataclass(frozen=True)
class FilterRules:
    """Thresholds of the global part: change them freely, nothing is decoded again."""

    min_side: int = 256
    max_side: int | None = None
    min_aspect: float | None = None
    max_aspect: float | None = None
    nsfw_threshold: float = 0.5
    phash_distance: int = 8
    dedup_scope: str = "all"
    semantic_threshold: float | None = None
    against: tuple[str, ...] = ()  # reference tables to add to the remembered ones (vl filter --against)
    against_distance: int | None = None  # contaminated: pHash distance below this (None: phash_distance)

    def __post_init__(self) -> None:
        if self.min_side < 0 or (self.max_side is not None and self.max_side < self.min_side):
            raise UsageError("--min-side must be >= 0 and --max-side >= --min-side")
        if self.min_aspect is not None and self.max_aspect is not None and self.min_aspect > self.max_aspect:
            raise UsageError("--min-aspect must not exceed --max-aspect")
        if not 0 <= self.nsfw_threshold <= 1:
            raise UsageError("--nsfw-threshold is a probability in [0, 1]")
        if not 0 <= self.phash_distance <= 64:
            raise UsageError("--phash-distance is a Hamming distance in [0, 64] (0 turns dedup off)")
        if self.dedup_scope not in ("all", "dataset"):
            raise UsageError("--dedup-scope must be 'all' or 'dataset'")
        if self.semantic_threshold is not None and not 0 < self.semantic_threshold <= 1:
            raise UsageError("--semantic-threshold is a cosine similarity in (0, 1]")
        if self.against_distance is not None and not 0 <= self.against_distance <= 64:
            raise UsageError("--against-distance is a Hamming distance in [0, 64] (0: embeddings only)")
        if isinstance(self.against, str):
            raise UsageError("filter.against takes a list of evaluation sets, e.g. [data/eval]")
        object.__setattr__(self, "against", tuple(self.against))  # a list from vl.yaml is fine too


class FilterStep(Step):
    """Per row: decode once, hash, score NSFW in batches. Then, globally: apply the rules."""

    name = "filter"
    reads = (ID.name, IMAGE.name, WIDTH.name, HEIGHT.name)
    transient = ("scorer",)

    def __init__(self, settings: ScoreSettings | None = None, rules: FilterRules | None = None) -> None:
        self.settings = settings or ScoreSettings()
        self.rules = rules or FilterRules()
        self.writes = (PHASH, NSFW_SCORE)
        self.scorer: Any = None

    def setup(self) -> None:
        """Load the NSFW backend once (fails loudly: it never passes everything)."""
        s = self.settings
        if s.nsfw == "none":
            return
        options: dict[str, Any] = {
            "device": s.device,
            "dtype": s.dtype,
            "trust_remote_code": s.trust_remote_code,
        }
        if s.nsfw_model:
            options["model"] = s.nsfw_model
        self.scorer = create("nsfw", s.nsfw, **options)

    def prepare(self, row: dict[str, Any]) -> Any:
        """Decode once (JPEG draft mode: the NSFW models look at <= 320 px, pHash at 32 px) and hash;
        other formats are hashed at full size, as `phash_bytes` does, and shrunk before they wait for
        the NSFW model (a 10000x10000 PNG: a few hundred KB instead of 300 MB). Without a model, JPEGs
        only decode their luma at 1/8 scale (`phash_draft`)."""
        if self.scorer is None and (h := phash_draft(row["image"])) is not None:
            return None, to_int64(h)
        full = (row["width"] or 0, row["height"] or 0)
        # the full-size pixels live until hashed: reserve them for that long, not only while decoding
        with decode_budget(full):
            img = decode(row["image"], min_side=DRAFT_MIN_SIDE, reduce=False)
            h = phash(img) if img.size == full or not all(full) else phash_pixels(img, full)
            return shrink(img, DRAFT_MIN_SIDE), to_int64(h)

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        """Score the batch's NSFW probability; pass the hashes through."""
        scores: list[float | None] = [None] * len(items)
        if self.scorer is not None:
            scores = [float(s) for s in self.scorer.score([img for img, _ in items])]
        return [{"phash": h, "nsfw_score": s} for (_, h), s in zip(items, scores)]

    def finish(self, table: Table) -> FilterReport:
        """The global part: keep / reason / dup_of for every row under the current rules."""
        return apply_rules(table, self.rules)

    def provenance(self) -> dict[str, Any]:
        """The backend and model that produced the scores (the rules are not: they cost no decoding)."""
        params: dict[str, Any] = {k: v for k, v in asdict(self.settings).items() if k != "device"}
        if self.scorer is not None:
            params["scorer"] = self.scorer.provenance()
        return params


@dataclass
class FilterReport(Summary):
    """What the global part decided."""

    rows: int = 0
    kept: int = 0
    not_scored: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    duplicate_groups: int = 0
    references: list[str] = field(default_factory=list)  # names of the evaluation sets checked against


_GLOBAL_READS = tuple(
    c.name for c in (ID, DATASET, WIDTH, HEIGHT, INGEST_STATUS, FILTER_STATUS, PHASH, NSFW_SCORE)
)


def apply_rules(table: Table, rules: FilterRules) -> FilterReport:
    """Recompute keep / reason / dup_of for every row from the stored columns (no image is read)."""
    table.ensure_columns(
        [c.field() for c in (DUP_OF, FILTER_KEEP, FILTER_REASON, CONTAM_OF, CONTAM_DISTANCE)]
    )
    data = table.to_arrow([*_GLOBAL_READS, *_LAST_DECISION]).to_pydict()
    n = len(data["id"])
    reason: list[str | None] = [_row_reason(data, i, rules) for i in range(n)]
    scored = [data["filter_status"][i] is not None for i in range(n)]
    dup_of: list[str | None] = [None] * n
    candidates = [i for i in range(n) if scored[i] and reason[i] is None and data["phash"][i] is not None]
    report = FilterReport(rows=n)
    # decided before near-duplicate groups: a contaminated image is never a group's kept member
    contam = _contaminated(table, data, candidates, rules, reason, report)
    candidates = [i for i in candidates if reason[i] is None]
    grouped = None  # which rows this run leaves grouped, so the next run only adds the new ones
    if rules.phash_distance > 0 and candidates:
        grouped = _mark_duplicates(table, data, candidates, rules, dup_of, reason, "duplicate", report)
    if rules.semantic_threshold is not None:
        survivors = [i for i in candidates if reason[i] is None]
        _semantic(table, data, survivors, rules, dup_of, reason, report)
    keep: list[bool | None] = [
        None if not scored[i] and reason[i] != "unreadable" else reason[i] is None for i in range(n)
    ]
    for i in range(n):
        if keep[i] is None:
            report.not_scored += 1
        elif keep[i]:
            report.kept += 1
        else:
            report.reasons[str(reason[i])] += 1
    _write(table, data["id"], dup_of, keep, reason, contam)
    table.set_metadata(_GROUPED, grouped)
    return report


def _contaminated(
    table: Table,
    data: dict[str, list[Any]],
    rows: list[int],
    rules: FilterRules,
    reason: list[str | None],
    report: FilterReport,
) -> Matches:
    """Mark rows matching an image of a remembered reference table (plus `rules.against`)."""
    n = len(data["id"])
    found = Matches([None] * n, [None] * n)
    refs = remember(table, rules.against)
    report.references = [r["name"] for r in refs]
    if not refs or not rows:
        return found
    limit = rules.phash_distance if rules.against_distance is None else rules.against_distance
    ids = [data["id"][i] for i in rows]
    matches = find_matches(
        table, refs, ids, [data["phash"][i] for i in rows], limit, rules.semantic_threshold
    )
    for k, i in enumerate(rows):
        if matches.of[k] is not None:
            reason[i] = "contaminated"
            found.of[i], found.distance[i] = matches.of[k], matches.distance[k]
    return found


def _row_reason(data: dict[str, list[Any]], i: int, rules: FilterRules) -> str | None:
    """The first per-row rule the row fails, or None."""
    status = data["filter_status"][i]
    if data["ingest_status"][i] != "ok" or (status is not None and status.startswith("error")):
        return "unreadable"
    w, h = data["width"][i], data["height"][i]
    if min(w, h) < rules.min_side:
        return "too_small"
    if rules.max_side is not None and max(w, h) > rules.max_side:
        return "too_large"
    aspect = w / h
    if (rules.min_aspect is not None and aspect < rules.min_aspect) or (
        rules.max_aspect is not None and aspect > rules.max_aspect
    ):
        return "bad_aspect"
    score = data["nsfw_score"][i]
    if score is not None and score > rules.nsfw_threshold:
        return "nsfw"
    return None


def _mark_duplicates(
    table: Table,
    data: dict[str, list[Any]],
    rows: list[int],
    rules: FilterRules,
    dup_of: list[str | None],
    reason: list[str | None],
    label: str,
    report: FilterReport,
) -> dict[str, Any]:
    """Group `rows` by pHash; return what the next run needs to extend these groups."""
    hashes = np.array([data["phash"][i] for i in rows], dtype=np.int64).view(np.uint64)
    pixels = np.array([data["width"][i] * data["height"][i] for i in rows], dtype=np.int64)
    ids = [data["id"][i] for i in rows]
    scope = [data["dataset"][i] or "" for i in rows] if rules.dedup_scope == "dataset" else None
    new, previous = _since_last_run(table, data, rows, rules, hashes, ids)
    twins = dedup(hashes, pixels, ids, rules.phash_distance, scope_keys=scope, new=new, previous=previous)
    _apply_twins(rows, twins, dup_of, reason, label, report)
    return {"rules": _grouping_rules(rules), **fingerprint(hashes, ids)}


# What the last global part decided, and the metadata key naming the rows it grouped.
_LAST_DECISION = (DUP_OF.name, FILTER_KEEP.name, FILTER_REASON.name)
_GROUPED = "filter.grouped"


def _grouping_rules(rules: FilterRules) -> Any:
    """The rules that decide the pHash groups (as stored in JSON)."""
    return json.loads(
        json.dumps({k: v for k, v in asdict(rules).items() if k != "semantic_threshold"}, default=str)
    )


def _since_last_run(
    table: Table, data: dict[str, list[Any]], rows: list[int], rules: FilterRules, hashes: Any, ids: list[str]
) -> tuple[Any, list[str | None] | None]:
    """(the rows not grouped by the last run, every row's pHash dup_of then) when the last run grouped
    exactly the other rows under the same rules; (None, None) when the groups must be recomputed."""
    last = table.metadata().get(_GROUPED)
    if not last or last["rules"] != _grouping_rules(rules):
        return None, None
    stored = [(data["filter_keep"][i], data["filter_reason"][i]) for i in rows]
    old = np.array(
        [k is not None and r in (None, "duplicate", "semantic_duplicate") for k, r in stored], bool
    )
    rows_then = np.flatnonzero(old)
    if fingerprint(hashes[rows_then], [ids[k] for k in rows_then]) != {k: last[k] for k in ("rows", "sum")}:
        return None, None
    previous = [data["dup_of"][i] if r == "duplicate" else None for i, (_, r) in zip(rows, stored)]
    return ~old, previous


def _apply_twins(
    rows: list[int],
    twins: list[str | None],
    dup_of: list[str | None],
    reason: list[str | None],
    label: str,
    report: FilterReport,
) -> None:
    kept_ids = set()
    for i, twin in zip(rows, twins):
        if twin is not None:
            dup_of[i] = twin
            reason[i] = label
            kept_ids.add(twin)
    report.duplicate_groups += len(kept_ids)


def _semantic(
    table: Table,
    data: dict[str, list[Any]],
    rows: list[int],
    rules: FilterRules,
    dup_of: list[str | None],
    reason: list[str | None],
    report: FilterReport,
) -> None:
    from vlcli.steps.filter.semantic import semantic_twins

    if EMBEDDING.name not in table.schema.names:
        raise UsageError("--semantic-threshold needs the embedding column: run `vl crop TABLE` first")
    assert rules.semantic_threshold is not None
    twins = semantic_twins(table, data, rows, rules.semantic_threshold, rules.dedup_scope == "dataset")
    _apply_twins(rows, twins, dup_of, reason, "semantic_duplicate", report)


def _write(
    table: Table,
    ids: list[str],
    dup_of: list[str | None],
    keep: list[bool | None],
    reason: list[str | None],
    contam: Matches,
) -> None:
    table.write_back(
        pa.table(
            {
                "id": ids,
                DUP_OF.name: pa.array(dup_of, pa.string()),
                FILTER_KEEP.name: pa.array(keep, pa.bool_()),
                FILTER_REASON.name: pa.array(reason, pa.string()),
                CONTAM_OF.name: pa.array(contam.of, pa.string()),
                CONTAM_DISTANCE.name: pa.array(contam.distance, pa.int32()),
            }
        )
    )


def run_filter(
    table: Table,
    settings: ScoreSettings | None = None,
    rules: FilterRules | None = None,
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> tuple[StepReport, FilterReport | None]:
    """Score pending rows (resumable), then recompute keep / reason / dup_of for the whole table."""
    report = run_step(table, FilterStep(settings, rules), options, progress)
    assert report.summary is None or isinstance(report.summary, FilterReport)  # None: a shard (--shard)
    return report, report.summary


def models(settings: ScoreSettings, rules: FilterRules | None = None) -> list[ModelRef]:
    """The NSFW model `vl filter` loads with these settings (none for --nsfw none)."""
    from vlcli.hub import ModelRef

    if settings.nsfw == "none":
        return []
    label = f"nsfw: {settings.nsfw}" + (f" ({settings.nsfw_model})" if settings.nsfw_model else "")
    if settings.nsfw != "hf":
        return [ModelRef(label, "filter.nsfw", settings.nsfw, "bundled")]
    from vlcli.backends.hf_classifier import DEFAULT_MODEL

    return [ModelRef(label, "filter.nsfw_model", settings.nsfw_model or DEFAULT_MODEL, "hf")]


SPEC = StepSpec("filter", (ScoreSettings, FilterRules), FilterStep, models, batch_size=32)
