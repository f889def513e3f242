"""`vl filter`: a per-row part (pHash, NSFW score; resumable) and a global part (bounds, thresholds,
near-duplicate groups) recomputed from the stored columns in seconds, without decoding any image."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vlcli.backends import create
from vlcli.errors import UsageError
from vlcli.images import decode, decode_budget, shrink
from vlcli.steps.base import Progress, RunOptions, Step, StepReport, StepSpec, Summary
from vlcli.steps.filter.contamination import find_matches, remember
from vlcli.steps.filter.dedup import choose_kept, fingerprint, group_labels, kept_rows
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


_GLOBAL_READS = tuple(c.name for c in (ID, WIDTH, HEIGHT, INGEST_STATUS, FILTER_STATUS, PHASH, NSFW_SCORE))
# What the last global part decided (compared with the new decisions: only changed rows are written),
# and the metadata key naming the rows it grouped.
_LAST_DECISION = tuple(c.name for c in (DUP_OF, FILTER_KEEP, FILTER_REASON, CONTAM_OF, CONTAM_DISTANCE))
_GROUPED = "filter.grouped"
_CODE = {reason: k + 1 for k, reason in enumerate(REASONS)}  # 0: no reason
_CODE_ROWS = 1 << 18  # ids hashed per numpy pass in _id_codes: bounds its temporaries


def apply_rules(table: Table, rules: FilterRules) -> FilterReport:
    """Recompute keep / reason / dup_of for every row from the stored columns (no image is read), column
    by column; write back only the rows whose decision changed."""
    table.ensure_columns(
        [c.field() for c in (DUP_OF, FILTER_KEEP, FILTER_REASON, CONTAM_OF, CONTAM_DISTANCE)]
    )
    with_dataset = rules.dedup_scope == "dataset" or rules.semantic_threshold is not None
    names = [*_GLOBAL_READS, *_LAST_DECISION, *([DATASET.name] if with_dataset else [])]
    read, data = table.to_arrow(names), {}
    for name in names:  # one column at a time: the scanned batches go as their column is combined
        data[name] = read.column(name).combine_chunks()
        read = read.drop_columns([name])
    n = len(data[ID.name])
    code = _row_codes(data, rules)
    scored = _mask(pc.is_valid(data[FILTER_STATUS.name]))
    for name in (INGEST_STATUS.name, FILTER_STATUS.name, NSFW_SCORE.name):
        del data[name]  # used up: at 100M rows each is hundreds of MB
    candidates = scored & (code == 0) & _mask(pc.is_valid(data[PHASH.name]))
    report = FilterReport(rows=n)
    # decided before near-duplicate groups: a contaminated image is never a group's kept member
    contam_of, contam_distance = _contaminated(table, data, candidates, rules, code, report)
    candidates &= code == 0
    twin = np.arange(n)  # every row's kept twin: itself unless it is a duplicate
    grouped = None  # which rows this run leaves grouped, so the next run only searches the new ones
    if rules.phash_distance > 0 and candidates.any():
        grouped = _mark_duplicates(table, data, candidates, rules, twin, code, report)
    if rules.semantic_threshold is not None:
        _semantic(table, data, candidates & (code == 0), rules, twin, code, report)
    unknown = ~scored & (code != _CODE["unreadable"])  # not scored yet: keep stays NULL
    report.not_scored = int(np.count_nonzero(unknown))
    report.kept = int(np.count_nonzero(~unknown & (code == 0)))
    counts = np.bincount(code[~unknown], minlength=len(REASONS) + 1)
    report.reasons = Counter({r: int(counts[k]) for r, k in _CODE.items() if counts[k]})
    decided = {
        DUP_OF.name: data[ID.name].take(pa.array(twin, mask=twin == np.arange(n))),
        FILTER_KEEP.name: pa.array(code == 0, mask=unknown),
        FILTER_REASON.name: pa.array([None, *REASONS], pa.string()).take(pa.array(code)),
        CONTAM_OF.name: contam_of,
        CONTAM_DISTANCE.name: contam_distance,
    }
    last = table.metadata().get(_GROUPED)
    regrouped = last != _as_stored(grouped)
    if regrouped and last:
        table.set_metadata(_GROUPED, None)  # interrupted while writing: the next run regroups everything
    _write_changes(table, data, decided)
    if regrouped and grouped is not None:
        table.set_metadata(_GROUPED, grouped)
    return report


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array (no NULLs) as numpy."""
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


def _numbers(values: pa.Array, fill: float, dtype: type) -> np.ndarray:
    """A numeric Arrow array as numpy, NULLs replaced by `fill`."""
    return np.asarray(pc.fill_null(values, fill).to_numpy(zero_copy_only=False), dtype=dtype)


def _row_codes(data: dict[str, pa.Array], rules: FilterRules) -> np.ndarray:
    """Per row, the code (`_CODE`) of the first per-row rule it fails, or 0."""
    unreadable = _mask(pc.fill_null(pc.not_equal(data[INGEST_STATUS.name], "ok"), True)) | _mask(
        pc.fill_null(pc.starts_with(data[FILTER_STATUS.name], "error"), False)
    )
    w, h = _numbers(data[WIDTH.name], 0, np.int64), _numbers(data[HEIGHT.name], 0, np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = w / h
    bad_aspect = np.zeros(len(w), dtype=bool)
    if rules.min_aspect is not None:
        bad_aspect |= aspect < rules.min_aspect
    if rules.max_aspect is not None:
        bad_aspect |= aspect > rules.max_aspect
    # float64 as Python compared them: a float32 comparison would round the threshold
    nsfw = _numbers(data[NSFW_SCORE.name], -1.0, np.float64) > rules.nsfw_threshold
    large = np.maximum(w, h) > rules.max_side if rules.max_side is not None else np.zeros(len(w), dtype=bool)
    failed = [unreadable, np.minimum(w, h) < rules.min_side, large, bad_aspect, nsfw]
    names = ["unreadable", "too_small", "too_large", "bad_aspect", "nsfw"]
    return np.select(failed, [_CODE[r] for r in names], 0).astype(np.int8)


class _Ids(Sequence[str]):
    """The ids of `rows` of an Arrow array, read one at a time: only the rows that need a Python string
    pay for one."""

    def __init__(self, ids: pa.Array, rows: np.ndarray) -> None:
        self.ids, self.rows = ids, rows

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...

    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return _Ids(self.ids, self.rows[i])
        return str(self.ids[int(self.rows[int(i)])].as_py())


def _id_codes(ids: pa.Array) -> np.ndarray:
    """A 64-bit code per id (equal ids, equal codes), from the Arrow buffers: no Python string per row."""
    if not pa.types.is_string(ids.type):
        ids = ids.cast(pa.large_string())
    wide = pa.types.is_large_string(ids.type)
    offsets = np.frombuffer(ids.buffers()[1], np.int64 if wide else np.int32)[ids.offset :][: len(ids) + 1]
    data = ids.buffers()[2]
    chars = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    out = np.empty(len(ids), dtype=np.uint64)
    for a in range(0, len(ids), _CODE_ROWS):
        off = offsets[a : a + _CODE_ROWS + 1].astype(np.int64)
        sizes = np.diff(off)
        power = np.cumprod(np.full(int(sizes.max(initial=0)) + 1, 1_099_511_628_211, dtype=np.uint64))
        pos = np.arange(off[-1] - off[0]) - np.repeat(off[:-1] - off[0], sizes)
        sums = np.concatenate([[np.uint64(0)], np.cumsum(chars[off[0] : off[-1]] * power[pos])])
        out[a : a + len(sizes)] = (sums[off[1:] - off[0]] - sums[off[:-1] - off[0]]) ^ sizes.astype(np.uint64)
    return out


def _scope(data: dict[str, pa.Array], rules: FilterRules) -> np.ndarray | None:
    """Int codes of every row's dedup scope (its dataset), or None when all rows share one scope."""
    if rules.dedup_scope != "dataset":
        return None
    return _numbers(pc.dictionary_encode(pc.fill_null(data[DATASET.name], "")).indices, 0, np.int64)


def _contaminated(
    table: Table,
    data: dict[str, pa.Array],
    candidates: np.ndarray,
    rules: FilterRules,
    code: np.ndarray,
    report: FilterReport,
) -> tuple[pa.Array, pa.Array]:
    """Mark candidates matching an image of a remembered reference table (plus `rules.against`); return
    every row's contam_of and contam_distance."""
    n = len(code)
    refs = remember(table, rules.against)
    report.references = [r["name"] for r in refs]
    rows = np.flatnonzero(candidates)
    if not refs or not rows.size:
        return pa.nulls(n, pa.string()), pa.nulls(n, pa.int32())
    limit = rules.phash_distance if rules.against_distance is None else rules.against_distance
    ids = _Ids(data[ID.name], rows)
    hashes = _numbers(data[PHASH.name], 0, np.int64)[rows]
    matches = find_matches(table, refs, ids, hashes, limit, rules.semantic_threshold)
    code[rows[_mask(pc.is_valid(matches.of))]] = _CODE["contaminated"]
    at = np.full(n, -1, dtype=np.int64)
    at[rows] = np.arange(len(rows))
    spread = pa.array(at, mask=at < 0)
    return matches.of.take(spread), matches.distance.take(spread)


def _mark_duplicates(
    table: Table,
    data: dict[str, pa.Array],
    candidates: np.ndarray,
    rules: FilterRules,
    twin: np.ndarray,
    code: np.ndarray,
    report: FilterReport,
) -> dict[str, Any]:
    """Group the candidates by pHash (searching only what changed since the last run when it can);
    return what the next run needs to start from these groups."""
    rows = np.flatnonzero(candidates)
    hashes = _numbers(data[PHASH.name], 0, np.int64).view(np.uint64)
    pixels = _numbers(data[WIDTH.name], 0, np.int64) * _numbers(data[HEIGHT.name], 0, np.int64)
    codes = _id_codes(data[ID.name])
    scope = _scope(data, rules)
    since = _since_last_run(table, data, candidates, rules, hashes, pixels, codes, scope)
    ids = _Ids(data[ID.name], rows)
    local_scope = None if scope is None else scope[rows]
    if since is None:
        kept = kept_rows(hashes[rows], pixels[rows], ids, rules.phash_distance, local_scope)
    elif since[0].any():
        new, previous = since
        kept = kept_rows(
            hashes[rows], pixels[rows], ids, rules.phash_distance, local_scope, new=new, previous=previous
        )
    else:
        kept = since[1]  # nothing joined: the stored groups, less the rows that left
    twin[rows] = rows[kept]
    dup = kept != np.arange(len(rows))
    code[rows[dup]] = _CODE["duplicate"]
    report.duplicate_groups += len(np.unique(kept[dup]))
    return {"rules": _grouping_rules(rules), **fingerprint(hashes[rows], codes[rows])}


def _grouping_rules(rules: FilterRules) -> Any:
    """The rules that decide the pHash groups of a candidate set (as stored in JSON)."""
    return {"phash_distance": rules.phash_distance, "dedup_scope": rules.dedup_scope}


def _as_stored(value: Any) -> Any:
    """`value` as `Table.metadata()` gives it back."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _since_last_run(
    table: Table,
    data: dict[str, pa.Array],
    candidates: np.ndarray,
    rules: FilterRules,
    hashes: np.ndarray,
    pixels: np.ndarray,
    codes: np.ndarray,
    scope: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(which candidates the last run did not group, every candidate's kept row (as a candidate index)
    in the groups of the others) when the stored decisions are those of the last grouping under the same
    rules; None when all groups must be recomputed."""
    last = table.metadata().get(_GROUPED)
    if not last or last["rules"] != _grouping_rules(rules):
        return None
    reason = data[FILTER_REASON.name]
    duplicate = _mask(pc.fill_null(pc.equal(reason, "duplicate"), False))
    # Over all rows, not only today's candidates: the rows the last run grouped
    then = (
        _mask(pc.is_valid(data[FILTER_KEEP.name]))
        & (
            _mask(pc.is_null(reason))
            | duplicate
            | _mask(pc.fill_null(pc.equal(reason, "semantic_duplicate"), False))
        )
        & _mask(pc.is_valid(data[PHASH.name]))
    )
    grouped = np.flatnonzero(then)
    if fingerprint(hashes[grouped], codes[grouped]) != {k: last[k] for k in ("rows", "sum")}:
        return None
    n = len(then)
    group = np.arange(n)  # each row's kept row then (a pHash duplicate's dup_of, else itself)
    dups = np.flatnonzero(then & duplicate)
    at = pc.index_in(data[DUP_OF.name].take(dups), value_set=data[ID.name])
    if at.null_count:
        return None
    group[dups] = _numbers(at, 0, np.int64)
    # Groups are connected components: rows that left the candidates (newly contaminated, too small, ...)
    # can only split the groups they were in, so only what remains of those is searched again.
    broken = then & candidates & np.isin(group, group[then & ~candidates])
    if broken.any():
        part = np.flatnonzero(broken)
        labels = group_labels(hashes[part], rules.phash_distance, None if scope is None else scope[part])
        group[part] = part[choose_kept(labels, pixels[part], _Ids(data[ID.name], part))]
    rows = np.flatnonzero(candidates)
    local = np.full(n, -1, dtype=np.int64)
    local[rows] = np.arange(len(rows))
    new = ~then[rows]
    return new, np.where(new, np.arange(len(rows)), local[group[rows]])


def _semantic(
    table: Table,
    data: dict[str, pa.Array],
    survivors: np.ndarray,
    rules: FilterRules,
    twin: np.ndarray,
    code: np.ndarray,
    report: FilterReport,
) -> None:
    from vlcli.steps.filter.semantic import semantic_twins

    if EMBEDDING.name not in table.schema.names:
        raise UsageError("--semantic-threshold needs the embedding column: run `vl crop TABLE` first")
    assert rules.semantic_threshold is not None
    rows = np.flatnonzero(survivors)
    names = (ID.name, DATASET.name, WIDTH.name, HEIGHT.name)
    subset = {name: data[name].take(rows).to_pylist() for name in names}
    twins = semantic_twins(
        table, subset, list(range(len(rows))), rules.semantic_threshold, rules.dedup_scope == "dataset"
    )
    row_of = {subset[ID.name][k]: int(rows[k]) for k, t in enumerate(twins) if t is None}
    marked = [(int(rows[k]), row_of[t]) for k, t in enumerate(twins) if t is not None]
    for row, kept in marked:
        twin[row] = kept
        code[row] = _CODE["semantic_duplicate"]
    report.duplicate_groups += len({kept for _, kept in marked})


def _write_changes(table: Table, data: dict[str, pa.Array], decided: dict[str, pa.Array]) -> None:
    """Write back the rows where any of `decided` differs from what is stored."""
    changed = np.zeros(len(data[ID.name]), dtype=bool)
    for name, values in decided.items():
        stored = data[name]
        same = pc.fill_null(pc.equal(values, stored), False)
        both_null = pc.and_(pc.is_null(values), pc.is_null(stored))
        changed |= ~(_mask(same) | _mask(both_null))
    rows = pa.array(np.flatnonzero(changed))
    if len(rows):
        table.write_back(
            pa.table({ID.name: data[ID.name].take(rows), **{k: v.take(rows) for k, v in decided.items()}})
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
