"""Crop's pixels before the model: the fast path's reduced decode and box mapping, JPEG decoding on the
device in batches, and host-to-device transfers through pinned memory."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from vlcli.backends.base import require
from vlcli.images import ImageProblem, check_pixels
from vlcli.steps.crop.geometry import Box

# `--preprocess fast` decodes at a DCT scale that keeps the smallest candidate at least 1/FAST_REDUCTION
# of its side in the resize-to-R frame: for the default R = 1024 and a 224 model input, a candidate is
# still >= 512 px, more than twice the model's input, before the one antialiased resize to it.
FAST_REDUCTION = 2
_DEVICE_MODES = {"RGB", "L"}  # JPEG colour modes nvjpeg and OpenCV decode to RGB as PIL does (not CMYK)
_REDUCED = {1: 0, 2: 16, 4: 32, 8: 64}  # OpenCV's IMREAD_REDUCED_* bits: libjpeg's DCT scaling


def fast_min_side(boxes: Sequence[Box], frame: tuple[int, int], resize_to: int) -> int:
    """The short side the fast path decodes at (at least): enough that the smallest candidate keeps
    resize_to / FAST_REDUCTION of its side in the R frame (`frame`, the resize-to-R size)."""
    smallest = min((min(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes), default=min(frame))
    return max(1, math.ceil(resize_to / FAST_REDUCTION * min(frame) / smallest))


def fit_boxes(boxes: Sequence[Box], frame: tuple[int, int], size: tuple[int, int]) -> list[Box]:
    """`boxes` in `frame` mapped onto an image of `size`: every box of one size in the frame keeps one
    size (so the candidates stack and resize as one batch), shifted back inside the image if needed."""
    sx, sy = size[0] / frame[0], size[1] / frame[1]
    out: list[Box] = []
    for x0, y0, x1, y1 in boxes:
        w = min(size[0], max(1, round((x1 - x0) * sx)))
        h = min(size[1], max(1, round((y1 - y0) * sy)))
        left, top = min(round(x0 * sx), size[0] - w), min(round(y0 * sy), size[1] - h)
        out.append((left, top, left + w, top + h))
    return out


def device_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The size of a JPEG the device decodes as PIL would (RGB or grey, no EXIF rotation), from its
    header alone; None for anything else (decoded on the CPU instead)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    try:
        img = Image.open(io.BytesIO(data))  # callers bound the size first (check_pixels)
        if img.format != "JPEG" or img.mode not in _DEVICE_MODES:
            return None
        return img.size if int(img.getexif().get(0x0112, 1) or 1) == 1 else None
    except Exception:  # the CPU path gives the row its proper error
        return None


def draft_scale(size: tuple[int, int], min_side: int) -> int:
    """The DCT scale (1, 2, 4 or 8) `vlcli.images.decode` gets from Pillow's draft mode for a JPEG of
    `size` asked to keep its short side >= min_side (Pillow's own rule, repeated)."""
    w, h = size
    scale = max(1.0, min(w, h) / min_side)
    fit = min(w // max(1, int(w / scale)), h // max(1, int(h / scale)))
    return next(s for s in (8, 4, 2, 1) if fit >= s)


def decode_jpeg_cpu(data: bytes, min_side: int) -> np.ndarray | None:
    """A JPEG as RGB uint8 HWC through OpenCV's libjpeg at the DCT scale Pillow's draft mode would use:
    the same pixels as `vlcli.images.decode` (tests check it) at ~2/3 of its CPU time, with no RGBX
    unpacking. None when the JPEG needs Pillow (CMYK, EXIF rotation, not a JPEG, a further shrink) or
    OpenCV refuses it."""
    size = device_jpeg_size(data)
    if size is None:
        return None
    check_pixels(size, "decoding")
    scale = draft_scale(size, min_side)
    if min(size) // scale // min_side >= 2:
        return None  # beyond what draft mode reduces, decode() shrinks further: leave it to decode()
    import cv2  # opencv-python-headless ships with ultralytics, a core dependency

    flags = _REDUCED[scale] | cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    return pixels if pixels is not None and pixels.ndim == 3 else None


def decode_jpegs(datas: Sequence[bytes], device: Any) -> list[Any]:
    """JPEG bytes -> uint8 HWC RGB tensors on `device`, decoded there in one batched call (nvjpeg on
    CUDA; the same call decodes on the CPU). A batch that fails decodes one by one, and a row that still
    fails comes back as its ImageProblem instead of a tensor."""
    if not datas:
        return []
    torch = require("torch")
    tio = require("torchvision.io")
    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    try:
        decoded = tio.decode_jpeg(tensors, mode=tio.ImageReadMode.RGB, device=device)
        return [img.permute(1, 2, 0) for img in decoded]
    except RuntimeError:
        pass
    out: list[Any] = []
    for tensor in tensors:
        try:
            out.append(tio.decode_jpeg(tensor, mode=tio.ImageReadMode.RGB, device=device).permute(1, 2, 0))
        except RuntimeError as exc:
            out.append(ImageProblem(f"cannot decode ({' '.join(str(exc).split())})"))
    return out


def to_device(arrays: Sequence[np.ndarray], device: Any) -> list[Any]:
    """uint8 arrays -> tensors on `device`. On CUDA they are packed into one pinned host buffer and
    copied without blocking, so the copies overlap the work queued before them; PyTorch's pinned-memory
    cache keeps the buffer until those copies are done."""
    torch = require("torch")
    if torch.device(device).type != "cuda":
        return [torch.from_numpy(a) for a in arrays]
    staging = torch.empty(sum(a.nbytes for a in arrays), dtype=torch.uint8, pin_memory=True)
    out, start = [], 0
    for a in arrays:
        host = staging[start : start + a.nbytes]
        host.numpy()[:] = a.reshape(-1)
        out.append(host.to(device, non_blocking=True).view(a.shape))
        start += a.nbytes
    return out
