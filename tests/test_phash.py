"""pHash: the same bits as imagehash, the documented bit order, int64 storage, reduced-scale JPEG decoding."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from vlcli.demo import samples
from vlcli.images import decode
from vlcli.steps.filter.dedup import near_duplicate_pairs
from vlcli.steps.filter.phash import distance, from_int64, phash, phash_bytes, phash_pixels, to_hex, to_int64

imagehash = pytest.importorskip("imagehash")


def _reference(img: Image.Image) -> int:
    return int(str(imagehash.phash(img)), 16)


def _scene(seed: int, size: tuple[int, int]) -> Image.Image:
    return samples.draw_scene(random.Random(seed), np.random.default_rng(seed), size)


def _with_alpha(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    w, h = rgba.size
    alpha = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def _images() -> list[tuple[str, Image.Image]]:
    scene = _scene(1, (640, 480))
    rng = random.Random(2)
    out = [
        ("scene", scene),
        ("scene tall", _scene(3, (301, 757))),
        ("scene tiny", _scene(4, (200, 150)).resize((33, 17))),
        ("scene wide", _scene(5, (1999, 211))),
        ("chart", samples.draw_chart(rng)[1]),
        ("page", samples.draw_page(rng)),
        ("receipt", samples.draw_receipt(rng, np.random.default_rng(2))),
        ("L", scene.convert("L")),
        ("P", scene.quantize(64)),
        ("RGBA", _with_alpha(scene)),
        ("LA", _with_alpha(scene).convert("LA")),
        ("1", scene.convert("1")),
        ("CMYK", scene.convert("CMYK")),
        ("I;16", Image.fromarray(np.random.default_rng(6).integers(0, 65535, (70, 50)).astype(np.uint16))),
        ("1x1", Image.new("RGB", (1, 1), (10, 200, 30))),
    ]
    # Flat and mirror-symmetric images: many DCT coefficients are 0 up to rounding noise, so equal bits
    # need the same transform, not just the same maths.
    out += [(f"flat {v}", Image.new("RGB", (50, 40), (v, v, v))) for v in (0, 77, 255)]
    half = np.asarray(scene.convert("L"))[:, :320]
    out.append(("mirror", Image.fromarray(np.concatenate([half, half[:, ::-1]], axis=1))))
    return out


IMAGES = _images()


@pytest.mark.parametrize(("name", "img"), IMAGES, ids=[name for name, _ in IMAGES])
def test_phash_equals_imagehash(name: str, img: Image.Image) -> None:
    h = phash(img)
    assert 0 <= h < 2**64
    assert h == _reference(img)
    assert to_hex(h) == str(imagehash.phash(img))
    assert imagehash.hex_to_hash(to_hex(h)) == imagehash.phash(img)


def test_distance_matches_imagehash() -> None:
    a, b = _scene(7, (320, 240)), _scene(8, (320, 240))
    assert distance(phash(a), phash(b)) == imagehash.phash(a) - imagehash.phash(b)


def test_bit_order_first_coefficient_is_most_significant() -> None:
    # The DC coefficient (row 0, column 0) of a bright image is far above the median: the top bit.
    assert phash(Image.new("RGB", (32, 32), (200, 200, 200))) >> 63 == 1


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_int64_round_trip(h: int) -> None:
    v = to_int64(h)
    assert -(2**63) <= v < 2**63
    assert from_int64(v) == h
    assert np.array([v], dtype=np.int64).view(np.uint64)[0] == h  # the same bits numpy sees


def test_int64_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="2\\*\\*64"):
        to_int64(2**64)
    with pytest.raises(ValueError, match="int64"):
        from_int64(2**63)


def _encode(img: Image.Image, fmt: str, **kw: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_phash_bytes_png_is_exact() -> None:
    img = _scene(9, (800, 600))
    assert phash_bytes(_encode(img, "PNG")) == _reference(img)


def test_phash_bytes_full_scale_jpeg_is_exact() -> None:
    data = _encode(_scene(10, (1024, 768)), "JPEG", quality=90)
    assert phash_bytes(data, exact=True) == _reference(Image.open(io.BytesIO(data)))


def _photo(seed: int, size: tuple[int, int] = (768, 576)) -> bytes:
    """A photo-like JPEG, quick to make: smooth colour fields at three scales plus grain."""
    rng = np.random.default_rng(seed)
    fields = [
        np.asarray(
            Image.fromarray(rng.integers(0, 256, (k * 3 // 4 + 1, k, 3), dtype=np.uint8)).resize(
                size, Image.Resampling.BICUBIC
            ),
            dtype=np.int16,
        )
        for k in (4, 16, 64)
    ]
    grain = rng.integers(-8, 9, (size[1], size[0], 1), dtype=np.int16)
    mix = (fields[0] * 5 + fields[1] * 3 + fields[2] * 2) // 10 + grain
    return _encode(
        Image.fromarray(mix.clip(0, 255).astype(np.uint8)), "JPEG", quality=int(rng.choice([82, 92]))
    )


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    """40 photos, then near copies of the first 8 (each variant twice)."""
    scenes = [_photo(seed) for seed in range(40)]
    return scenes + [samples.near_duplicate(scenes[i], samples.NEAR_VARIANTS[i % 4]) for i in range(8)]


def test_draft_jpeg_bits_match_the_full_decode(photos: list[bytes]) -> None:
    # 1/8 luma decode + block-summed Lanczos weights vs imagehash on the full decode: PIL's 8-bit
    # rounding of its full-size horizontal pass leaves some bits to chance (benchmarks/phash.py: ~90%)
    distances = [distance(phash_bytes(data), _reference(decode(data))) for data in photos]
    assert max(distances) <= 2
    assert sum(d == 0 for d in distances) >= 0.8 * len(photos)


def test_draft_jpeg_finds_the_same_duplicate_pairs(photos: list[bytes]) -> None:
    ours = np.array([phash_bytes(data) for data in photos], dtype=np.uint64)
    theirs = np.array([_reference(decode(data)) for data in photos], dtype=np.uint64)
    pairs = near_duplicate_pairs(ours, 8)
    assert len(pairs) >= 6  # the planted copies (a tight crop may escape either hash)
    assert np.array_equal(pairs, near_duplicate_pairs(theirs, 8))


def test_draft_jpeg_decodes_luma_only_at_a_reduced_scale() -> None:
    from vlcli.images import decode_luma_draft

    drafted = decode_luma_draft(_photo(1, (1600, 1200)), 64)
    assert drafted is not None
    img, full, orientation = drafted
    assert (img.mode, img.size, full, orientation) == ("L", (200, 150), (1600, 1200), 1)
    assert decode_luma_draft(_encode(_scene(2, (300, 200)), "PNG"), 64) is None  # not a JPEG
    assert decode_luma_draft(_encode(_scene(2, (300, 200)), "JPEG"), 200) is None  # no scale reduces it


@pytest.mark.parametrize("orientation", range(1, 9))
def test_phash_pixels_applies_the_exif_orientation(orientation: int) -> None:
    from PIL import ImageOps

    stored = _scene(12, (90, 60)).convert("L")
    exif = Image.Exif()
    exif[0x0112] = orientation
    tagged = Image.open(io.BytesIO(_encode(stored, "PNG", exif=exif.tobytes())))  # type: ignore[arg-type]
    upright = ImageOps.exif_transpose(tagged)
    assert phash_pixels(stored, stored.size, orientation) == _reference(upright)


def test_draft_jpeg_hashes_cmyk_and_grey() -> None:
    for mode in ("CMYK", "L"):
        data = _encode(Image.open(io.BytesIO(_photo(3))).convert(mode), "JPEG", quality=90)
        assert distance(phash_bytes(data), _reference(decode(data))) <= 2


def test_filter_without_a_model_hashes_jpegs_from_the_draft() -> None:
    from vlcli.steps.filter.step import FilterStep, ScoreSettings

    data = _photo(4)
    img, digest = FilterStep(ScoreSettings(nsfw="none")).prepare({"image": data, "width": 768, "height": 576})
    assert img is None  # nothing waits for a model
    assert digest == to_int64(phash_bytes(data))


def test_phash_bytes_hashes_the_upright_image() -> None:
    img = _scene(11, (400, 300))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; viewers rotate it 90 degrees clockwise
    data = _encode(img.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif.tobytes())  # type: ignore[arg-type]
    assert phash_bytes(data, exact=True) == phash(decode(data))
    assert distance(phash_bytes(data), phash(decode(data))) <= 2
    assert decode(data).size == (400, 300)
