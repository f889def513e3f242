"""Unit tests of vlcli/images.py: header probing, ids, safe decoding to RGB, crop views."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import jpeg_bytes
from PIL import Image

from vlcli import images
from vlcli.images import ImageProblem, content_id, crop_view, decode, probe, source_id, to_rgb


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    """`img` saved to bytes in `fmt`."""
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def rotated_jpeg(size: tuple[int, int] = (40, 20), orientation: int = 6) -> bytes:
    """A JPEG stored `size` wide with an EXIF orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.new("RGB", size, (200, 30, 30)), "JPEG", exif=exif.tobytes())


def palette_with_transparency() -> Image.Image:
    """A 4x4 palette image whose index 0 is transparent and covers the left half."""
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 10, 200, 10] + [0, 0, 0] * 254)
    for y in range(4):
        for x in range(2):
            img.putpixel((x, y), 0)
    img.info["transparency"] = 0
    return img


# --- ids -----------------------------------------------------------------------------------------


def test_content_id_is_a_stable_128_bit_hex_hash_of_the_bytes() -> None:
    data = jpeg_bytes(1)
    assert content_id(data) == content_id(bytes(data))
    assert len(content_id(data)) == 32 and int(content_id(data), 16) >= 0
    assert content_id(data) != content_id(jpeg_bytes(2))


def test_source_id_is_stable_and_never_looks_like_a_content_id() -> None:
    assert source_id("/a/b.jpg") == source_id("/a/b.jpg") != source_id("/a/c.jpg")
    assert source_id("/a/b.jpg").startswith("src-")


# --- probe ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (jpeg_bytes(1, (64, 48)), (64, 48, "JPEG")),
        (encode(Image.new("RGB", (30, 10)), "PNG"), (30, 10, "PNG")),
        (encode(Image.new("RGB", (7, 9)), "GIF"), (7, 9, "GIF")),
        (encode(Image.new("RGB", (5, 6)), "BMP"), (5, 6, "BMP")),
        (encode(Image.new("RGB", (11, 12)), "TIFF"), (11, 12, "TIFF")),
        (encode(Image.new("RGB", (13, 14)), "WEBP"), (13, 14, "WEBP")),
        (encode(Image.new("CMYK", (20, 10)), "JPEG"), (20, 10, "JPEG")),
        (encode(Image.new("I;16", (8, 3)), "PNG"), (8, 3, "PNG")),
        (rotated_jpeg((40, 20), 6), (20, 40, "JPEG")),
        (rotated_jpeg((40, 20), 3), (40, 20, "JPEG")),  # upside down: same width and height
    ],
    ids=["jpeg", "png", "gif", "bmp", "tiff", "webp", "cmyk", "png16", "exif6", "exif3"],
)
def test_probe_reads_size_and_format_from_the_header(data: bytes, expected: tuple[int, int, str]) -> None:
    info = probe(data)
    assert (info.width, info.height, info.format) == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"just some text, not pixels", "not an image"),
        (jpeg_bytes(3, (120, 90))[:-200], "truncated JPEG"),
        (encode(Image.new("RGB", (50, 50), (1, 2, 3)), "PNG")[:-20], "truncated PNG"),
        (encode(Image.new("RGB", (50, 50)), "GIF")[:-5], "truncated GIF"),
    ],
    ids=["empty", "text", "jpeg-cut", "png-cut", "gif-cut"],
)
def test_probe_rejects_unusable_bytes_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageProblem, match=reason):
        probe(data)


def test_probe_keeps_a_jpeg_whose_exif_thumbnail_ends_before_the_main_scan() -> None:
    # An embedded thumbnail has its own end-of-image marker early in the file: only the last one counts.
    thumb = encode(Image.new("RGB", (8, 8)), "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 1
    data = encode(Image.new("RGB", (64, 64), (9, 9, 9)), "JPEG", exif=exif.tobytes() + thumb)
    assert probe(data).format == "JPEG"
    with pytest.raises(ImageProblem, match="truncated JPEG"):
        probe(data[: len(data) - 50])


def test_probe_enforces_max_pixels() -> None:
    data = jpeg_bytes(4, (100, 100))
    assert probe(data, max_pixels=10_000).width == 100
    with pytest.raises(ImageProblem, match="too many pixels"):
        probe(data, max_pixels=9_999)


# --- decode and to_rgb ---------------------------------------------------------------------------


def test_decode_applies_exif_orientation() -> None:
    img = decode(rotated_jpeg((40, 20), 6))
    assert img.mode == "RGB" and img.size == (20, 40)


def test_decode_takes_the_first_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (10, 10), c) for c in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    img = decode(data)
    assert img.size == (10, 10) and img.getpixel((5, 5))[0] > 200


def test_decode_in_draft_mode_keeps_the_short_side_at_least_min_side() -> None:
    data = jpeg_bytes(5, (800, 600))
    img = decode(data, min_side=100)
    assert 100 <= min(img.size) < 600
    assert img.size[0] * 600 == img.size[1] * 800  # aspect ratio kept
    assert decode(data, min_side=600).size == (800, 600)
    assert decode(data).size == (800, 600)


def test_decode_reduces_formats_without_draft_mode_by_a_whole_factor_keeping_min_side() -> None:
    data = encode(Image.new("RGB", (300, 200)), "PNG")
    assert decode(data, min_side=50).size == (75, 50)
    assert decode(data, min_side=60).size == (100, 67)  # a factor of 4 would leave 50 < 60
    assert decode(data, min_side=101).size == (300, 200)


def test_decode_raises_image_problem_for_bad_bytes() -> None:
    with pytest.raises(ImageProblem):
        decode(jpeg_bytes(6)[:100])
    with pytest.raises(ImageProblem, match="too many pixels"):
        decode(jpeg_bytes(6, (100, 100)), max_pixels=100)


def test_to_rgb_puts_palette_transparency_on_white() -> None:
    rgb = to_rgb(palette_with_transparency())
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((3, 3)) == (10, 200, 10)


def test_to_rgb_converts_cmyk() -> None:
    rgb = to_rgb(Image.new("CMYK", (4, 4), (0, 255, 255, 0)))  # pure red in CMYK
    assert rgb.mode == "RGB"
    r, g, b = rgb.getpixel((1, 1))
    assert r > 200 and g < 50 and b < 50


def test_to_rgb_scales_16_bit_grey_instead_of_clipping() -> None:
    arr = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    rgb = to_rgb(Image.frombytes("I;16", (4, 1), arr.astype("<u2").tobytes()))
    greys = [rgb.getpixel((x, 0))[0] for x in range(4)]
    assert greys[0] == 0 and greys[-1] == 255
    assert greys[0] < greys[1] < greys[2] < greys[3]  # not all clipped to white


def test_to_rgb_puts_grey_alpha_on_white() -> None:
    img = Image.new("LA", (2, 1), (0, 255))
    img.putpixel((1, 0), (0, 0))  # fully transparent black
    rgb = to_rgb(img)
    assert rgb.getpixel((0, 0)) == (0, 0, 0)
    assert rgb.getpixel((1, 0)) == (255, 255, 255)


def test_to_rgb_loads_rgb_as_is() -> None:
    img = Image.new("RGB", (3, 3), (1, 2, 3))
    assert to_rgb(img) is img


# --- crop_view -----------------------------------------------------------------------------------


def test_crop_view_without_a_box_is_the_whole_image() -> None:
    img = Image.new("RGB", (50, 40))
    assert crop_view(img, None) is img


@pytest.mark.parametrize(
    ("box", "size"),
    [
        ((10, 5, 30, 25), (20, 20)),  # inside: exact
        ((-10, -10, 20, 20), (20, 20)),  # negative corner clamped to 0
        ((40, 30, 500, 500), (10, 10)),  # past the edges clamped to the image
        ((60, 50, 70, 60), (1, 1)),  # entirely outside: a 1x1 view at the corner, never empty
        ((20, 20, 10, 10), (1, 1)),  # inverted box: never a negative size
    ],
)
def test_crop_view_clamps_boxes_to_the_image(box: tuple[int, int, int, int], size: tuple[int, int]) -> None:
    assert crop_view(Image.new("RGB", (50, 40)), box).size == size


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_png_encoding_is_lossless_in_every_mode(mode: str) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (37, 53, 4), dtype=np.uint8)
    img = Image.fromarray(pixels, "RGBA").convert(mode)
    data = images.encode(img, "PNG")
    back = Image.open(io.BytesIO(data))
    assert back.format == "PNG" and back.mode == mode and back.size == (53, 37)
    assert np.array_equal(np.asarray(back), np.asarray(img))
