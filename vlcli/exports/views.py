"""Exported image views: the options that shape them and a thread pool that renders rows in scan order."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa
from PIL import _imaging as pil_core

from vlcli.errors import UsageError
from vlcli.images import Box, ImageProblem, view_bytes
from vlcli.steps.base import reason_key
from vlcli.steps.local import return_freed_memory
from vlcli.table import schema

CROP_BOX = schema.CROP_BOX.name
FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG"}
# Batches rendered ahead of the consumer: enough to keep every worker busy, few enough for flat memory.
BATCHES_AHEAD = 2
# Pillow image blocks a worker may keep cached between rows: a decoded view, its crop and its resize.
BLOCKS_PER_WORKER = 4

T = TypeVar("T")


def default_workers() -> int:
    """One thread per core, at most 8 (PIL releases the GIL while it decodes, resizes and encodes)."""
    return max(1, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class ViewOptions:
    """How an exported image is made from the stored bytes."""

    crop: bool = True
    size: int | None = None
    format: str | None = None
    quality: int = 95
    upscale: bool = False

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 1:
            raise UsageError("--size must be at least 1")
        if not 1 <= self.quality <= 100:
            raise UsageError("--quality must be between 1 and 100")
        if self.format is not None and self.format.lower() not in FORMATS:
            raise UsageError(f"--format must be png or jpg, not {self.format!r}")

    @property
    def pil_format(self) -> str | None:
        """The PIL format name of `format` ('jpg' -> 'JPEG'), None to follow the source."""
        return FORMATS[self.format.lower()] if self.format is not None else None


@dataclass(frozen=True)
class View:
    """One row's exported image: its bytes and format, or why it was skipped."""

    data: bytes | None = None
    format: str | None = None
    cropped: bool = False
    skipped: str | None = None


def render(data: bytes | None, box: Box | None, options: ViewOptions) -> View:
    """The row's view as file bytes; an unusable image becomes a skip reason instead of an exception."""
    if data is None:
        return View()  # a row whose ingest failed: nothing to render
    box = box if options.crop else None
    try:
        out, fmt = view_bytes(
            data,
            box,
            fmt=options.pil_format,
            size=options.size,
            quality=options.quality,
            upscale=options.upscale,
        )
    except ImageProblem as exc:
        if box is None and options.size is None and options.format is None:
            # Exported as is, never decoded: an unknown format is no reason to drop the row.
            return View(data=data)
        return View(skipped=reason_key(f"skipped: {exc}").removeprefix("skipped: "))
    return View(data=out, format=fmt, cropped=box is not None)


def boxes(batch: pa.RecordBatch, options: ViewOptions) -> list[Box | None]:
    """Each row's crop box when cropping applies, else None."""
    if not options.crop or CROP_BOX not in batch.schema.names:
        return [None] * batch.num_rows
    return [tuple(b) if b is not None else None for b in batch.column(CROP_BOX).to_pylist()]


def map_rows(
    batches: Iterable[pa.RecordBatch],
    job: Callable[[pa.RecordBatch], list[Callable[[], T]]],
    workers: int,
) -> Iterator[tuple[pa.RecordBatch, list[T]]]:
    """Run every row's task from `job(batch)` on `workers` threads; yield each batch with its results, in
    scan order, keeping at most BATCHES_AHEAD batches in flight so memory stays flat."""
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    return_freed_memory()
    blocks = pil_core.get_blocks_max()
    # Pillow keeps freed image blocks for the next row instead of returning them to glibc, which in
    # worker threads unmapped and faulted them in again for every row (+7 ms of CPU per 1600x1200 JPEG
    # crop, 40%). At most BLOCKS_PER_WORKER blocks of 16 MB per worker stay cached until the export ends.
    pil_core.set_blocks_max(max(blocks, BLOCKS_PER_WORKER * workers))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vl-export")
    in_flight: deque[tuple[pa.RecordBatch, list[Future[T]]]] = deque()
    try:
        for batch in batches:
            in_flight.append((batch, [pool.submit(task) for task in job(batch)]))
            if len(in_flight) > BATCHES_AHEAD:
                yield _collect(in_flight.popleft())
        while in_flight:
            yield _collect(in_flight.popleft())
    finally:
        # On an error or an abandoned generator, drop the queued rows instead of rendering them.
        pool.shutdown(wait=True, cancel_futures=True)
        pil_core.set_blocks_max(blocks)  # also frees the cached blocks beyond the old limit


def _collect(item: tuple[pa.RecordBatch, list[Future[T]]]) -> tuple[pa.RecordBatch, list[T]]:
    batch, futures = item
    return batch, [f.result() for f in futures]


def column(batch: pa.RecordBatch, name: str) -> list[Any]:
    """A column of the batch as Python values, or Nones when the batch lacks it."""
    if name not in batch.schema.names:
        return [None] * batch.num_rows
    values: list[Any] = batch.column(name).to_pylist()
    return values
