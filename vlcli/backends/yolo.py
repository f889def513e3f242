"""Object detection with any Ultralytics model (`yolo11s.pt`, a local `.pt`/export, or a `.yaml` config).

Ultralytics changes process-wide state when imported and when it first predicts on the CPU: it sets
`OMP_NUM_THREADS=1`, drops torch to `min(8, cores - 1)` threads (one thread on two cores: everything
after runs at half speed), turns OpenCV threading off and changes numpy's print options. Every entry
into ultralytics here runs inside `_process_state_kept()`, which puts all of that back. It also logs
to stdout and writes a settings file on import, and sends usage analytics when online: we default
`YOLO_VERBOSE` to off and `YOLO_CONFIG_DIR` to a folder in the user's cache, and switch analytics off
for this process.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from vlcli.backends.base import resolve_device
from vlcli.backends.protocols import Box, Detection
from vlcli.errors import MissingDependencyError, ModelLoadError, UsageError
from vlcli.hub import ULTRALYTICS_CONFIG_SUFFIXES, ultralytics_dir

DEFAULT_MODEL = "yolo11s.pt"
PACKAGE = "ultralytics-opencv-headless"
BATCH_SIZE = 32  # images per predict call: bounds memory, not results
BOX_TASKS = ("detect", "segment", "pose")  # tasks whose results carry axis-aligned boxes
CONFIG_SUFFIXES = ULTRALYTICS_CONFIG_SUFFIXES
cache_dir = ultralytics_dir


def is_offline() -> bool:
    """True when `YOLO_OFFLINE` is set to a true value (Ultralytics' own switch)."""
    return os.environ.get("YOLO_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    import numpy as np
    import torch
    from PIL import Image

    threads = torch.get_num_threads()
    image_open = Image.open
    omp = os.environ.get("OMP_NUM_THREADS")
    printoptions = np.get_printoptions()
    cv2_threads = _cv2_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp
        np.set_printoptions(**printoptions)
        # ultralytics replaces PIL's Image.open with a wrapper that, on an unidentified image, tries to
        # pip-install and register a HEIF plugin: in a data tool that must never happen behind our back.
        Image.open = image_open  # type: ignore[method-assign]
        if cv2_threads is not None:
            import cv2

            cv2.setNumThreads(cv2_threads)


def _cv2_threads() -> int | None:
    try:
        import cv2
    except ImportError:
        return None
    return int(cv2.getNumThreads())


@lru_cache(maxsize=1)
def import_ultralytics() -> Any:
    """Import ultralytics quietly, with its settings in vl's cache and the process's thread settings kept."""
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_dir()))
    with _process_state_kept():
        try:
            import ultralytics
            from ultralytics.utils import events
        except ImportError as exc:
            raise MissingDependencyError(
                f"the ultralytics detector needs ultralytics: pip install {PACKAGE} (Ultralytics' build "
                f"that uses opencv-python-headless; plain 'ultralytics' pulls opencv-python) ({exc})"
            ) from exc
    events.events.enabled = False  # a library must not send usage analytics on its user's behalf
    return ultralytics


def resolve_weights(model: str) -> str:
    """What to hand to `YOLO()`: a local file, an Ultralytics config name, or a weights file in vl's cache."""
    path = Path(model).expanduser()
    if path.exists():
        return str(path)
    if path.suffix in CONFIG_SUFFIXES:
        return model  # ultralytics finds its own configs (yolov8n.yaml) by name; random weights
    if model not in import_ultralytics().utils.downloads.GITHUB_ASSETS_NAMES:
        raise _load_error(model, "no such file, and not an Ultralytics weights name")
    cached = cache_dir() / "weights" / model
    if cached.is_file():
        return str(cached)
    if is_offline():
        raise _load_error(model, f"not downloaded yet (YOLO_OFFLINE is set; looked in {cached.parent})")
    cached.parent.mkdir(parents=True, exist_ok=True)
    return str(cached)  # ultralytics downloads it here rather than into the working directory


def is_official(weights: str) -> bool:
    """Whether `weights` is an Ultralytics release asset that Ultralytics itself downloaded into vl's cache
    (by name), rather than a file someone handed us."""
    path = Path(weights)
    return path.parent == cache_dir() / "weights" and path.name in _asset_names()


def _asset_names() -> frozenset[str]:
    return frozenset(import_ultralytics().utils.downloads.GITHUB_ASSETS_NAMES)


@contextlib.contextmanager
def _unpickling(restricted: bool) -> Iterator[None]:
    """Ultralytics unpickles `.pt` checkpoints with `weights_only=False`, which runs whatever code the
    pickle names. Restricted, it loads with `weights_only=True` and an allow-list of its own model
    classes (its ULTRALYTICS_SAFE_LOAD mode), which refuses a crafted file before running anything."""
    import_ultralytics()
    tasks: Any = importlib.import_module("ultralytics.nn.tasks")
    previous = getattr(tasks, "SAFE_LOAD", None)
    if restricted and (previous is None or not tasks._SafeLoad.SUPPORTED):
        raise ModelLoadError(  # an Ultralytics without restricted loading: refuse rather than unpickle
            "this ultralytics cannot load checkpoints without running their code: pass --trust-remote-code "
            "to load a local .pt you trust, or use an ONNX/TorchScript export"
        )
    tasks.SAFE_LOAD = restricted
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes about pickle protocols: not the user's business
            yield
    finally:
        tasks.SAFE_LOAD = previous


def _load_error(model: str, why: str) -> ModelLoadError:
    return ModelLoadError(
        f"cannot load the detector {model!r}: {why} (use a local .pt path, or an Ultralytics weights name "
        f"such as {DEFAULT_MODEL} that is downloaded once; offline, the weights must be a local path)"
    )


@lru_cache(maxsize=2)
def _load(model: str, trust_remote_code: bool = False) -> tuple[Any, dict[int, str]]:
    ultralytics = import_ultralytics()
    weights = resolve_weights(model)
    restricted = not (trust_remote_code or is_official(weights))
    with _process_state_kept(), _unpickling(restricted):
        try:
            net = ultralytics.YOLO(weights, verbose=False)
            names = {int(k): str(v) for k, v in net.names.items()}  # exported models set up a predictor here
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if restricted and "outside the supported" in first:
                raise ModelLoadError(
                    f"refused to load the detector {model!r}: it is a pickle naming code outside "
                    "Ultralytics' checkpoint format, and unpickling it could run that code (pass "
                    "--trust-remote-code only if you trust where the file came from)"
                ) from None
            raise _load_error(model, first) from exc
    if net.task not in BOX_TASKS:
        raise UsageError(
            f"--detector {model!r} is a {net.task!r} model: use a detection model (or segment/pose, whose "
            "results also have boxes), e.g. yolo11s.pt"
        )
    return net, names


def ultralytics_device(device: str) -> str:
    """Ultralytics' spelling of a torch device: `cuda` -> `0`, `cuda:1` -> `1`, cpu and mps as they are."""
    if device == "cuda":
        return "0"
    return device.removeprefix("cuda:")


def pixel_box(xyxy: Sequence[float], width: int, height: int) -> Box:
    """Float corners to whole pixels covering the box (rounded outwards), clamped into the image."""
    left, top, right, bottom = (float(v) for v in xyxy)
    x0 = min(max(math.floor(left), 0), width)
    y0 = min(max(math.floor(top), 0), height)
    x1 = min(max(math.ceil(right), x0), width)
    y1 = min(max(math.ceil(bottom), y0), height)
    return x0, y0, x1, y1


@lru_cache(maxsize=4)
def _sha256(path: str) -> str | None:
    file = Path(path)
    return hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None


class UltralyticsDetector:
    """An Ultralytics model as a `Detector`; loads once per process and keeps torch's thread count."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str = "auto",
        conf: float = 0.25,
        iou: float = 0.7,
        imgsz: int = 640,
        half: bool | None = None,
        max_det: int = 300,
        batch_size: int = BATCH_SIZE,
        trust_remote_code: bool = False,
    ) -> None:
        _check_options(conf, iou, imgsz, max_det, batch_size)
        self.name = model
        self.device = resolve_device(device)
        self.half = self.device.startswith("cuda") if half is None else bool(half)
        if self.half and not self.device.startswith("cuda"):
            raise UsageError(f"half precision needs a CUDA device, not {self.device!r} (leave half unset)")
        self.conf, self.iou, self.imgsz, self.max_det = float(conf), float(iou), int(imgsz), int(max_det)
        self.batch_size = int(batch_size)
        # Without trust_remote_code, a local .pt is unpickled with weights_only=True (see _unpickling).
        self.model, self.names = _load(model, trust_remote_code)
        self._weights = str(self.model.ckpt_path or "")

    def detect(self, images: list[Image.Image]) -> list[list[Detection]]:
        """Detections of each image (boxes in its pixels, best first), in input order."""
        found: list[list[Detection]] = []
        for start in range(0, len(images), self.batch_size):
            found.extend(self._detect_batch(images[start : start + self.batch_size]))
        return found

    def _detect_batch(self, images: list[Image.Image]) -> list[list[Detection]]:
        # rect=False: every image is letterboxed to the same square, so an image's detections do not
        # depend on the other images in its batch (with rect, a batch of mixed shapes pads differently).
        with _process_state_kept():
            results = self.model.predict(
                [img if img.mode == "RGB" else img.convert("RGB") for img in images],
                conf=self.conf,
                iou=self.iou,
                imgsz=self.imgsz,
                half=self.half,
                max_det=self.max_det,
                device=ultralytics_device(self.device),
                rect=False,
                verbose=False,
                save=False,
            )
        return [self._detections(result, img) for result, img in zip(results, images, strict=True)]

    def _detections(self, result: Any, image: Image.Image) -> list[Detection]:
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return []
        width, height = image.size
        xyxy = boxes.xyxy.float().cpu().tolist()
        scores = boxes.conf.float().cpu().tolist()
        classes = boxes.cls.int().cpu().tolist()
        found = [
            Detection(pixel_box(b, width, height), self.names[c], float(s))
            for b, s, c in zip(xyxy, scores, classes, strict=True)
        ]
        return sorted(found, key=lambda d: -d.score)

    def provenance(self) -> dict[str, Any]:
        """Model, weights SHA-256 (None for a config's random weights), ultralytics version and settings."""
        return {
            "model": self.name,
            "weights_sha256": _sha256(self._weights) if self._weights else None,
            "ultralytics_version": str(import_ultralytics().__version__),
            "task": self.model.task,
            "num_classes": len(self.names),
            "conf": self.conf,
            "iou": self.iou,
            "imgsz": self.imgsz,
            "max_det": self.max_det,
            "half": self.half,
        }


def _check_options(conf: float, iou: float, imgsz: int, max_det: int, batch_size: int) -> None:
    if not 0.0 <= conf <= 1.0:
        raise UsageError(f"detector conf is a probability in [0, 1], not {conf!r}")
    if not 0.0 <= iou <= 1.0:
        raise UsageError(f"detector iou is an overlap in [0, 1], not {iou!r}")
    if imgsz < 32:
        raise UsageError(f"detector imgsz must be at least 32 pixels, not {imgsz!r}")
    if max_det < 1 or batch_size < 1:
        raise UsageError(f"detector max_det and batch_size must be positive, not {max_det!r}, {batch_size!r}")
