"""Capability protocols, device/dtype choice, lazy imports, and the backend registry."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vlcli.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:
    import torch
    from PIL import Image

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp32", "bf16", "fp16")
ENTRY_POINT_GROUP = "vlcli.backends"


def require(module: str, extra: str) -> Any:
    """Import a heavy optional library, or fail with the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"this needs {module.split('.')[0]!r}: pip install 'vlcli[{extra}]' ({exc})"
        ) from exc


def resolve_device(name: str = "auto") -> str:
    """`auto` picks cuda, then mps, then cpu; an explicit device must be available."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise UsageError(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), not {name!r}")
    torch = require("torch", "models")
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
    tm = require("torch", "models")
    if name == "auto":
        if device.startswith("cuda"):
            name = "bf16" if tm.cuda.is_bf16_supported() else "fp16"
        else:
            name = "fp16" if device == "mps" else "fp32"
    dtypes: dict[str, torch.dtype] = {"fp32": tm.float32, "bf16": tm.bfloat16, "fp16": tm.float16}
    return dtypes[name]


@runtime_checkable
class Embedder(Protocol):
    """Embeds batches of images given as uint8 tensors [B, 3, H, W] on the backend's device."""

    name: str
    device: str
    input_size: int

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize (squash, antialiased) to input_size and normalize: uint8 [B,3,H,W] -> float [B,3,S,S]."""
        ...

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """One float32 embedding per preprocessed image: [B, 3, S, S] -> [B, D]."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Model name, revision and settings that determine the output."""
        ...


@runtime_checkable
class NsfwScorer(Protocol):
    """Scores batches of upright RGB images with P(nsfw) in [0, 1], one float per image, in order."""

    name: str

    def score(self, images: list[Image.Image]) -> list[float]:
        """P(nsfw) of each image, in input order; an empty batch gives an empty list."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Model name, revision and settings that determine the scores."""
        ...


Factory = Callable[..., Any]
_REGISTRY: dict[tuple[str, str], Factory] = {}
_loaded_entry_points = False


def register(capability: str, name: str) -> Callable[[Factory], Factory]:
    """Decorator: make `factory` the backend `name` for `capability` (built-ins and plugins alike)."""

    def wrap(factory: Factory) -> Factory:
        _REGISTRY[(capability, name)] = factory
        return factory

    return wrap


def _load_plugins() -> None:
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    importlib.import_module("vlcli.backends.builtin")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()  # a plugin module registers its backends on import


def available(capability: str) -> list[str]:
    """Names of the registered backends for a capability."""
    _load_plugins()
    return sorted(name for cap, name in _REGISTRY if cap == capability)


def create(capability: str, name: str, **options: Any) -> Any:
    """Build the backend `name` for `capability` with its options."""
    _load_plugins()
    try:
        factory = _REGISTRY[(capability, name)]
    except KeyError:
        names = ", ".join(available(capability)) or "none"
        raise UsageError(f"unknown {capability} backend {name!r} (available: {names})") from None
    return factory(**options)
