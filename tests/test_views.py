"""Crop views, short-side resizing and re-encoding: `images.decode_view`/`view_bytes` and `views.render`."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageOps

from vlcli.errors import UsageError
from vlcli.exports.views import ViewOptions, render
from vlcli.images import (
    ImageProblem,
    clamp_box,
    decode,
    decode_view,
    file_extension,
    resize_short,
    scale_box,
    view_bytes,
)


def pattern(size: tuple[int, int]) -> Image.Image:
    """Gradients and a smooth wave: a crop shifted by one pixel shows, and JPEG keeps it well."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    wave = 128 + 48 * np.sin(x / 5.0) * np.cos(y / 7.0)
    pixels = np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), wave], -1)
    return Image.fromarray(pixels.astype(np.uint8))


def encoded(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def decoded(data: bytes) -> Image.Image:
    """The original as PIL shows it: upright RGB."""
    return ImageOps.exif_transpose(opened(data)).convert("RGB")


def close(a: Image.Image, b: Image.Image, tolerance: float = 2.0) -> bool:
    """Same size and a mean absolute difference within JPEG noise (a one-pixel shift is ~3 here)."""
    assert a.size == b.size
    diff = np.abs(np.asarray(a.convert("RGB"), float) - np.asarray(b.convert("RGB"), float))
    return float(diff.mean()) < tolerance


def rotated(img: Image.Image, orientation: int = 6) -> bytes:
    """`img` stored as a JPEG with an EXIF orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(img, "JPEG", quality=95, exif=exif.tobytes())


# --- boxes -------------------------------------------------------------------------------------

sizes = st.tuples(st.integers(1, 500), st.integers(1, 500))
coords = st.integers(-600, 600)


@given(st.tuples(coords, coords, coords, coords), sizes)
def test_clamped_boxes_stay_inside_and_are_never_empty(box: tuple[int, int, int, int], size: Any) -> None:
    left, top, right, bottom = clamp_box(box, size)
    assert 0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]


@given(sizes, st.integers(1, 8))
def test_scaled_boxes_map_the_whole_image_to_the_whole_image(size: tuple[int, int], k: int) -> None:
    small = (max(1, size[0] // k), max(1, size[1] // k))
    assert scale_box((0, 0, *size), size, small) == (0, 0, *small)


# --- decode_view -------------------------------------------------------------------------------


def test_view_without_a_box_is_the_decoded_image() -> None:
    data = encoded(pattern((60, 40)), "PNG")
    assert decode_view(data, None).tobytes() == decode(data).tobytes()


def test_view_is_the_exact_crop_of_a_lossless_image() -> None:
    img = pattern((60, 40))
    view = decode_view(encoded(img, "PNG"), (10, 5, 40, 35))
    assert view.size == (30, 30) and view.tobytes() == img.crop((10, 5, 40, 35)).tobytes()


def test_view_of_an_exif_rotated_image_crops_the_upright_image() -> None:
    data = rotated(pattern((80, 48)))  # stored 80x48, shown 48x80
    upright = decoded(data)
    assert upright.size == (48, 80)
    box = (4, 30, 44, 70)
    view = decode_view(data, box)
    assert view.size == (40, 40) and close(view, upright.crop(box))


def test_draft_decoding_keeps_the_crop_at_least_min_side() -> None:
    img = pattern((1600, 1200))
    data = encoded(img, "JPEG", quality=95)
    box = (400, 200, 1000, 800)  # 600 px: draft may halve it to 300, not quarter it to 150
    view = decode_view(data, box, min_side=200)
    assert view.size == (300, 300)
    assert close(view, decoded(data).crop(box).resize((300, 300), Image.Resampling.BOX), tolerance=3)


def test_draft_decoding_of_a_rotated_jpeg_scales_the_box_in_the_upright_frame() -> None:
    img = pattern((1200, 800))
    data = rotated(img)  # shown 800x1200
    box = (100, 300, 700, 900)
    view = decode_view(data, box, min_side=150)  # the image's short side may shrink to 200: the crop's to 150
    assert view.size == (150, 150)
    assert close(view, decoded(data).crop(box).resize((150, 150), Image.Resampling.BOX), tolerance=3)


# --- resize_short ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "target", "upscale", "expected"),
    [
        ((400, 300), 150, False, (200, 150)),
        ((300, 400), 150, False, (150, 200)),
        ((333, 100), 50, False, (166, 50)),  # long side rounded
        ((100, 80), 150, False, (100, 80)),  # never enlarged by default
        ((100, 80), 160, True, (200, 160)),
        ((120, 120), 120, False, (120, 120)),
    ],
)
def test_resize_short(size: tuple[int, int], target: int, upscale: bool, expected: tuple[int, int]) -> None:
    assert resize_short(Image.new("RGB", size), target, upscale=upscale).size == expected


# --- view_bytes --------------------------------------------------------------------------------


def test_unchanged_images_keep_their_original_bytes() -> None:
    for data in (encoded(pattern((60, 40)), "JPEG"), encoded(pattern((60, 40)), "WEBP")):
        assert view_bytes(data, None) == (data, opened(data).format)
        assert view_bytes(data, (0, 0, 60, 40))[0] is data  # a box covering everything is no crop
        assert view_bytes(data, None, size=100)[0] is data  # smaller than --size: not enlarged


def test_crops_are_reencoded_jpeg_for_jpeg_sources_and_png_for_the_rest() -> None:
    img = pattern((64, 48))
    data = encoded(img, "JPEG", quality=95)
    out, fmt = view_bytes(data, (8, 8, 40, 40))
    assert fmt == "JPEG" and opened(out).format == "JPEG"
    assert close(opened(out), decoded(data).crop((8, 8, 40, 40)))
    for source in ("PNG", "GIF", "WEBP"):
        out, fmt = view_bytes(
            encoded(img, source, lossless=True) if source == "WEBP" else encoded(img, source), (8, 8, 40, 40)
        )
        assert fmt == "PNG" and opened(out).format == "PNG" and opened(out).size == (32, 32)
    out, _ = view_bytes(encoded(img, "PNG"), (8, 8, 40, 40))
    assert opened(out).tobytes() == img.crop((8, 8, 40, 40)).tobytes()  # PNG to PNG: lossless


def test_format_and_quality() -> None:
    data = encoded(pattern((64, 48)), "JPEG", quality=95)
    png, fmt = view_bytes(data, None, fmt="PNG")
    assert fmt == "PNG" and opened(png).size == (64, 48)
    assert view_bytes(data, None, fmt="JPEG")[0] is data  # already a JPEG: kept as is
    low, _ = view_bytes(data, (0, 0, 40, 40), quality=20)
    high, _ = view_bytes(data, (0, 0, 40, 40), quality=95)
    assert len(low) < len(high)


def test_size_resizes_the_crop_short_side() -> None:
    img = pattern((640, 480))
    data = encoded(img, "JPEG", quality=95)
    out, _ = view_bytes(data, (100, 0, 400, 480), size=120)
    assert opened(out).size == (120, 192)
    expected = decoded(data).crop((100, 0, 400, 480)).resize((120, 192), Image.Resampling.LANCZOS)
    assert close(opened(out), expected, tolerance=3)


def test_undecodable_bytes_raise_image_problem() -> None:
    truncated = encoded(pattern((64, 48)), "JPEG")[:-100]
    with pytest.raises(ImageProblem):
        view_bytes(truncated, (0, 0, 10, 10))
    with pytest.raises(ImageProblem, match="not an image"):
        view_bytes(b"hello", (0, 0, 10, 10))


def test_extensions() -> None:
    assert [file_extension(f) for f in ("JPEG", "MPO", "PNG", "WEBP", "TIFF")] == [
        "jpg",
        "jpg",
        "png",
        "webp",
        "tif",
    ]


# --- render ------------------------------------------------------------------------------------


def test_render_turns_problems_into_grouped_skip_reasons() -> None:
    truncated = encoded(pattern((64, 48)), "JPEG")[:-100]
    view = render(truncated, (0, 0, 10, 10), ViewOptions())
    assert view.data is None and view.skipped == "cannot decode"
    assert render(b"hello", (0, 0, 10, 10), ViewOptions()).skipped == "not an image"
    # nothing to render: the bytes go out as they are, recognised or not
    assert render(b"hello", None, ViewOptions()).data == b"hello"
    assert render(None, None, ViewOptions()).data is None


def test_render_no_crop_ignores_the_box() -> None:
    data = encoded(pattern((64, 48)), "JPEG")
    assert render(data, (0, 0, 10, 10), ViewOptions(crop=False)).data is data
    view = render(data, (0, 0, 10, 10), ViewOptions())
    assert view.cropped and view.format == "JPEG" and opened(view.data or b"").size == (10, 10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 0}, "--size must be at least 1"),
        ({"quality": 101}, "--quality must be between 1 and 100"),
        ({"format": "gif"}, "--format must be png or jpg, not 'gif'"),
    ],
)
def test_view_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        ViewOptions(**options)
