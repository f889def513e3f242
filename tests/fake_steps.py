"""Deterministic steps for runner tests; importable by subprocesses (tests/ is put on sys.path)."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import pyarrow as pa

from vlcli.images import decode
from vlcli.steps.base import RowSkipped, Step
from vlcli.table.schema import Column


class DigestStep(Step):
    """Decodes each image and writes a digest of its bytes and its decoded size; logs ids it processes."""

    name = "digest"
    reads = ("id", "image")
    writes = (
        Column("digest_sha1", pa.string(), "sha1 of the original bytes"),
        Column("digest_pixels", pa.int64(), "decoded width * height"),
    )

    def __init__(
        self, log: str | None = None, delay: float = 0.0, fail_ids: frozenset[str] = frozenset()
    ) -> None:
        self.log = log
        self.delay = delay
        self.fail_ids = fail_ids

    def prepare(self, row: dict[str, Any]) -> Any:
        img = decode(row["image"])
        return row["id"], hashlib.sha1(row["image"]).hexdigest(), img.width * img.height

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        if self.delay:
            time.sleep(self.delay)
        if any(i in self.fail_ids for i, _, _ in items):
            bad = next(i for i, _, _ in items if i in self.fail_ids)
            if len(items) > 1:
                raise RuntimeError("batch contains a poisoned row")  # forces the row-by-row fallback
            raise ValueError(f"poisoned row {bad}")
        if self.log:
            with open(self.log, "a") as fh:
                fh.write("".join(f"{i}\n" for i, _, _ in items))
                fh.flush()
                os.fsync(fh.fileno())
        return [{"digest_sha1": s, "digest_pixels": p} for _, s, p in items]


class SkipOddStep(Step):
    """Skips rows whose id ends in an odd hex digit; marks the rest ok."""

    name = "parity"
    writes = (Column("parity_even", pa.bool_(), "id ends in an even hex digit"),)

    def prepare(self, row: dict[str, Any]) -> Any:
        if int(row["id"][-1], 16) % 2:
            raise RowSkipped("odd id")
        return row["id"]

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        return [{"parity_even": True} for _ in items]
