"""Text reading (OCR): the `TextReader` backends, `rapidocr` (default) and `paddleocr`.

A reader takes a batch of upright images and gives, per image, one `TextBox` per detected text line:
the axis-aligned bounds of the line's detected quadrilateral in that image's pixels, the recognised
text and the recogniser's confidence. Lines are in reading order (top to bottom, then left to right).

`rapidocr` runs the PP-OCRv6 small detector and recogniser (and a 0/180 degree line-orientation
classifier) that the `rapidocr` wheel ships, with onnxruntime, offline. docs/ocr.md explains the
defaults and their speed.
"""

from __future__ import annotations

import hashlib
import math
import os
import queue
import shutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlcli.backends.base import DEVICES, DTYPES
from vlcli.backends.protocols import Box, TextBox
from vlcli.errors import MissingDependencyError, ModelLoadError, Notice, UsageError

DET_SIDE = 960  # detector input: long side scaled down to this; smaller images are not upscaled
MIN_SCORE = 0.5  # lines the recogniser is less sure of are dropped (rapidocr's own default)
MAX_WORKERS = 4  # default cap on images read at once: each worker holds its own copy of the models
SHIPPED = {
    "det": "PP-OCRv6_det_small.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}


def quad_bounds(points: Any, size: tuple[int, int]) -> Box:
    """Axis-aligned integer bounds of a polygon's points [(x, y), ...], clipped to an image of `size`."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    w, h = size
    left = min(max(math.floor(pts[:, 0].min()), 0), w)
    top = min(max(math.floor(pts[:, 1].min()), 0), h)
    right = min(max(math.ceil(pts[:, 0].max()), left), w)
    bottom = min(max(math.ceil(pts[:, 1].max()), top), h)
    return left, top, right, bottom


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _check_dtype(dtype: str) -> None:
    # Accepted so every OCR backend takes the same options; the ONNX models always run in fp32.
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")


def _check_device(device: str) -> None:
    if device not in DEVICES and not device.startswith("cuda:"):
        raise UsageError(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), not {device!r}")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def _load_error(what: str, exc: BaseException, hint: str) -> ModelLoadError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return ModelLoadError(f"cannot load {what}: {first} ({hint})")


@lru_cache(maxsize=8)
def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


# --- rapidocr ------------------------------------------------------------------------------------------


def _rapidocr() -> Any:
    try:
        import rapidocr
    except ImportError as exc:
        raise MissingDependencyError(
            f"the rapidocr OCR backend needs the 'rapidocr' package: pip install rapidocr onnxruntime ({exc})"
        ) from exc
    return rapidocr


def shipped_models() -> dict[str, str]:
    """Paths of the detector, recogniser and orientation classifier inside the installed `rapidocr` wheel."""
    folder = Path(_rapidocr().__file__).parent / "models"
    paths = {role: folder / name for role, name in SHIPPED.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise MissingDependencyError(
            f"the rapidocr wheel has no {', '.join(missing)}: pip install 'rapidocr>=3.10' "
            "(its wheel ships the PP-OCRv6 small models)"
        )
    return {role: str(p) for role, p in paths.items()}


def folder_models(folder: str) -> dict[str, str]:
    """The `*det*.onnx`, `*rec*.onnx` and optional `*cls*.onnx` files of a model folder (cls: the shipped one)."""
    root = Path(folder)
    if not root.is_dir():
        raise ModelLoadError(f"cannot load the OCR models {folder!r}: not a folder of ONNX files")
    found: dict[str, str] = {}
    for role in ("det", "rec", "cls"):
        matches = sorted(p for p in root.glob("*.onnx") if role in p.name.lower())
        if len(matches) > 1:
            names = ", ".join(p.name for p in matches)
            raise ModelLoadError(f"cannot load the OCR models {folder!r}: several {role} models ({names})")
        if matches:
            found[role] = str(matches[0])
    for role in ("det", "rec"):
        if role not in found:
            raise ModelLoadError(f"cannot load the OCR models {folder!r}: no *{role}*.onnx file in it")
    found.setdefault("cls", shipped_models()["cls"])
    return found


CUDA_PROVIDER = "CUDAExecutionProvider"
NO_CUDA_PROVIDER = (
    "OCR runs on the CPU although a CUDA GPU is present: this onnxruntime has no CUDA provider "
    "(to read on the GPU: pip uninstall onnxruntime && pip install onnxruntime-gpu)"
)


class DeviceNotice(Notice):
    """A backend runs on another device than the one the machine offers (shown once per run)."""


def choose_provider(device: str, providers: Sequence[str], gpu_present: bool) -> tuple[bool, str | None]:
    """(run on CUDA, a notice to show) for rapidocr on onnxruntime: `auto` takes CUDA when onnxruntime
    has its provider and falls back to the CPU with a notice when a GPU is there but the provider is
    not; `cpu` (and `mps`, which onnxruntime cannot use here) never asks for CUDA; `cuda` requires it."""
    _check_device(device)
    has_cuda = CUDA_PROVIDER in providers
    if device.startswith("cuda"):
        if not has_cuda:
            raise UsageError(
                f"--device {device}: this onnxruntime has no CUDA provider (replace onnxruntime with "
                "onnxruntime-gpu, or use --device auto / cpu)"
            )
        return True, None
    if device == "auto":
        if has_cuda:
            return True, None
        return False, NO_CUDA_PROVIDER if gpu_present else None
    if device == "mps":
        return False, "OCR runs on the CPU: rapidocr's onnxruntime has no Metal engine (--device mps)"
    return False, None


def gpu_present() -> bool:
    """Whether this machine has a usable NVIDIA GPU (torch's answer when torch is loaded, else the driver)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return bool(torch.cuda.is_available())
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            f"the rapidocr OCR backend runs its models with onnxruntime: pip install onnxruntime ({exc})"
        ) from exc
    return list(onnxruntime.get_available_providers())


def _use_cuda(device: str) -> bool:
    """Whether to ask rapidocr for CUDA (see `choose_provider`); a fallback's notice is warned once."""
    _check_device(device)
    providers = _providers()
    # The GPU probe only matters when `auto` would fall back: skip it otherwise.
    probe = device == "auto" and CUDA_PROVIDER not in providers
    cuda, notice = choose_provider(device, providers, gpu_present() if probe else False)
    if notice is not None:
        warnings.warn(notice, DeviceNotice, stacklevel=3)
    return cuda


def _device_id(device: str) -> int:
    """The CUDA device index of `cuda:N` (0 for `cuda` and `auto`)."""
    return int(device.partition(":")[2] or 0)


def _session_providers(engine: Any) -> list[str]:
    """The providers onnxruntime actually gave the detector's session (empty when it cannot be told)."""
    try:
        return list(engine.text_det.session.session.get_providers())
    except AttributeError:
        return []


def _warmup_image() -> Image.Image:
    """A small white image with one rendered word: reading it loads all three models."""
    from PIL import ImageDraw, ImageFont

    img = Image.new("RGB", (160, 48), "white")
    ImageDraw.Draw(img).text((8, 8), "vl ocr", fill="black", font=ImageFont.load_default(size=24))
    return img


class RapidOcrReader:
    """RapidOCR (PP-OCR models on onnxruntime) as a `TextReader`; `workers` images are read at once."""

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        workers: int | None = None,
        det_side: int = DET_SIDE,
        min_score: float = MIN_SCORE,
        orientation: bool = True,
    ) -> None:
        # trust_remote_code is accepted so every OCR backend takes the same options: ONNX holds no code.
        _check_dtype(dtype)
        if not 0.0 <= min_score <= 1.0:
            raise UsageError(f"min_score is a probability in [0, 1], not {min_score!r}")
        if det_side < 32:
            raise UsageError(f"det_side is the detector's long side in pixels (>= 32), not {det_side!r}")
        self.cuda = _use_cuda(device)
        self.device_id = _device_id(device)
        self.paths = shipped_models() if model is None else folder_models(model)
        self.name = "rapidocr" if model is None else f"rapidocr:{Path(model).name}"
        self.det_side, self.min_score, self.orientation = int(det_side), float(min_score), orientation
        # One worker per core, each single-threaded: whole images in parallel beat onnxruntime's
        # intra-op threads on these small models (docs/ocr.md has the numbers). A GPU takes one at a time.
        if workers is None:
            workers = 1 if self.cuda else min(_usable_cores(), MAX_WORKERS)
        if workers < 1:
            raise UsageError(f"workers is the number of images read at once (>= 1), not {workers!r}")
        self.workers = int(workers)
        self._engines: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(self.workers):
            self._engines.put(self._engine())
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

    def _params(self) -> dict[str, Any]:
        return {
            "Global.log_level": "error",  # it warns on every image without text
            "Global.text_score": self.min_score,
            "Global.use_cls": self.orientation,
            "Det.model_path": self.paths["det"],
            "Rec.model_path": self.paths["rec"],
            "Cls.model_path": self.paths["cls"],
            "Det.limit_type": "max",
            "Det.limit_side_len": self.det_side,
            # On CPU one line per run is cheapest: a batch pads every line to the widest one's length.
            "Rec.rec_batch_num": 6 if self.cuda else 1,
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "EngineConfig.onnxruntime.use_cuda": self.cuda,
            "EngineConfig.onnxruntime.cuda_ep_cfg.device_id": self.device_id,
        }

    def _engine(self) -> Any:
        rapidocr = _rapidocr()
        try:
            engine = rapidocr.RapidOCR(params=self._params())
            engine(_warmup_image())  # loads every model now, so a bad file fails here, not mid-step
        except Exception as exc:
            files = ", ".join(self.paths.values())
            raise _load_error(f"the OCR models {self.name!r}", exc, f"files: {files}") from exc
        actual = _session_providers(engine)
        if self.cuda and actual and actual[0] != CUDA_PROVIDER:
            # onnxruntime lists the provider but could not start it (CUDA or cuDNN libraries missing).
            self.cuda = False
            warnings.warn(
                f"OCR runs on the CPU: onnxruntime could not start its CUDA provider (got {actual[0]}; "
                "check that the CUDA and cuDNN libraries onnxruntime-gpu needs are installed)",
                DeviceNotice,
                stacklevel=3,
            )
        return engine

    @contextmanager
    def _borrow(self) -> Iterator[Any]:
        engine = self._engines.get()
        try:
            yield engine
        finally:
            self._engines.put(engine)

    def _read_one(self, img: Image.Image) -> list[TextBox]:
        img = _rgb(img)
        with self._borrow() as engine:
            out = engine(img)
        if out.boxes is None or out.txts is None or out.scores is None:
            return []
        return [
            TextBox(quad_bounds(quad, img.size), str(text), float(score))
            for quad, text, score in zip(out.boxes, out.txts, out.scores)
        ]

    def read(self, images: list[Image.Image]) -> list[list[TextBox]]:
        """The text lines of each image, in input order; an image without text gives an empty list."""
        if self._pool is None or len(images) < 2:
            return [self._read_one(img) for img in images]
        return list(self._pool.map(self._read_one, images))

    def provenance(self) -> dict[str, Any]:
        """Model files and hashes, rapidocr and onnxruntime versions, and the reading settings."""
        return {
            "model": self.name,
            "models": {role: Path(p).name for role, p in self.paths.items()},
            "models_sha256": {role: _sha256(p) for role, p in self.paths.items()},
            "rapidocr_version": _package_version("rapidocr"),
            "onnxruntime_version": _package_version("onnxruntime"),
            "det_side": self.det_side,
            "min_score": self.min_score,
            "orientation": self.orientation,
            "provider": "cuda" if self.cuda else "cpu",
            "dtype": "fp32",
        }


# --- paddleocr -----------------------------------------------------------------------------------------

PADDLE_MODEL = "PP-OCRv5_mobile"  # PaddleOCR 3.x names models <family>_det / <family>_rec


def _paddle_device(device: str) -> str | None:
    _check_device(device)
    if device == "mps":
        raise UsageError("--device mps: PaddlePaddle has no Metal support (use --device cpu or auto)")
    if device == "auto":
        return None  # PaddleOCR picks the GPU when its paddle build has CUDA
    if device == "cuda":
        return "gpu:0"
    return device.replace("cuda", "gpu")


class PaddleOcrReader:
    """PaddleOCR 3.x's OCR pipeline as a `TextReader`; it downloads its models on first use."""

    def __init__(
        self,
        model: str = PADDLE_MODEL,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        min_score: float = MIN_SCORE,
        orientation: bool = True,
    ) -> None:
        _check_dtype(dtype)
        if not 0.0 <= min_score <= 1.0:
            raise UsageError(f"min_score is a probability in [0, 1], not {min_score!r}")
        paddle_device = _paddle_device(device)
        paddleocr = _paddleocr()
        self.name = f"paddleocr:{model}"
        self.model, self.min_score, self.orientation = model, float(min_score), orientation
        try:
            self.pipeline = paddleocr.PaddleOCR(
                text_detection_model_name=f"{model}_det",
                text_recognition_model_name=f"{model}_rec",
                use_doc_orientation_classify=False,
                use_doc_unwarping=False,
                use_textline_orientation=orientation,
                text_rec_score_thresh=self.min_score,
                device=paddle_device,
            )
        except Exception as exc:
            raise _load_error(
                f"the PaddleOCR models {model!r}",
                exc,
                "PaddleOCR downloads them on first use: it needs network access or its model cache; "
                "the rapidocr backend works offline",
            ) from exc

    def read(self, images: list[Image.Image]) -> list[list[TextBox]]:
        """The text lines of each image, in input order; an image without text gives an empty list."""
        if not images:
            return []
        rgb = [_rgb(img) for img in images]
        # PaddleOCR takes arrays in OpenCV's BGR order.
        arrays = [np.ascontiguousarray(np.asarray(img)[:, :, ::-1]) for img in rgb]
        results = list(self.pipeline.predict(arrays))
        return [_paddle_boxes(res, img.size) for res, img in zip(results, rgb)]

    def provenance(self) -> dict[str, Any]:
        """Model family, paddleocr version and the reading settings."""
        return {
            "model": self.name,
            "paddleocr_version": _package_version("paddleocr"),
            "min_score": self.min_score,
            "orientation": self.orientation,
        }


def _paddleocr() -> Any:
    try:
        import paddleocr
    except ImportError as exc:
        raise MissingDependencyError(
            "the paddleocr OCR backend needs PaddleOCR 3.x and PaddlePaddle: pip install 'vlcli[paddleocr]' "
            f"(it downloads its models on first use; the default rapidocr backend works offline) ({exc})"
        ) from exc
    return paddleocr


def _paddle_boxes(result: Any, size: tuple[int, int]) -> list[TextBox]:
    """`TextBox`es from one PaddleOCR result (its `rec_polys`, `rec_texts`, `rec_scores` entries)."""
    polys: Sequence[Any] = result["rec_polys"]
    texts: Sequence[str] = result["rec_texts"]
    scores: Sequence[float] = result["rec_scores"]
    return [
        TextBox(quad_bounds(poly, size), str(text), float(score))
        for poly, text, score in zip(polys, texts, scores)
        if str(text).strip()
    ]
