"""`vl validate`: optional model checks per row (judge, visual dependency; resumable), then the rules over
every item of the table (lengths, question form, refusals, MCQ shape, grounding, duplicates), recomputed
from the stored Q/A on every run so other thresholds need no --redo."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from vlcli.backends import create
from vlcli.errors import UsageError
from vlcli.images import ImageProblem, view_jpeg
from vlcli.steps.base import Progress, RowSkipped, RunOptions, Step, StepReport, StepSpec, Summary
from vlcli.steps.filter.step import KEPT
from vlcli.steps.runner import run_step
from vlcli.steps.synth.qa import QAItem
from vlcli.steps.validate.model_checks import (
    CheckSettings,
    RowInput,
    context_text,
    judge_verdict,
    run_checks,
    visual_verdict,
)
from vlcli.steps.validate.rules import ImageContext, ValidationRules, check_item, duplicate_key
from vlcli.table.schema import (
    CAPTION,
    CROP_BOX,
    FILTER_KEEP,
    HEIGHT,
    ID,
    IMAGE,
    OBJECTS,
    OCR_TEXT,
    SYNTH_QA,
    SYNTH_STATUS,
    VALID_COUNT,
    VALIDATE_JUDGE,
    VALIDATE_QA_DIGEST,
    VALIDATE_RESULTS,
    VALIDATE_STATUS,
    VALIDATE_VISUAL,
    WIDTH,
)
from vlcli.table.storage import Table

if TYPE_CHECKING:
    from vlcli.hub import ModelRef

NO_QA = "no Q/A"
_FEATURES = (OCR_TEXT.name, OBJECTS.name, CAPTION.name)


def qa_digest(items: list[dict[str, Any]] | None) -> str:
    """A short fingerprint of a row's synth_qa: model results are stale once it changes."""
    text = json.dumps(items or [], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _has_qa(status: str | None, items: list[Any] | None) -> bool:
    return status == "ok" and bool(items)


def _labels(objects: list[dict[str, Any]] | None) -> list[str]:
    return [str(o["label"]) for o in objects or [] if o.get("label")]


class ValidateStep(Step):
    """Per row: the enabled model checks (none: just mark it done). Then, globally: the rules."""

    name = "validate"
    reads: ClassVar[tuple[str, ...]] = tuple(
        c.name for c in (ID, SYNTH_STATUS, SYNTH_QA, VALIDATE_JUDGE, VALIDATE_VISUAL, VALIDATE_QA_DIGEST)
    )
    optional_reads: ClassVar[tuple[str, ...]] = _FEATURES
    requires = "ingest_status = 'ok' AND synth_status IS NOT NULL"
    prerequisites = (KEPT,)
    transient = ("generator",)

    def __init__(self, rules: ValidationRules | None = None, checks: CheckSettings | None = None) -> None:
        self.rules = rules or ValidationRules()
        self.checks = checks or CheckSettings()
        self.writes = (VALIDATE_JUDGE, VALIDATE_VISUAL, VALIDATE_QA_DIGEST)
        self.generator: Any = None

    def check(self, table: Table) -> None:
        """The Q/A to validate must be there."""
        missing = [c for c in (SYNTH_STATUS.name, SYNTH_QA.name) if c not in table.schema.names]
        if missing:
            raise UsageError(
                f"the table has no {' or '.join(missing)}: run `vl synth TABLE` before `vl validate`"
            )

    def setup(self) -> None:
        """Start the text-generation backend once, when a model check is on."""
        if not self.checks.enabled:
            return
        self.generator = create("generator", self.checks.backend, **self.checks.generator_options())
        probe = getattr(self.generator, "probe", None)
        if probe is not None:
            probe()  # an unreachable server fails the command, not every row after its retries
        if self.checks.visual_dependency and not getattr(self.generator, "supports_images", False):
            raise UsageError(
                f"--visual-dependency needs a backend that sees images; {self.checks.backend!r} with "
                f"model {getattr(self.generator, 'model', '?')!r} does not"
            )

    def reopen(self, table: Table) -> int:
        """Make rows pending again whose Q/A changed or that lack a model check that is on now."""
        return invalidate_stale(table, self.checks)

    def prepare(self, row: dict[str, Any]) -> Any:
        """The row's items and context; rows without Q/A are skipped."""
        if not _has_qa(row["synth_status"], row["synth_qa"]):
            raise RowSkipped(NO_QA)
        items = [QAItem.from_row(r) for r in row["synth_qa"]]
        context = context_text(row.get("ocr_text"), _labels(row.get("objects")), row.get("caption"))
        return _Row(row, RowInput(items, context), qa_digest(row["synth_qa"]))

    def process(self, items: list[_Row]) -> list[dict[str, Any]]:
        """Run the enabled checks for the batch; keep earlier results of checks that are off this run."""
        results = (
            run_checks(self.generator, [r.checks for r in items], self.checks) if self.checks.enabled else []
        )
        out: list[dict[str, Any]] = []
        for i, row in enumerate(items):
            same_qa = row.stored["validate_qa_digest"] == row.digest
            judge = row.stored["validate_judge"] if same_qa else None
            visual = row.stored["validate_visual"] if same_qa else None
            if results:
                if results[i].error is not None:
                    out.append({"validate_status": f"error: {results[i].error}"})
                    continue
                judge = results[i].judge if self.checks.judge else judge
                visual = results[i].visual if self.checks.visual_dependency else visual
            out.append({"validate_judge": judge, "validate_visual": visual, "validate_qa_digest": row.digest})
        return out

    def finish(self, table: Table) -> ValidateReport:
        """The global part: every item of every validated row under the current rules."""
        return apply_rules(table, self.rules, self.checks)

    def provenance(self) -> dict[str, Any]:
        """The backend and settings behind the model results (the rules are not: they cost nothing)."""
        params: dict[str, Any] = {
            "checks": {"judge": self.checks.judge, "visual": self.checks.visual_dependency}
        }
        if self.checks.enabled:
            settings = asdict(self.checks)
            for key in ("judge", "visual_dependency", "concurrency", "api_key_env", "base_url", "device"):
                settings.pop(key)
            settings.pop("backend_options")
            params.update(settings)
            if self.generator is not None:
                params["generator"] = self.generator.provenance()
        return params


class VisualValidateStep(ValidateStep):
    """The validate step that also reads each row's view, for --visual-dependency."""

    reads = (*ValidateStep.reads, IMAGE.name, WIDTH.name, HEIGHT.name)
    optional_reads = (*_FEATURES, CROP_BOX.name)

    def prepare(self, row: dict[str, Any]) -> Any:
        """Also encode the view (the crop when there is one) as a JPEG, long side at most --image-size."""
        prepared: _Row = super().prepare(row)
        try:
            prepared.checks.image = view_jpeg(row, self.checks.image_size)
        except ImageProblem:
            raise
        except Exception as exc:
            raise ImageProblem(f"cannot read the image for --visual-dependency ({exc})") from exc
        return prepared


@dataclass
class _Row:
    stored: dict[str, Any]
    checks: RowInput
    digest: str


def make_step(rules: ValidationRules | None = None, checks: CheckSettings | None = None) -> ValidateStep:
    """The validate step for these settings (it reads image bytes only for --visual-dependency)."""
    checks = checks or CheckSettings()
    cls = VisualValidateStep if checks.visual_dependency else ValidateStep
    return cls(rules, checks)


@dataclass
class ValidateReport(Summary):
    """What the rules decided over the table."""

    rows: int = 0  # rows whose Q/A were validated
    items: int = 0
    valid: int = 0
    rows_with_valid: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # failed items per reason
    not_validated: int = 0  # rows with Q/A whose model checks are pending or failed
    without_qa: int = 0
    ungrounded_skipped: int = 0  # items whose image has no features: the image-grounding check skipped
    checks: list[str] = field(default_factory=list)  # model checks that counted


_OUTPUTS = (VALIDATE_RESULTS, VALID_COUNT)


def apply_rules(table: Table, rules: ValidationRules, checks: CheckSettings | None = None) -> ValidateReport:
    """Recompute validate_results and valid_count for every row from the stored Q/A and model results."""
    checks = checks or CheckSettings()
    table.ensure_columns(c.field() for c in _OUTPUTS)
    names = table.schema.names
    columns = ["id", "validate_status", "synth_status", SYNTH_QA.name]
    columns += [c for c in (*_FEATURES, FILTER_KEEP.name) if c in names]
    columns += [
        c.name
        for c, on in ((VALIDATE_JUDGE, checks.judge), (VALIDATE_VISUAL, checks.visual_dependency))
        if on
    ]
    report = ValidateReport(
        checks=[c for c, on in (("judge", checks.judge), ("visual", checks.visual_dependency)) if on]
    )
    ids: list[str] = []
    reasons: list[list[list[str]] | None] = []
    keys: dict[bytes, list[tuple[str, int, int]]] = {}  # duplicate key -> (id, row, item) of its items
    for batch in table.scan(columns, batch_size=4096):
        for row in batch.to_pylist():
            ids.append(row["id"])
            reasons.append(_row_reasons(row, rules, checks, report, keys, len(ids) - 1))
    if rules.dedup:
        _mark_duplicates(keys, reasons)
    counts: list[int | None] = []
    results: list[list[dict[str, Any]] | None] = []
    for per_item in reasons:
        if per_item is None:
            counts.append(None)
            results.append(None)
            continue
        valid = sum(not r for r in per_item)
        counts.append(valid)
        results.append([{"valid": not r, "reasons": r} for r in per_item])
        report.items += len(per_item)
        report.valid += valid
        report.rows_with_valid += valid > 0
        report.reasons.update(reason for r in per_item for reason in r)
    _write(table, ids, results, counts)
    return report


def _row_reasons(
    row: dict[str, Any],
    rules: ValidationRules,
    checks: CheckSettings,
    report: ValidateReport,
    keys: dict[bytes, list[tuple[str, int, int]]],
    index: int,
) -> list[list[str]] | None:
    """Per item of a validated row, the reasons it fails (duplicates come later); None for other rows."""
    if not _has_qa(row["synth_status"], row[SYNTH_QA.name]):
        report.without_qa += row["synth_status"] is not None
        return None
    if row.get("filter_keep") is False and row["validate_status"] is None:
        return None  # rejected by a later `vl filter` run: not validated, and not waiting to be
    if row["validate_status"] != "ok":
        report.not_validated += 1
        return None
    report.rows += 1
    context = ImageContext.from_features(row.get("ocr_text"), _labels(row.get("objects")), row.get("caption"))
    judge = row.get(VALIDATE_JUDGE.name) or []
    visual = row.get(VALIDATE_VISUAL.name) or []
    out = []
    for i, data in enumerate(row[SYNTH_QA.name]):
        item = QAItem.from_row(data)
        found = check_item(item, context, rules)
        if checks.judge:
            found += judge_verdict(judge[i] if i < len(judge) else None, rules.judge_threshold)
        if checks.visual_dependency and i < len(visual):
            found += visual_verdict(visual[i])
        if rules.image_grounding and not context.has_features:
            report.ungrounded_skipped += 1
        if rules.dedup:
            key = hashlib.blake2b(duplicate_key(item).encode(), digest_size=12).digest()
            keys.setdefault(key, []).append((row["id"], index, i))
        out.append(found)
    return out


def _mark_duplicates(
    keys: dict[bytes, list[tuple[str, int, int]]], reasons: list[list[list[str]] | None]
) -> None:
    """Within each group of equal text, keep the first item (by id, then position) that passes every other
    check, or the first of all when none does; every other one is a duplicate."""
    for members in keys.values():
        if len(members) < 2:
            continue
        members.sort()

        def passes(m: tuple[str, int, int]) -> bool:
            per_item = reasons[m[1]]
            return per_item is not None and not per_item[m[2]]

        kept = next((m for m in members if passes(m)), members[0])
        for member in members:
            if member != kept:
                per_item = reasons[member[1]]
                assert per_item is not None
                per_item[member[2]].append("duplicate")


def _write(
    table: Table, ids: list[str], results: list[list[dict[str, Any]] | None], counts: list[int | None]
) -> None:
    table.write_back(
        pa.table(
            {
                "id": ids,
                VALIDATE_RESULTS.name: pa.array(results, VALIDATE_RESULTS.type),
                VALID_COUNT.name: pa.array(counts, VALID_COUNT.type),
            }
        )
    )


def invalidate_stale(table: Table, checks: CheckSettings) -> int:
    """Set validate_status back to NULL where it no longer matches the Q/A (synth reran) or lacks a model
    check that is on now, so the runner redoes those rows; returns how many."""
    table.ensure_columns(
        c.field() for c in (VALIDATE_JUDGE, VALIDATE_VISUAL, VALIDATE_QA_DIGEST, VALIDATE_STATUS)
    )
    names = ["id", "synth_status", SYNTH_QA.name, "validate_status", VALIDATE_QA_DIGEST.name]
    names += [VALIDATE_JUDGE.name, VALIDATE_VISUAL.name]
    stale: list[str] = []
    for batch in table.scan(names, "validate_status IS NOT NULL", batch_size=4096):
        for row in batch.to_pylist():
            if _is_stale(row, checks):
                stale.append(row["id"])
    table.write_back(pa.table({"id": stale, "validate_status": pa.nulls(len(stale), pa.string())}))
    return len(stale)


def _is_stale(row: dict[str, Any], checks: CheckSettings) -> bool:
    status, has_qa = row["validate_status"], _has_qa(row["synth_status"], row[SYNTH_QA.name])
    if row["synth_status"] is None:
        return True  # synth is redoing this row
    if status.startswith("skipped"):
        return has_qa
    if status != "ok":
        return False  # an error: --retry-errors redoes it
    if not has_qa or row[VALIDATE_QA_DIGEST.name] != qa_digest(row[SYNTH_QA.name]):
        return True
    return (checks.judge and row[VALIDATE_JUDGE.name] is None) or (
        checks.visual_dependency and row[VALIDATE_VISUAL.name] is None
    )


def run_validate(
    table: Table,
    rules: ValidationRules | None = None,
    checks: CheckSettings | None = None,
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> tuple[StepReport, ValidateReport | None]:
    """Run the model checks on pending rows (resumable), then the rules over the whole table."""
    report = run_step(table, make_step(rules, checks), options, progress)
    assert report.summary is None or isinstance(report.summary, ValidateReport)  # None: a shard (--shard)
    return report, report.summary


def models(rules: ValidationRules, checks: CheckSettings) -> list[ModelRef]:
    """The text generator the enabled model checks use (none without --judge or --visual-dependency)."""
    from vlcli.steps.synth.step import generator_ref

    roles = [
        role for role, on in (("judge", checks.judge), ("visual_dependency", checks.visual_dependency)) if on
    ]
    return [generator_ref("validate", role, checks.backend, str(checks.model)) for role in roles]


SPEC = StepSpec("validate", (ValidationRules, CheckSettings), make_step, models, batch_size=16, needs="synth")
