"""`vl bin`: OCR, object detection, caption and CLIP score once per image (per-row, resumable), then
bins A (text) / B (objects) / C (commonsense) balanced to a ratio (global, from the stored features)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from vlcli.backends import create
from vlcli.backends.null import NAME as NULL
from vlcli.errors import UsageError
from vlcli.images import check_pixels, clamp_box, decode_view, short_side_size
from vlcli.steps.base import Progress, RunOptions, Step, StepReport, StepSpec, Summary
from vlcli.steps.bin.features import dispersion, num_classes, text_area_ratio
from vlcli.steps.bin.rules import BINS, BinRules, Features, assign
from vlcli.steps.filter.step import KEPT
from vlcli.steps.runner import run_step
from vlcli.table.schema import (
    BIN,
    BIN_FEATURES,
    BIN_SELECTED,
    BIN_STATUS,
    CLIP_SCORE,
    CROP_BOX,
    DISPERSION,
    FILTER_KEEP,
    HEIGHT,
    ID,
    IMAGE,
    NUM_CLASSES,
    NUM_OBJECTS,
    NUM_TEXT_BOXES,
    TEXT_AREA,
    WIDTH,
)
from vlcli.table.storage import Table

if TYPE_CHECKING:
    from vlcli.hub import ModelRef

FeatureSet = Literal["full", "caption-only"]
FEATURES: tuple[FeatureSet, ...] = ("full", "caption-only")
CLIP_MAX_SIDE = 448  # open_clip models take 224-448 px inputs, resizing the short side to that first


@dataclass(frozen=True)
class BinSettings:
    """Which models compute the features ("none" turns one off)."""

    features: FeatureSet = "full"
    ocr: str = "rapidocr"  # rapidocr, paddleocr or none
    detector: str = "yolo11s.pt"  # any ultralytics model name or path, or none
    captioner: str = "Salesforce/blip-image-captioning-base"  # any transformers BLIP/BLIP-2, or none
    clip: str = "ViT-B-32"  # an open_clip architecture, or none
    clip_pretrained: str | None = "openai"
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    decode_side: int = 1280  # the view is decoded with its short side at least this (JPEG draft mode)

    def __post_init__(self) -> None:
        if self.features not in ("full", "caption-only"):
            raise UsageError("--features must be 'full' or 'caption-only'")
        if self.clip != "none" and self.captioner == "none":
            raise UsageError("--clip scores the caption: it needs a --captioner (or pass --clip none)")

    @property
    def uses_ocr(self) -> bool:
        """Whether OCR runs."""
        return self.features == "full" and self.ocr != "none"

    @property
    def uses_detector(self) -> bool:
        """Whether the detector runs."""
        return self.features == "full" and self.detector != "none"


def _backend(model: str, default: str) -> str:
    """The backend that runs `model`: the null backend for the model name "null", else `default`."""
    return NULL if model == NULL else default


def clip_side(scorer: Any) -> int:
    """The short side CLIP resizes a view to: the model's input size, else (process-pool workers have no
    model) the largest in common use."""
    size = getattr(getattr(getattr(scorer, "model", None), "visual", None), "image_size", None)
    if isinstance(size, (tuple, list)):
        size = min(size)
    return size if isinstance(size, int) and size > 0 else CLIP_MAX_SIDE


class BinStep(Step):
    """Per row: decode the view once, run each model once (batched across images), store the features."""

    name = "bin"
    reads = (ID.name, IMAGE.name, WIDTH.name, HEIGHT.name)
    optional_reads = (CROP_BOX.name,)
    writes = BIN_FEATURES
    prerequisites = (KEPT,)
    transient = ("models",)

    def __init__(self, settings: BinSettings | None = None, rules: BinRules | None = None) -> None:
        self.settings = settings or BinSettings()
        self.rules = rules or BinRules()
        self.models: dict[str, Any] = {}
        self.seconds: dict[str, float] = {}  # time spent in each model, for reports and benchmarks

    def setup(self) -> None:
        """Load every enabled model once."""
        s = self.settings
        common = {"device": s.device}
        if s.uses_ocr:
            self.models["ocr"] = create("ocr", s.ocr, **common)
        if s.uses_detector:
            self.models["detector"] = create(
                "detector",
                _backend(s.detector, "ultralytics"),
                model=s.detector,
                trust_remote_code=s.trust_remote_code,
                **common,
            )
        if s.captioner != "none":
            self.models["captioner"] = create(
                "captioner",
                _backend(s.captioner, "transformers"),
                model=s.captioner,
                dtype=s.dtype,
                trust_remote_code=s.trust_remote_code,
                **common,
            )
        if s.clip != "none":
            self.models["clip"] = create(
                "clip",
                _backend(s.clip, "open_clip"),
                model=s.clip,
                pretrained=s.clip_pretrained,
                dtype=s.dtype,
                **common,
            )

    def prepare(self, row: dict[str, Any]) -> Any:
        """The view (the crop when there is one) decoded once, upright RGB, and the view's full size.
        A view so thin that CLIP's resize of its short side would take more than STEP_MAX_PIXELS is
        skipped before it is decoded."""
        box = row.get("crop_box")
        size: tuple[int, int] | None = None
        if box is not None:
            full = clamp_box(tuple(box), (row["width"], row["height"]))
            size = (full[2] - full[0], full[3] - full[1])
        elif row["width"] and row["height"]:
            size = (row["width"], row["height"])
        if size is not None and self.settings.clip != "none":
            side = clip_side(self.models.get("clip"))
            check_pixels(
                short_side_size(size, side), f"CLIP resizing {size[0]}x{size[1]} to short side {side} gives"
            )
        img = decode_view(row["image"], box, min_side=self.settings.decode_side)
        return _View(img, size or img.size)

    def _timed(self, model: str, *args: Any) -> Any:
        started = time.perf_counter()
        backend = self.models[model]
        method = {"ocr": "read", "detector": "detect", "captioner": "caption", "clip": "score"}[model]
        out = getattr(backend, method)(*args)
        self.seconds[model] = self.seconds.get(model, 0.0) + time.perf_counter() - started
        return out

    def process(self, items: list[_View]) -> list[dict[str, Any]]:
        """Every enabled model once over the batch, then the per-image feature math."""
        n = len(items)
        images = [v.image for v in items]
        texts = self._timed("ocr", images) if "ocr" in self.models else [None] * n
        found = self._timed("detector", images) if "detector" in self.models else [None] * n
        captions = self._timed("captioner", images) if "captioner" in self.models else [None] * n
        clip = self._timed("clip", images, captions) if "clip" in self.models else [None] * n
        return [
            {**_text_features(v, t), **_object_features(v, d), "caption": c, "clip_score": s}
            for v, t, d, c, s in zip(items, texts, found, captions, clip)
        ]

    def finish(self, table: Table) -> BinReport:
        """The global part: bins for every kept row under the current rules."""
        return assign_bins(table, self.rules)

    def provenance(self) -> dict[str, Any]:
        """Which models computed the features (the bin rules are not: they cost no model time)."""
        params: dict[str, Any] = {k: v for k, v in asdict(self.settings).items() if k != "device"}
        params["models"] = {name: m.provenance() for name, m in self.models.items()}
        return params


@dataclass
class _View:
    image: Any  # the decoded view (JPEG draft mode may have shrunk it)
    size: tuple[int, int]  # the view's size in original pixels: stored boxes use these

    def scaled(self, box: tuple[int, int, int, int]) -> list[int]:
        """A box in decoded pixels, in the view's original pixels."""
        sx, sy = self.size[0] / self.image.width, self.size[1] / self.image.height
        left, top, right, bottom = box
        return [
            round(left * sx),
            round(top * sy),
            min(self.size[0], round(right * sx)),
            min(self.size[1], round(bottom * sy)),
        ]


def _text_features(view: _View, boxes: list[Any] | None) -> dict[str, Any]:
    if boxes is None:
        return {}
    ordered = sorted(boxes, key=lambda b: (b.box[1], b.box[0]))
    img = view.image
    return {
        "ocr_boxes": [{"box": view.scaled(b.box), "text": b.text, "score": b.score} for b in ordered],
        "ocr_text": "\n".join(b.text for b in ordered),
        "num_text_boxes": len(ordered),
        "text_area_ratio": text_area_ratio([b.box for b in ordered], img.width, img.height),
    }


def _object_features(view: _View, detections: list[Any] | None) -> dict[str, Any]:
    if detections is None:
        return {}
    img = view.image
    return {
        "objects": [{"box": view.scaled(d.box), "label": d.label, "score": d.score} for d in detections],
        "num_objects": len(detections),
        "num_classes": num_classes([d.label for d in detections]),
        "dispersion": dispersion([d.box for d in detections], img.width, img.height),
    }


@dataclass
class BinReport(Summary):
    """What the global part decided."""

    rule: str
    candidates: int = 0
    quotas: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    shortfall: dict[str, int] = field(default_factory=dict)
    unassigned: int = 0


_GLOBAL_READS = tuple(c.name for c in (ID, BIN_STATUS, NUM_TEXT_BOXES, TEXT_AREA, NUM_OBJECTS, NUM_CLASSES))
_GLOBAL_READS_2 = (DISPERSION.name, CLIP_SCORE.name)


def candidate_filter(columns: list[str]) -> str:
    """Rows that take part in binning: features computed, and not rejected by the filter."""
    where = "bin_status = 'ok'"
    if FILTER_KEEP.name in columns:
        where += " AND (filter_keep IS NULL OR filter_keep = true)"
    return where


def load_features(table: Table) -> Features:
    """The stored features of every candidate row."""
    data = table.to_arrow(
        [*_GLOBAL_READS, *_GLOBAL_READS_2], candidate_filter(table.schema.names)
    ).to_pydict()
    return Features(
        ids=data["id"],
        text_boxes=data["num_text_boxes"],
        text_area=data["text_area_ratio"],
        num_objects=data["num_objects"],
        num_classes=data["num_classes"],
        dispersion=data["dispersion"],
        clip_score=data["clip_score"],
    )


def assign_bins(table: Table, rules: BinRules) -> BinReport:
    """Recompute `bin` and `bin_selected` for every row from the stored features (no image is read)."""
    table.ensure_columns([BIN.field(), BIN_SELECTED.field()])
    features = load_features(table)
    out = assign(features, rules)
    chosen = {row_id: (b, s) for row_id, b, s in zip(features.ids, out.bins, out.selected)}
    ids = table.to_arrow(["id"]).column("id").to_pylist()
    bins = [chosen.get(i, (None, None))[0] for i in ids]
    selected = [chosen.get(i, (None, None))[1] for i in ids]
    table.write_back(
        pa.table({"id": ids, BIN.name: pa.array(bins, pa.string()), BIN_SELECTED.name: selected})
    )
    return BinReport(
        rule=rules.rule,
        candidates=len(features.ids),
        quotas=out.quotas,
        counts=out.counts,
        shortfall=out.shortfall,
        unassigned=sum(1 for b, s in zip(out.bins, out.selected) if b is None or not s),
    )


def run_bin(
    table: Table,
    settings: BinSettings | None = None,
    rules: BinRules | None = None,
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> tuple[StepReport, BinReport | None]:
    """Compute features for pending rows (resumable), then the bins of the whole table."""
    report = run_step(table, BinStep(settings, rules), options, progress)
    assert report.summary is None or isinstance(report.summary, BinReport)  # None: a shard (--shard)
    return report, report.summary


def models(settings: BinSettings, rules: BinRules | None = None) -> list[ModelRef]:
    """The models `vl bin` loads with these settings."""
    from vlcli import hub

    roles: tuple[str, ...] = ("ocr", "detector", "captioner", "clip")
    if settings.features == "caption-only":
        roles = ("captioner", "clip")
    sources: dict[str, hub.Source] = {
        "ocr": "bundled" if settings.ocr == "rapidocr" else "external",
        "detector": "ultralytics",
        "captioner": "hf",
        "clip": "open_clip",
    }
    names = {role: getattr(settings, role) for role in roles}
    return [
        hub.ModelRef(
            f"{role}: {name}", f"bin.{role}", name, sources[role], pretrained=settings.clip_pretrained
        )
        for role, name in names.items()
        if name != "none"
    ]


SPEC = StepSpec("bin", (BinSettings, BinRules), BinStep, models, batch_size=16)


__all__ = ["BINS", "BinReport", "BinSettings", "BinStep", "assign_bins", "run_bin"]


@dataclass
class Criterion:
    """One test of one image: what was measured, against what, and whether it passed."""

    bin: str
    name: str
    value: Any
    test: str
    passed: bool | None


@dataclass
class Explanation:
    """Every criterion for one image and the bin it lands in."""

    image_id: str
    caption: str | None
    criteria: list[Criterion]
    ranks: dict[str, tuple[int, int]]  # metric -> (1-based rank among candidates, candidates)
    bin: str | None
    selected: bool | None


def _gt(value: Any, limit: float) -> bool | None:
    return None if value is None else bool(value > limit)


def explain(
    table: Table, image_id: str, rules: BinRules, criteria: dict[str, str] | None = None
) -> Explanation:
    """Why an image lands in its bin: the seed's threshold tests, its rank on each metric, user criteria."""
    from vlcli.table.query import query

    if "bin_status" not in table.schema.names:
        raise UsageError("no features yet: run `vl bin TABLE` first")
    safe = image_id.replace("'", "''")
    cols = ["id", *_GLOBAL_READS[2:], *_GLOBAL_READS_2, "caption", "bin", "bin_selected", "bin_status"]
    rows = table.to_arrow([c for c in cols if c in table.schema.names], f"id = '{safe}'").to_pylist()
    if not rows:
        raise UsageError(f"no row with id {image_id!r}")
    row = rows[0]
    tests = [
        Criterion(
            "A",
            "num_text_boxes",
            row["num_text_boxes"],
            f"> {rules.text_boxes}",
            _gt(row["num_text_boxes"], rules.text_boxes),
        ),
        Criterion(
            "A",
            "text_area_ratio",
            row["text_area_ratio"],
            f"> {rules.text_area}",
            _gt(row["text_area_ratio"], rules.text_area),
        ),
        Criterion(
            "B",
            "num_classes",
            row["num_classes"],
            f"> {rules.unique_classes}",
            _gt(row["num_classes"], rules.unique_classes),
        ),
        Criterion(
            "B",
            "num_objects",
            row["num_objects"],
            f"> {rules.objects}",
            _gt(row["num_objects"], rules.objects),
        ),
        Criterion(
            "B",
            "dispersion",
            row["dispersion"],
            f"> {rules.dispersion}",
            _gt(row["dispersion"], rules.dispersion),
        ),
        Criterion("C", "clip_score", row["clip_score"], "ranked", None),
    ]
    for name, predicate in (criteria or {}).items():
        frame = query(table, f"SELECT ({predicate}) AS v FROM images WHERE id = '{safe}'")
        value = frame["v"][0] if frame.height else None
        tests.append(Criterion("user", name, value, predicate, None if value is None else bool(value)))
    features = load_features(table)
    ranks = {}
    for metric, values in (
        ("text_area_ratio", features.text_area),
        ("num_objects", features.num_objects),
        ("clip_score", features.clip_score),
    ):
        if image_id in features.ids:
            mine = values[list(features.ids).index(image_id)]
            key = float("-inf") if mine is None else float(mine)
            better = sum(1 for v in values if v is not None and float(v) > key)
            ranks[metric] = (better + 1, len(features.ids))
    return Explanation(
        image_id=image_id,
        caption=row.get("caption"),
        criteria=tests,
        ranks=ranks,
        bin=row.get("bin"),
        selected=row.get("bin_selected"),
    )
