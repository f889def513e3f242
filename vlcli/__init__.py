"""vl: turn a pile of raw images into a curated vision-language training set, one Lance table."""

from __future__ import annotations

__version__ = "0.1.0"
