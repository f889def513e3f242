"""Synth and validate send a row's view to a model as the same JPEG bytes."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from vlcli.steps.synth import step as synth
from vlcli.steps.validate import step as validate


def _row(fmt: str, size: tuple[int, int], box: list[int] | None) -> dict[str, Any]:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 60, 30)).save(buf, fmt)
    return {"image": buf.getvalue(), "width": size[0], "height": size[1], "crop_box": box}


@pytest.mark.parametrize(
    "row",
    [
        _row("PNG", (600, 400), [100, 0, 500, 200]),
        _row("PNG", (600, 400), None),
        _row("JPEG", (900, 300), None),
        _row("JPEG", (900, 300), [0, 0, 300, 300]),
        _row("JPEG", (80, 60), None),
    ],
)
def test_synth_and_validate_send_identical_bytes(row: dict[str, Any]) -> None:
    sent = synth.view_jpeg(row, 256)
    assert sent == validate.view_jpeg(row, 256)
    with Image.open(io.BytesIO(sent)) as img:
        assert img.format == "JPEG" and max(img.size) <= 256
