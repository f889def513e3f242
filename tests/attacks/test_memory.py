"""Small files that would make a step allocate gigabytes: every step bounds the pixels it allocates per
row (a skip with the numbers), decodes at reduced size, and bounds the prepared bytes in flight.
The peak RSS of each step on the issue's exact inputs is measured by benchmarks/attacks.py."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import table_rows
from PIL import Image

from vlcli.exports.views import ViewOptions, render
from vlcli.images import STEP_MAX_PIXELS, TooLarge, decode, view_bytes
from vlcli.steps.base import RunOptions, Step, error_status
from vlcli.steps.local import CHUNK_ROWS
from vlcli.steps.runner import run_step
from vlcli.table.schema import Column, ingest_schema
from vlcli.table.storage import Table


def png(size: tuple[int, int], mode: str = "L") -> bytes:
    """A flat PNG of `size`: a few KB on disk however many pixels it has."""
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, "PNG")
    return buf.getvalue()


def table_of(tmp_path: Path, images: list[bytes]) -> Table:
    """A table holding `images` as ingested rows."""
    table = Table.create(tmp_path / "t.lance", ingest_schema())
    table.append(table_rows(images))
    return table


def statuses(table: Table, step: str) -> list[str]:
    """Every row's status for `step`."""
    return [s for s in table.to_arrow([f"{step}_status"]).column(0).to_pylist()]


# --- the per-row bound: a skip with the numbers, before anything is allocated --------------------


def test_crop_skips_a_thin_strip_whose_resize_would_take_gigabytes(tmp_path: Path, tiny_dinov2: str) -> None:
    pytest.importorskip("torch")
    from vlcli.steps.crop.step import CropSettings, CropStep

    # 32x60000, a 20 KB PNG: resizing its short side to 1024 makes 1024x1920000 pixels (5.9 GB of RGB).
    table = table_of(tmp_path, [png((32, 60000))])
    settings = CropSettings(model=tiny_dinov2, resize_to=1024, num_crops=3, min_side=1, device="cpu")
    report = run_step(table, CropStep(settings))
    [status] = statuses(table, "crop")
    assert status == (
        "skipped: too large for this step (resizing 32x60000 to short side 1024 gives 1024x1920000 = "
        f"1,966,080,000 pixels > {STEP_MAX_PIXELS:,})"
    )
    assert report.reasons == {"skipped: too large for this step": 1}


def test_export_upscaling_a_one_pixel_strip_is_skipped_with_the_numbers() -> None:
    # 1x50000 upscaled to a 256 short side: 256x12800000 pixels (9.8 GB of RGB).
    data = png((1, 50000))
    with pytest.raises(TooLarge, match=r"256x12800000 = 3,276,800,000 pixels > "):
        view_bytes(data, None, size=256, upscale=True)
    view = render(data, None, ViewOptions(size=256, upscale=True))
    assert view.data is None and view.skipped == "too large for this step"
    # the same strip exported without enlarging it is fine
    assert render(data, None, ViewOptions(size=256)).data == data


def test_bin_skips_a_strip_that_clip_would_resize_to_gigabytes() -> None:
    from vlcli.steps.bin.step import CLIP_MAX_SIDE, BinSettings, BinStep

    # CLIP resizes the short side to its input size first: 1x50000 would become 448x22400000.
    step = BinStep(BinSettings(ocr="none", detector="none"))  # no model is loaded to prepare a row
    row = {"id": "x", "image": png((1, 50000)), "width": 1, "height": 50000}
    with pytest.raises(TooLarge) as caught:
        step.prepare(row)
    assert error_status(caught.value) == (
        f"skipped: too large for this step (CLIP resizing 1x50000 to short side {CLIP_MAX_SIDE} gives "
        "448x22400000 = 10,035,200,000 pixels > 100,000,000)"
    )
    # without CLIP the same strip is fine: every other model scales the long side down
    no_clip = BinStep(BinSettings(ocr="none", detector="none", captioner="none", clip="none"))
    assert no_clip.prepare(row).image.size == (1, 50000)


def test_a_decode_over_the_bound_is_a_skip_not_an_error() -> None:
    data = png((5000, 4000))
    with pytest.raises(TooLarge) as caught:
        decode(data, limit=10_000_000)
    assert (
        str(caught.value) == "too large for this step (decoding 5000x4000 = 20,000,000 pixels > 10,000,000)"
    )
    assert error_status(caught.value).startswith("skipped: too large for this step (decoding 5000x4000")


def test_a_jpeg_over_the_bound_decodes_at_a_reduced_scale_instead() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 20, 30)).save(buf, "JPEG")
    img = decode(buf.getvalue(), min_side=256, limit=1_000_000)  # full size would be 12 M pixels
    assert img.size == (500, 375)


def test_large_pngs_are_reduced_while_decoding_when_a_step_needs_fewer_pixels() -> None:
    # vl filter needs 256 px (pHash at 32, NSFW at 320): a 4000x3000 PNG is kept at 1/11, not full size.
    img = decode(png((4000, 3000), "RGB"), min_side=256)
    assert img.size == (364, 273)


def test_filter_hashes_a_png_at_full_size_and_keeps_a_small_copy_for_the_nsfw_model() -> None:
    from vlcli.steps.filter.phash import phash_bytes, to_int64
    from vlcli.steps.filter.step import FilterStep, ScoreSettings

    data = png((4000, 3000), "RGB")
    img, digest = FilterStep(ScoreSettings(nsfw="none")).prepare(
        {"id": "x", "image": data, "width": 4000, "height": 3000}
    )
    assert img.size == (364, 273)  # what waits for the NSFW model: 0.3 MB, not 36 MB
    assert digest == to_int64(phash_bytes(data))  # the hash of the exact pixels, as before


# --- the bytes in flight: prepared rows waiting for the model are bounded in bytes, not only rows ---


class _Megabytes(Step):
    """Each row prepares 1 MB; counts rows prepared and not yet processed, and the batch sizes."""

    name = "mb"
    writes = (Column("mb_n", pa.int32(), "rows in its batch"),)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.prepared = self.processed = self.most_in_flight = 0
        self.batches: list[int] = []

    def prepare(self, row: dict[str, Any]) -> Any:
        with self.lock:
            self.prepared += 1
            self.most_in_flight = max(self.most_in_flight, self.prepared - self.processed)
        return np.ones(2**20, dtype=np.uint8)

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        with self.lock:
            self.processed += len(items)
            self.batches.append(len(items))
        return [{"mb_n": len(items)} for _ in items]


def test_prepared_rows_in_flight_are_bounded_in_bytes(tmp_path: Path) -> None:
    images = [png((8, 8 + i)) for i in range(300)]
    table = table_of(tmp_path, images)
    step = _Megabytes()
    opts = RunOptions(batch_size=64, workers=2, prefetch=1, prefetch_bytes=8 * 2**20)
    report = run_step(table, step, opts)
    assert report.done == 300 and sum(step.batches) == 300
    # `process` gets a batch's share of the budget (8 MB over the queued batch and the one filling)
    assert max(step.batches) == 4
    # in flight: the budget, and before the first row's size is known, the chunks the workers started
    assert step.most_in_flight <= 8 + 2 * opts.workers * CHUNK_ROWS
