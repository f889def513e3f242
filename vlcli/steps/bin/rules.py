"""Bin assignment from stored features: A (text), B (objects), C (commonsense), balanced to a ratio.

Pure functions over columns; the bin step's global part calls them with every kept row's features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from vlcli.errors import UsageError

BINS = ("A", "B", "C")
Rule = Literal["rank", "threshold"]
RULES: tuple[Rule, ...] = ("rank", "threshold")


@dataclass(frozen=True)
class BinRules:
    """How bins are assigned: the seed's ranking with quotas, or its thresholds."""

    ratios: tuple[float, float, float] = (0.4, 0.4, 0.2)
    dataset_size: int | None = None  # quotas are fractions of this; default: every candidate row
    rule: Rule = "rank"
    text_boxes: int = 2  # threshold rule, A: more than this many text boxes ...
    text_area: float = 0.2  # ... or a text-area ratio above this
    unique_classes: int = 3  # B: more than this many classes ...
    objects: int = 5  # ... or more than this many objects ...
    dispersion: float = 0.3  # ... or a dispersion above this

    def __post_init__(self) -> None:
        if len(self.ratios) != 3 or any(r < 0 for r in self.ratios) or sum(self.ratios) > 1 + 1e-9:
            raise UsageError("--ratios takes three non-negative fractions for A B C that sum to at most 1")
        if self.dataset_size is not None and self.dataset_size < 0:
            raise UsageError("--dataset-size must be 0 or more")
        if self.rule not in ("rank", "threshold"):
            raise UsageError("--rule must be 'rank' or 'threshold'")


@dataclass(frozen=True)
class Features:
    """The per-row features bins are decided from (NULL-able: a disabled model leaves them None)."""

    ids: Sequence[str]
    text_boxes: Sequence[int | None]
    text_area: Sequence[float | None]
    num_objects: Sequence[int | None]
    num_classes: Sequence[int | None]
    dispersion: Sequence[float | None]
    clip_score: Sequence[float | None]


@dataclass
class BinAssignment:
    """One bin (or None) and a selected flag per row, plus the counts a report needs."""

    bins: list[str | None]
    selected: list[bool]
    quotas: dict[str, int]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def shortfall(self) -> dict[str, int]:
        """Bins that got fewer selected rows than their quota, and by how many."""
        return {
            b: self.quotas[b] - self.counts.get(b, 0) for b in BINS if self.counts.get(b, 0) < self.quotas[b]
        }


def quotas(n: int, ratios: Sequence[float]) -> dict[str, int]:
    """`int(n * ratio)` rows per bin, as the seed computes them."""
    return {b: int(n * r) for b, r in zip(BINS, ratios)}


def _key(value: float | int | None) -> float:
    return float("-inf") if value is None else float(value)


def _top(
    candidates: list[int], metric: Sequence[float | int | None], ids: Sequence[str], k: int
) -> list[int]:
    """The k candidates with the largest metric (NULL last), ties broken by the smaller id."""
    ranked = sorted(candidates, key=lambda i: (-_key(metric[i]), ids[i]))
    return ranked[: max(0, k)]


def rank_bins(features: Features, rules: BinRules) -> BinAssignment:
    """The seed's ranking: A = top by text area, then B = top of the rest by objects, then C by CLIP score."""
    n = len(features.ids)
    quota = quotas(rules.dataset_size if rules.dataset_size is not None else n, rules.ratios)
    bins: list[str | None] = [None] * n
    remaining = list(range(n))
    metrics = {"A": features.text_area, "B": features.num_objects, "C": features.clip_score}
    for b in BINS:
        chosen = _top(remaining, metrics[b], features.ids, quota[b])
        for i in chosen:
            bins[i] = b
        taken = set(chosen)
        remaining = [i for i in remaining if i not in taken]
    return _finish(bins, [b is not None for b in bins], quota)


def threshold_bin(features: Features, i: int, rules: BinRules) -> str:
    """The seed's rules for one row: A if text-heavy, else B if object-rich, else C."""
    if _key(features.text_boxes[i]) > rules.text_boxes or _key(features.text_area[i]) > rules.text_area:
        return "A"
    if (
        _key(features.num_classes[i]) > rules.unique_classes
        or _key(features.num_objects[i]) > rules.objects
        or _key(features.dispersion[i]) > rules.dispersion
    ):
        return "B"
    return "C"


def threshold_bins(features: Features, rules: BinRules) -> BinAssignment:
    """Every row gets its threshold bin; each bin then selects its quota, ranked by the bin's metric."""
    n = len(features.ids)
    quota = quotas(rules.dataset_size if rules.dataset_size is not None else n, rules.ratios)
    bins: list[str | None] = [threshold_bin(features, i, rules) for i in range(n)]
    metrics = {"A": features.text_area, "B": features.num_objects, "C": features.clip_score}
    selected = [False] * n
    for b in BINS:
        members = [i for i in range(n) if bins[i] == b]
        for i in _top(members, metrics[b], features.ids, quota[b]):
            selected[i] = True
    return _finish(bins, selected, quota)


def _finish(bins: list[str | None], selected: list[bool], quota: dict[str, int]) -> BinAssignment:
    counts = {b: sum(1 for x, s in zip(bins, selected) if x == b and s) for b in BINS}
    return BinAssignment(bins=bins, selected=selected, quotas=quota, counts=counts)


def assign(features: Features, rules: BinRules) -> BinAssignment:
    """Bins under `rules.rule`."""
    return rank_bins(features, rules) if rules.rule == "rank" else threshold_bins(features, rules)
