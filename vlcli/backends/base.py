"""What every backend shares: device and dtype choice, and importing a heavy library lazily."""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, Any

from vlcli.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:
    import torch


DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp32", "bf16", "fp16")
# The package (a dependency of vlcli, or one of its extras) that provides each module a backend imports.
INSTALL = {
    "httpx": "httpx",
    "nudenet": "nudenet",
    "onnxruntime": "onnxruntime",
    "open_clip": "open_clip_torch",
    "paddle": "'vlcli[paddleocr]'",
    "paddleocr": "'vlcli[paddleocr]'",
    "rapidocr": "rapidocr",
    "tokenizers": "transformers",
    "torch": "torch",
    "torchvision": "torchvision",
    "transformers": "transformers",
    "ultralytics": "ultralytics-opencv-headless",
    "vllm": "'vlcli[vllm]'",
}


def installs(module: str) -> str:
    """The package that provides `module` (a dotted name comes with its top-level package)."""
    top = module.split(".")[0]
    return INSTALL.get(top, top)


def install_hint(*modules: str) -> str:
    """The one pip command that installs all of `modules`."""
    return "pip install " + " ".join(dict.fromkeys(installs(m) for m in modules))


def require(module: str, install: str | None = None) -> Any:
    """Import a heavy optional library, or fail saying what to pip install (`install`, else from INSTALL)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install {install}" if install else install_hint(module)
        raise MissingDependencyError(f"this needs {module.split('.')[0]!r}: {hint} ({exc})") from exc


def resolve_device(name: str = "auto") -> str:
    """`auto` picks cuda, then mps, then cpu; an explicit device must be available."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise UsageError(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), not {name!r}")
    torch = require("torch")
    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible (use --device cpu or auto)")
    if name == "mps" and not has_mps:
        raise UsageError("--device mps: Metal is not available here (use --device cpu or auto)")
    return name


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """`auto` is bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU."""
    if name not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {name!r}")
    tm = require("torch")
    if name == "auto":
        if device.startswith("cuda"):
            name = "bf16" if tm.cuda.is_bf16_supported() else "fp16"
        else:
            name = "fp16" if device == "mps" else "fp32"
    dtypes: dict[str, torch.dtype] = {"fp32": tm.float32, "bf16": tm.bfloat16, "fp16": tm.float16}
    return dtypes[name]


def autocast(device: str, dtype: torch.dtype) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision on `device` in `dtype`, or nothing when `dtype` is fp32."""
    torch = require("torch")
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)  # type: ignore[no-any-return]
