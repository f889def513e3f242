"""What the review page shows: its cards, the header's counts, and the report of what was written."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Thumb:
    """A card's picture: a JPEG data URL and the original (upright) size, or why there is none."""

    url: str | None = None
    width: int = 0
    height: int = 0
    problem: str | None = None


@dataclass
class Card:
    """One row on the page, its thumbnail, and its place in a duplicate group."""

    row: dict[str, Any]
    thumb: Thumb
    group: str | None = None  # the kept id shared by a duplicate group of two or more cards
    context: bool = False  # a kept twin shown beside its duplicates although --where left it out
    match: Thumb | None = None  # a contaminated row's matched evaluation image (vl filter --against)


@dataclass
class QASummary:
    """Q/A counts over the whole table."""

    rows: int = 0  # rows with at least one item
    items: int = 0
    validated: int = 0
    valid: int = 0
    invalid: int = 0
    reasons: list[tuple[str, int]] = field(default_factory=list)  # why items are invalid, most common first


@dataclass
class Summary:
    """The header's counts, over the whole table whatever --where and --limit select."""

    rows: int
    steps: dict[str, list[tuple[str, int]]]  # step -> [("ok", n), ("pending", n), ("error: why", n), ...]
    decisions: list[tuple[str, int]] | None = None  # the filter's verdicts: kept or the reason
    bins: list[tuple[str, int, int]] | None = None  # bin (or "none"), rows, rows inside the quota
    qa: QASummary | None = None


@dataclass
class ReviewReport:
    """What `write_review` wrote."""

    path: str
    rows: int  # in the table
    selected: int  # matching --where
    cards: int
    context: int = 0  # kept twins added beside their duplicates
    bytes_written: int = 0
    seconds: float = 0.0
    thumbnail_errors: Counter[str] = field(default_factory=Counter)
    where: str | None = None
