"""Pure image functions: header probing, safe decoding, crop views. No I/O beyond the bytes given."""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 100_000_000
PNG_COMPRESS_LEVEL = 1
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif", "JPEG2000": "jp2"}
_FAMILY = {"MPO": "JPEG"}

Box = tuple[int, int, int, int]  # left, top, right, bottom


class ImageProblem(Exception):
    """The bytes are not a usable image; the message is the reason stored in the table."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header says about an image."""

    width: int
    height: int
    format: str


def content_id(data: bytes) -> str:
    """The stable id of an image: the first 128 bits of the SHA-256 of its bytes, as hex."""
    # SHA-256 runs in hardware on current x86 and ARM cores: about 2x BLAKE2b here.
    return hashlib.sha256(data).hexdigest()[:32]


def source_id(source: str) -> str:
    """The id of a row with no usable bytes: a hash of where it came from."""
    return "src-" + hashlib.blake2b(source.encode(), digest_size=14).hexdigest()


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageProblem("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageProblem(f"too many pixels ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageProblem("not an image (unrecognised format)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageProblem(f"unreadable header ({exc})") from exc
    except Exception as exc:  # a third-party PIL plugin failing must not fail the row's neighbours
        raise ImageProblem(f"unreadable header ({type(exc).__name__}: {exc})") from exc
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageProblem(f"bad size {w}x{h}")
    if w * h > max_pixels:
        raise ImageProblem(f"too many pixels: {w}x{h} = {w * h:,} > max_pixels {max_pixels:,}")
    return img


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block must not make a good image unusable
        return 1


def _is_truncated(data: bytes, fmt: str) -> bool:
    """Cheap end-of-stream checks for the common formats (no decoding)."""
    if fmt == "JPEG":
        # "No end-of-image after the last start-of-scan", searched from the end so a complete file costs
        # a few bytes instead of two passes over the whole file (PIL only says JPEG once it saw a scan).
        last_end = data.rfind(b"\xff\xd9")
        return last_end == -1 or data.find(b"\xff\xda", last_end) != -1
    if fmt == "PNG":
        return data.rfind(b"IEND") == -1
    if fmt == "GIF":
        return not data.rstrip(b"\x00").endswith(b";")
    return False


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Read size and format from the header (EXIF orientation applied); raise ImageProblem if unusable."""
    img = _open(data, max_pixels)
    fmt = img.format or "UNKNOWN"
    if _is_truncated(data, fmt):
        raise ImageProblem(f"truncated {fmt} file")
    w, h = img.size
    if fmt in ("JPEG", "TIFF", "WEBP", "PNG", "MPO", "HEIF") and _orientation(img) in _ROTATED_ORIENTATIONS:
        w, h = h, w
    return ImageInfo(width=w, height=h, format=fmt)


def decode(data: bytes, *, min_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode to an upright RGB image; with `min_side`, JPEGs decode at the smallest scale whose
    short side is still at least `min_side` (draft mode)."""
    img = _open(data, max_pixels)
    try:
        if min_side is not None and img.format == "JPEG":
            w, h = img.size
            scale = max(1.0, min(w, h) / min_side)
            img.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
        img.seek(0)  # animated images: the first frame
        img = ImageOps.exif_transpose(img) or img
        return to_rgb(img)
    except ImageProblem:
        raise
    except Exception as exc:
        raise ImageProblem(f"cannot decode ({type(exc).__name__}: {exc})") from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode (palette, CMYK, 16-bit, alpha) to 8-bit RGB; transparency goes on white."""
    if img.mode == "RGB":
        img.load()
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale to 8 bits instead of clipping everything above 255 to white.
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray(
            (arr * (255.0 / (65535.0 if top > 255 else 255.0))).clip(0, 255).astype("uint8")
        )
        return img.convert("RGB")
    if img.mode == "P" or img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def crop_view(img: Image.Image, box: Box | None) -> Image.Image:
    """The view downstream steps see: the crop when a box is set, else the whole image."""
    if box is None:
        return img
    return img.crop(clamp_box(box, img.size))


def clamp_box(box: Box, size: tuple[int, int]) -> Box:
    """`box` clipped to an image of `size`, never empty (at least 1x1)."""
    left, top, right, bottom = box
    w, h = size
    left, top = max(0, min(left, w - 1)), max(0, min(top, h - 1))
    return left, top, max(left + 1, min(right, w)), max(top + 1, min(bottom, h))


def scale_box(box: Box, frm: tuple[int, int], to: tuple[int, int]) -> Box:
    """`box` in an image of size `frm` mapped to the same region of that image resized to `to`."""
    sx, sy = to[0] / frm[0], to[1] / frm[1]
    left, top, right, bottom = box
    return round(left * sx), round(top * sy), round(right * sx), round(bottom * sy)


def upright_size(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[tuple[int, int], str]:
    """Size after EXIF orientation and PIL format name, from the header alone."""
    img = _open(data, max_pixels)
    w, h = img.size
    if _orientation(img) in _ROTATED_ORIENTATIONS:
        w, h = h, w
    return (w, h), img.format or "UNKNOWN"


def decode_view(
    data: bytes, box: Box | None, *, min_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode the view every step sees: the crop when `box` (original upright pixels) is set, else the
    whole image; with `min_side`, JPEGs decode at the smallest scale whose view keeps that short side."""
    if box is None:
        return decode(data, min_side=min_side, max_pixels=max_pixels)
    if min_side is None:
        return crop_view(decode(data, max_pixels=max_pixels), box)
    full, _ = upright_size(data, max_pixels)
    left, top, right, bottom = clamp_box(box, full)
    # Draft mode scales the whole image: ask for the scale that leaves the crop, not the image, >= min_side.
    need = math.ceil(min_side * min(full) / min(right - left, bottom - top))
    img = decode(data, min_side=need, max_pixels=max_pixels)
    return crop_view(img, scale_box((left, top, right, bottom), full, img.size))


def resize_short(img: Image.Image, size: int, *, upscale: bool = False) -> Image.Image:
    """Resize (antialiased) so the short side is `size`; smaller images stay as they are unless `upscale`."""
    w, h = img.size
    short = min(w, h)
    if short == size or (short < size and not upscale):
        return img
    scale = size / short
    target = (size, max(1, round(h * scale))) if w <= h else (max(1, round(w * scale)), size)
    return img.resize(target, Image.Resampling.LANCZOS)


def encode(img: Image.Image, fmt: str, quality: int = 95) -> bytes:
    """Encode an RGB image as 'JPEG' (at `quality`) or 'PNG' (lossless, fast zlib level)."""
    if fmt == "PNG" and img.mode in ("RGB", "L"):
        return _encode_png_fast(img)
    buf = io.BytesIO()
    try:
        if fmt == "JPEG":
            img.save(buf, "JPEG", quality=quality)
        else:
            img.save(buf, fmt, compress_level=PNG_COMPRESS_LEVEL)
    except (OSError, ValueError) as exc:
        raise ImageProblem(f"cannot encode as {fmt} ({exc})") from exc
    return buf.getvalue()


def _encode_png_fast(img: Image.Image) -> bytes:
    """PNG through OpenCV's libpng with the 'up' filter and zlib level 1: the same pixels (PNG is
    lossless) at ~2x the speed of PIL's encoder, whose per-row adaptive filter choice costs as much as
    the compression; files come out within a few % of PIL's level-1 size (photos, charts, pages)."""
    import cv2  # opencv-python-headless ships with ultralytics, a core dependency

    pixels = np.asarray(img)
    if img.mode == "RGB":
        pixels = np.ascontiguousarray(pixels[:, :, ::-1])  # OpenCV wants BGR
    params = [
        cv2.IMWRITE_PNG_COMPRESSION,
        PNG_COMPRESS_LEVEL,
        cv2.IMWRITE_PNG_FILTER,
        cv2.IMWRITE_PNG_FILTER_UP,
    ]
    ok, buf = cv2.imencode(".png", pixels, params)
    if not ok:
        raise ImageProblem("cannot encode as PNG (OpenCV refused the image)")
    return bytes(buf)


def file_extension(fmt: str) -> str:
    """The usual file extension of a PIL format name: 'JPEG' -> 'jpg'."""
    return _EXTENSIONS.get(fmt, fmt.lower())


def image_extensions() -> frozenset[str]:
    """Every extension `file_extension` gives a format PIL can open."""
    return frozenset(file_extension(fmt) for fmt in Image.registered_extensions().values())


def same_format(a: str, b: str) -> bool:
    """Whether two PIL format names are the same file type (MPO is a JPEG with extra frames)."""
    return _FAMILY.get(a, a) == _FAMILY.get(b, b)


def view_bytes(
    data: bytes,
    box: Box | None,
    *,
    fmt: str | None = None,
    size: int | None = None,
    quality: int = 95,
    upscale: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[bytes, str]:
    """The view's file bytes and format: cropped to `box`, short side resized to `size`, encoded as `fmt`
    (None: JPEG for JPEG sources, else PNG); the original bytes when none of that changes anything."""
    full, source = upright_size(data, max_pixels)
    region = clamp_box(box, full) if box is not None else (0, 0, *full)
    short = min(region[2] - region[0], region[3] - region[1])
    resize = size is not None and (short > size or (upscale and short < size))
    whole = region == (0, 0, *full)
    if whole and not resize and (fmt is None or same_format(fmt, source)):
        return data, source
    out = fmt or ("JPEG" if same_format(source, "JPEG") else "PNG")
    img = decode_view(
        data, None if whole else region, min_side=size if resize else None, max_pixels=max_pixels
    )
    if size is not None:
        img = resize_short(img, size, upscale=upscale)
    return encode(img, out, quality), out
