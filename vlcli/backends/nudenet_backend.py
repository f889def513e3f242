"""NSFW scores from NudeNet's exposed-body-part detector (the ONNX model its wheel ships), run offline.

The score of an image is the highest confidence among the detector's boxes whose top class is one of
`COUNTED_CLASSES`, ignoring boxes below `MIN_CONFIDENCE`; 0.0 when there is none. No non-maximum
suppression: it only removes lower-scoring overlapping boxes, and across classes it could let a face or
a covered-part box hide an exposed one. docs/nsfw.md explains the choice of classes.

We read the model file from the installed `nudenet` package without importing it (its module imports
cv2) and feed the model ourselves in the documented format of an Ultralytics YOLOv8 ONNX export, which
it is: in, a float32 batch [B, 3, S, S] of RGB in [0, 1], letterboxed (aspect kept, centred, padded with
grey 114); out, [B, 4 + classes, anchors]: box centre x, centre y, width, height, then per-class scores.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlcli.backends.base import DEVICES, DTYPES
from vlcli.errors import MissingDependencyError, ModelLoadError, UsageError

MODEL_PACKAGE = "nudenet"
MODEL_FILE = "320n.onnx"
COUNTED_CLASSES = (
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
)
MIN_CONFIDENCE = 0.2  # below this a box is not a detection (NudeNet's own candidate cut)
PAD_GREY = 114  # the letterbox fill Ultralytics trains with
BATCH_SIZE = 32  # images per ONNX run: bounds memory, not results


def shipped_model_path() -> str:
    """The detector file inside the installed `nudenet` package (found without importing it)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return str(path)
    raise MissingDependencyError(
        f"the nudenet NSFW backend needs the model file {MODEL_FILE} that the 'nudenet' package ships: "
        "pip install nudenet (or choose another backend, e.g. hf)"
    )


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            f"the nudenet NSFW backend runs its model with onnxruntime: pip install onnxruntime ({exc})"
        ) from exc
    return onnxruntime


def _providers(device: str, available: list[str]) -> list[str]:
    if device not in DEVICES and not device.startswith("cuda:"):
        raise UsageError(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), not {device!r}")
    has_cuda = "CUDAExecutionProvider" in available
    if device.startswith("cuda") and not has_cuda:
        raise UsageError(
            f"--device {device}: this onnxruntime has no CUDA provider (replace onnxruntime with "
            "onnxruntime-gpu, or use --device auto / cpu: the detector is small and fast on CPU)"
        )
    if device == "cuda" or (device == "auto" and has_cuda):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]  # cpu, and mps: onnxruntime has no Metal provider we use


@lru_cache(maxsize=2)
def _session(path: str, providers: tuple[str, ...]) -> Any:
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its provider warnings are noise in a CLI
    try:
        return ort.InferenceSession(path, sess_options=options, providers=list(providers))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"cannot load the NSFW detector {path!r}: {first}") from exc


def _class_names(metadata: dict[str, str], path: str) -> list[str]:
    try:
        names = ast.literal_eval(metadata["names"])  # a dict literal; literal_eval runs no code
        return [str(names[i]) for i in range(len(names))]
    except (KeyError, ValueError, SyntaxError, TypeError) as exc:
        raise ModelLoadError(
            f"{path!r} has no class names in its metadata: expected an Ultralytics YOLOv8 detector export"
        ) from exc


def _image_size(metadata: dict[str, str], input_shape: list[Any]) -> int:
    if "imgsz" in metadata:
        return int(ast.literal_eval(metadata["imgsz"])[0])
    side = input_shape[-1]
    return side if isinstance(side, int) else 320


@lru_cache(maxsize=4)
def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def letterbox(img: Image.Image, size: int) -> np.ndarray:
    """Scale so the long side is `size` (aspect kept), centre on a grey square: float32 [3, size, size] in [0, 1]."""
    img = img if img.mode == "RGB" else img.convert("RGB")
    w, h = img.size
    scale = size / max(w, h)
    new = (max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale))))
    canvas = Image.new("RGB", (size, size), (PAD_GREY,) * 3)
    canvas.paste(img.resize(new, Image.Resampling.BILINEAR), ((size - new[0]) // 2, (size - new[1]) // 2))
    pixels = np.asarray(canvas, dtype=np.float32) / np.float32(255.0)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def exposed_score(output: np.ndarray, counted: np.ndarray, min_confidence: float) -> np.ndarray:
    """Per image: the best confidence among boxes whose top class is counted and >= `min_confidence`, else 0."""
    probs = output[:, 4:, :]  # [B, classes, anchors]
    top = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    hit = np.isin(top, counted) & (confidence >= min_confidence)
    best: np.ndarray = np.where(hit, confidence, np.float32(0.0)).max(axis=1)
    return best


class NudeNetScorer:
    """NudeNet's detector as an `NsfwScorer`: P(nsfw) = the best exposed-part detection's confidence."""

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        classes: tuple[str, ...] | list[str] = COUNTED_CLASSES,
        min_confidence: float = MIN_CONFIDENCE,
    ) -> None:
        # dtype and trust_remote_code are accepted so every NSFW backend takes the same options: the
        # ONNX model always runs in fp32 and contains no code.
        if dtype not in DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if not 0.0 <= min_confidence <= 1.0:
            raise UsageError(f"min_confidence is a probability in [0, 1], not {min_confidence!r}")
        self.path = model or shipped_model_path()
        if not Path(self.path).is_file():
            raise ModelLoadError(f"cannot load the NSFW detector {self.path!r}: no such file")
        ort = _onnxruntime()
        self.session = _session(self.path, tuple(_providers(device, ort.get_available_providers())))
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.labels = _class_names(metadata, self.path)
        unknown = [c for c in classes if c not in self.labels]
        if unknown or not classes:
            raise UsageError(f"unknown NudeNet classes {unknown} (choose from: {', '.join(self.labels)})")
        self.classes = tuple(classes)
        self.counted = np.array([self.labels.index(c) for c in self.classes])
        self.min_confidence = float(min_confidence)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_size = _image_size(metadata, list(model_input.shape))
        self.name = "nudenet" if model is None else f"nudenet:{Path(self.path).name}"
        self._sha256 = _sha256(self.path)

    def score(self, images: list[Image.Image]) -> list[float]:
        """P(nsfw) of each image: its best counted detection's confidence, 0.0 when none."""
        scores: list[float] = []
        for start in range(0, len(images), BATCH_SIZE):
            chunk = images[start : start + BATCH_SIZE]
            batch = np.stack([letterbox(img, self.input_size) for img in chunk])
            output = self.session.run(None, {self.input_name: batch})[0]
            if output.shape[1] != 4 + len(self.labels):
                raise ModelLoadError(
                    f"{self.path!r} gives {output.shape[1]} values per box, expected 4 + {len(self.labels)}"
                )
            scores.extend(float(s) for s in exposed_score(output, self.counted, self.min_confidence))
        return scores

    def provenance(self) -> dict[str, Any]:
        """Model file and hash, package version, counted classes, threshold, input size and provider."""
        try:
            package = version(MODEL_PACKAGE)
        except PackageNotFoundError:
            package = None
        return {
            "model": self.name,
            "model_sha256": self._sha256,
            "nudenet_version": package,
            "classes": list(self.classes),
            "min_confidence": self.min_confidence,
            "input_size": self.input_size,
            "provider": self.session.get_providers()[0],
            "dtype": "fp32",
        }
