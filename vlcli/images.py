"""Pure image functions: header probing, bounded decoding, crop views. No I/O beyond the bytes given."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import re
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from vlcli.errors import RowSkipped

DEFAULT_MAX_PIXELS = 100_000_000
# The most pixels a step allocates for one row's image, decoded or resized (300 MB of RGB): enough for
# anything ingest admits by default, small enough to leave room for the models in a 2 GB process.
STEP_MAX_PIXELS = 100_000_000
# Decoding's working memory in flight across this process's threads: a decode waits until it fits (one
# alone always may), so a batch of huge images decodes a few at a time instead of all at once.
DECODE_BUDGET_BYTES = 768 * 2**20
# Bytes per decoded pixel reserved against the budget: the worst conversion (a palette image with
# transparency holds P, RGBA, its alpha and the RGB canvas at once) needs about this much.
DECODE_BYTES_PER_PIXEL = 8
PNG_COMPRESS_LEVEL = 1
# Views sent to a model (synth, validate): small files, no artefacts a model would read as content.
MODEL_JPEG_QUALITY = 90
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif", "JPEG2000": "jp2"}
_FAMILY = {"MPO": "JPEG"}
_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "CMYK", "I", "F"}  # modes Image.reduce averages correctly

Box = tuple[int, int, int, int]  # left, top, right, bottom


class ImageProblem(Exception):
    """The bytes are not a usable image; the message is the reason stored in the table."""


class TooLarge(ImageProblem, RowSkipped):
    """The row needs more pixels than a step allocates for one image: a skip, with the numbers."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header says about an image, and what Pillow warned about while reading it."""

    width: int
    height: int
    format: str
    warnings: tuple[str, ...] = ()


def content_id(data: bytes) -> str:
    """The stable id of an image: the first 128 bits of the SHA-256 of its bytes, as hex."""
    # SHA-256 runs in hardware on current x86 and ARM cores: about 2x BLAKE2b here.
    return hashlib.sha256(data).hexdigest()[:32]


def source_id(source: str) -> str:
    """The id of a row with no usable bytes: a hash of where it came from."""
    return "src-" + hashlib.blake2b(source.encode(), digest_size=14).hexdigest()


# --- Pillow's process-wide settings, made per call ---------------------------------------------

_pillow_lock = threading.Lock()
_pillow_users = 0  # calls in progress that read headers or decode
_pillow_default: int | None = None
_warning_users = 0
_previous_show: Any = warnings.showwarning
_EVERY_PIL_WARNING = ("always", None, Warning, re.compile(r"PIL\."), 0)
_thread = threading.local()


@contextlib.contextmanager
def _own_bounds_only() -> Iterator[None]:
    """Pillow's decompression-bomb check off while we open and decode: ours is the only bound.

    `Image.MAX_IMAGE_PIXELS` is one process-wide setting: it is off while any call here is in progress
    and back to what it was when the last one ends (a save and restore per call would race). Every call
    checks its own bound (max_pixels, the step's pixel limit) before it decodes."""
    global _pillow_users, _pillow_default
    with _pillow_lock:
        if _pillow_users == 0:
            _pillow_default = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _pillow_users += 1
    try:
        yield
    finally:
        with _pillow_lock:
            _pillow_users -= 1
            if _pillow_users == 0:
                Image.MAX_IMAGE_PIXELS = _pillow_default


@contextlib.contextmanager
def _caught_warnings() -> Iterator[list[str]]:
    """Warnings raised in this thread while inside (Pillow's corrupt-EXIF ones), as text, never printed.

    The warnings module's state is process-wide (`catch_warnings` is not thread-safe): the first thread
    in puts a hook in front of `showwarning` that hands each warning to the list of the thread that
    raised it (or to the previous hook, for other threads), and a filter showing Pillow's warnings every
    time (each row's, not the first only); the last one out takes both away."""
    global _warning_users, _previous_show
    caught: list[str] = []
    with _pillow_lock:
        if _warning_users == 0:
            _previous_show = warnings.showwarning
            warnings.showwarning = _hand_over
            cast(list[Any], warnings.filters).insert(0, _EVERY_PIL_WARNING)
            warnings._filters_mutated()  # type: ignore[attr-defined]  # what filterwarnings calls
        _warning_users += 1
    outer = getattr(_thread, "caught", None)
    _thread.caught = caught
    try:
        yield caught
    finally:
        _thread.caught = outer
        with _pillow_lock:
            _warning_users -= 1
            if _warning_users == 0:
                if warnings.showwarning is _hand_over:
                    warnings.showwarning = _previous_show
                with contextlib.suppress(ValueError):  # someone replaced the filter list meanwhile
                    cast(list[Any], warnings.filters).remove(_EVERY_PIL_WARNING)
                warnings._filters_mutated()  # type: ignore[attr-defined]


def _hand_over(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    caught: list[str] | None = getattr(_thread, "caught", None)
    if caught is None:
        _previous_show(message, *args, **kwargs)
    elif (text := " ".join(str(message).split())) not in caught:
        caught.append(text)


def _pil_open(fp: io.BytesIO) -> Image.Image:
    """Pillow's own `Image.open`, even after ultralytics replaced it process-wide."""
    # ultralytics' replacement answers an unidentified image by trying to pip-install a HEIF plugin
    opener = getattr(Image.open, "__module__", "") or ""
    if opener.startswith("ultralytics"):
        from ultralytics.utils import patches

        return cast(Image.Image, patches._image_open(fp))
    return Image.open(fp)


def _open(data: bytes, max_pixels: int | None) -> Image.Image:
    """Read the header (inside `_reading`), checking `max_pixels` (None: any size)."""
    if not data:
        raise ImageProblem("empty file")
    try:
        img = _pil_open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageProblem("not an image (unrecognised format)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageProblem(f"unreadable header ({exc})") from exc
    except Exception as exc:  # a third-party PIL plugin failing must not fail the row's neighbours
        raise ImageProblem(f"unreadable header ({type(exc).__name__}: {exc})") from exc
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageProblem(f"bad size {w}x{h}")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageProblem(f"too many pixels: {w}x{h} = {w * h:,} > max_pixels {max_pixels:,}")
    return img


@contextlib.contextmanager
def _reading() -> Iterator[list[str]]:
    """Around every header read and decode: our bounds only, Pillow's warnings caught (yielded)."""
    with _own_bounds_only(), _caught_warnings() as caught:
        yield caught


class _Budget:
    """Bytes that decodes in progress may take across threads: a hold waits until it fits, except that
    one hold alone always may; a thread's nested holds never wait on its own."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._cond = threading.Condition()
        self._held = threading.local()

    @contextlib.contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Take `nbytes` (at most the whole budget) for the duration of the block."""
        need = min(nbytes, self.limit)
        nested = getattr(self._held, "depth", 0) > 0
        with self._cond:
            if not nested:
                self._cond.wait_for(lambda: self.used == 0 or self.used + need <= self.limit)
            self.used += need
        self._held.depth = getattr(self._held, "depth", 0) + 1
        try:
            yield
        finally:
            self._held.depth -= 1
            with self._cond:
                self.used -= need
                self._cond.notify_all()


DECODE_BUDGET = _Budget(DECODE_BUDGET_BYTES)


def decode_budget(size: tuple[int, int]) -> contextlib.AbstractContextManager[None]:
    """Hold room in DECODE_BUDGET for an image of `size` decoded and worked on inside the block (the
    decodes inside do not wait again)."""
    return DECODE_BUDGET.hold(size[0] * size[1] * DECODE_BYTES_PER_PIXEL)


def check_pixels(size: tuple[int, int], doing: str, limit: int = STEP_MAX_PIXELS) -> None:
    """Raise TooLarge when an image of `size` would take more than `limit` pixels; `doing` says how."""
    w, h = size
    if w * h > limit:
        raise TooLarge(f"too large for this step ({doing} {w}x{h} = {w * h:,} pixels > {limit:,})")


def _orientation(img: Image.Image, data: bytes) -> int:
    if img.format == "PNG" and "exif" not in img.info and b"eXIf" not in data:
        return 1  # Pillow would decode every pixel looking for an EXIF chunk after the image data
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block must not make a good image unusable
        return 1


def _is_truncated(img: Image.Image, data: bytes, fmt: str) -> bool:
    """Whether the stream ends early. A JPEG is judged by decoding it at its smallest scale (an eighth:
    entropy decoding still reads every scan) unless its last bytes are the end-of-image marker, which no
    truncated stream can end with (0xFF is escaped inside scans). Data after that marker (a motion
    photo's video, a second JPEG) is no truncation."""
    if fmt == "JPEG":
        if data[-4096:].rstrip(b"\x00").endswith(b"\xff\xd9"):
            return False  # the common case, at no decoding cost
        if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone told Pillow to accept short files: fall back
            return data.rfind(b"\xff\xd9") == -1
        w, h = img.size
        img.draft(img.mode, (max(1, w // 8), max(1, h // 8)))
        try:
            img.load()
        except OSError as exc:
            if "truncated" in str(exc):
                return True
            raise ImageProblem(f"cannot decode ({exc})") from exc
        return False
    if fmt == "PNG":
        return data.rfind(b"IEND") == -1
    if fmt == "GIF":
        return not data.rstrip(b"\x00").endswith(b";")
    return False


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Read size and format from the header (EXIF orientation applied); raise ImageProblem if unusable.
    What Pillow warned about (a corrupt EXIF block) comes back in `warnings`, never on stderr."""
    with _reading() as caught:
        img = _open(data, max_pixels)
        fmt = img.format or "UNKNOWN"
        w, h = img.size
        if (
            fmt in ("JPEG", "TIFF", "WEBP", "PNG", "MPO", "HEIF")
            and _orientation(img, data) in _ROTATED_ORIENTATIONS
        ):
            w, h = h, w
        if _is_truncated(img, data, fmt):
            raise ImageProblem(f"truncated {fmt} file")
    return ImageInfo(width=w, height=h, format=fmt, warnings=tuple(caught))


def decode(
    data: bytes,
    *,
    min_side: int | None = None,
    max_pixels: int | None = None,
    limit: int = STEP_MAX_PIXELS,
    reduce: bool = True,
) -> Image.Image:
    """Decode to an upright RGB image, allocating at most `limit` pixels (TooLarge, a skip, otherwise).

    With `min_side` the image decodes at a reduced size whose short side stays at least `min_side`:
    JPEGs in draft mode, other formats (unless `reduce` is off: their pixels stay exact) shrunk by a
    whole factor right after decoding. Large decodes wait for room in DECODE_BUDGET. `max_pixels`
    bounds the header's size as ingest does (None: any)."""
    with _reading():
        img = _open(data, max_pixels)
        try:
            if min_side is not None and img.format == "JPEG":
                w, h = img.size
                scale = max(1.0, min(w, h) / min_side)
                img.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
            check_pixels(img.size, "decoding", limit)
            with DECODE_BUDGET.hold(img.size[0] * img.size[1] * DECODE_BYTES_PER_PIXEL):
                img.seek(0)  # animated images: the first frame
                img.load()
                img = shrink(img, min_side if reduce else None)
                # In place: without an orientation to undo, the default returns a copy (~3 ms a photo).
                ImageOps.exif_transpose(img, in_place=True)
                return to_rgb(img)
        except ImageProblem:
            raise
        except Exception as exc:
            raise ImageProblem(f"cannot decode ({type(exc).__name__}: {exc})") from exc


def decode_luma_draft(data: bytes, min_side: int) -> tuple[Image.Image, tuple[int, int], int] | None:
    """A JPEG decoded at the smallest of JPEG's DCT scales (1/8, 1/4, 1/2) whose short side stays at least
    `min_side`, in grey levels when it is YCbCr (luma only: no chroma or colour conversion) and as stored
    (orientation not applied), with its stored size and EXIF orientation; None for other formats and
    JPEGs no scale reduces (decode those with `decode`)."""
    with _reading():
        img = _open(data, None)
        full = img.size
        scale = next((s for s in (8, 4, 2) if min(full) // s >= min_side), 1)
        if img.format != "JPEG" or scale == 1:
            return None
        try:
            img.draft("L", (full[0] // scale, full[1] // scale))  # Pillow picks 1/scale for this size
            check_pixels(img.size, "decoding")
            img.load()
        except ImageProblem:
            raise
        except Exception as exc:
            raise ImageProblem(f"cannot decode ({type(exc).__name__}: {exc})") from exc
        return img, full, _orientation(img, data)


def shrink(img: Image.Image, min_side: int | None) -> Image.Image:
    """`img` shrunk by the largest whole factor that keeps its short side >= min_side (an average over
    factor x factor blocks: what JPEG draft mode does in the DCT domain, for formats without one)."""
    factor = min(img.size) // min_side if min_side else 0
    if factor < 2:
        return img
    if img.mode not in _REDUCIBLE:
        img = to_rgb(img)  # a palette's indices cannot be averaged
    return img.reduce(factor)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode (palette, CMYK, 16-bit, alpha) to 8-bit RGB; transparency goes on white."""
    if img.mode == "RGB":
        img.load()
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale to 8 bits instead of clipping everything above 255 to white.
        arr = np.asarray(img)
        scale = 255.0 / (65535.0 if arr.max(initial=0) > 255 else 255.0)
        grey = np.empty(arr.shape, dtype=np.uint8)
        step = max(1, 2**20 // max(1, arr.shape[1]))  # a few MB of float64 at a time, not 8 bytes a pixel
        for top in range(0, arr.shape[0], step):
            grey[top : top + step] = (arr[top : top + step] * scale).clip(0, 255)
        return Image.fromarray(grey).convert("RGB")
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


def upright_size(data: bytes, max_pixels: int | None = None) -> tuple[tuple[int, int], str]:
    """Size after EXIF orientation and PIL format name, from the header alone."""
    with _reading():
        img = _open(data, max_pixels)
        w, h = img.size
        if _orientation(img, data) in _ROTATED_ORIENTATIONS:
            w, h = h, w
        return (w, h), img.format or "UNKNOWN"


def decode_view(
    data: bytes,
    box: Box | None,
    *,
    min_side: int | None = None,
    max_pixels: int | None = None,
    limit: int = STEP_MAX_PIXELS,
) -> Image.Image:
    """Decode the view every step sees: the crop when `box` (original upright pixels) is set, else the
    whole image; with `min_side`, decode at the smallest scale whose view keeps that short side (see
    `decode`, which also bounds the pixels decoded by `limit`)."""
    if box is None:
        return decode(data, min_side=min_side, max_pixels=max_pixels, limit=limit)
    if min_side is None:
        return crop_view(decode(data, max_pixels=max_pixels, limit=limit), box)
    full, _ = upright_size(data, max_pixels)
    left, top, right, bottom = clamp_box(box, full)
    # Draft mode scales the whole image: ask for the scale that leaves the crop, not the image, >= min_side.
    need = math.ceil(min_side * min(full) / min(right - left, bottom - top))
    img = decode(data, min_side=need, max_pixels=max_pixels, limit=limit)
    return crop_view(img, scale_box((left, top, right, bottom), full, img.size))


def short_side_size(size: tuple[int, int], short: int) -> tuple[int, int]:
    """`size` scaled so its short side is `short`, the long side rounded (at least 1)."""
    w, h = size
    scale = short / min(w, h)
    return (short, max(1, round(h * scale))) if w <= h else (max(1, round(w * scale)), short)


def resize_short(
    img: Image.Image, size: int, *, upscale: bool = False, limit: int = STEP_MAX_PIXELS
) -> Image.Image:
    """Resize (antialiased) so the short side is `size`; smaller images stay as they are unless `upscale`.
    A result over `limit` pixels raises TooLarge before anything is allocated."""
    w, h = img.size
    short = min(w, h)
    if short == size or (short < size and not upscale):
        return img
    target = short_side_size(img.size, size)
    check_pixels(target, f"resizing {w}x{h} to short side {size} gives", limit)
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
    max_pixels: int | None = None,
    limit: int = STEP_MAX_PIXELS,
) -> tuple[bytes, str]:
    """The view's file bytes and format: cropped to `box`, short side resized to `size`, encoded as `fmt`
    (None: JPEG for JPEG sources, else PNG); the original bytes when none of that changes anything.
    A resize to more than `limit` pixels raises TooLarge before anything is decoded."""
    full, source = upright_size(data, max_pixels)
    region = clamp_box(box, full) if box is not None else (0, 0, *full)
    width, height = region[2] - region[0], region[3] - region[1]
    short = min(width, height)
    resize = size is not None and (short > size or (upscale and short < size))
    whole = region == (0, 0, *full)
    if whole and not resize and (fmt is None or same_format(fmt, source)):
        return data, source
    out = fmt or ("JPEG" if same_format(source, "JPEG") else "PNG")
    target = (width, height)
    if size is not None and resize:
        target = short_side_size(target, size)
        check_pixels(target, f"resizing {width}x{height} to short side {size} gives", limit)
    # Held until the file is encoded: the decoded view and its resized copy live that long.
    with DECODE_BUDGET.hold(full[0] * full[1] * DECODE_BYTES_PER_PIXEL + target[0] * target[1] * 3):
        img = decode_view(
            data,
            None if whole else region,
            min_side=size if resize else None,
            max_pixels=max_pixels,
            limit=limit,
        )
        if size is not None:
            img = resize_short(img, size, upscale=upscale, limit=limit)
        return encode(img, out, quality), out


def view_jpeg(row: Mapping[str, Any], long_side: int) -> bytes:
    """The row's view (its crop when set) as the JPEG a model is sent: long side at most `long_side`."""
    box = tuple(row["crop_box"]) if row.get("crop_box") is not None else None
    width, height = row.get("width") or 0, row.get("height") or 0
    if box is not None:
        width, height = box[2] - box[0], box[3] - box[1]
    min_side = None
    if width > 0 and height > 0 and max(width, height) > long_side:
        # JPEG draft decoding keeps the short side >= min_side: ask for what the long side bound leaves.
        min_side = max(1, math.ceil(long_side * min(width, height) / max(width, height)))
    img = decode_view(row["image"], cast("Box | None", box), min_side=min_side)
    if max(img.size) > long_side:
        img.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    return encode(img, "JPEG", MODEL_JPEG_QUALITY)
