"""The backend registry: capability and name -> class, built-ins and plugins alike, imported on first use.

A built-in backend is a row of `BUILTIN`: the module and class that implement it (as strings, so listing
or choosing a backend imports no model library) and the modules it needs. A plugin package declares an
entry point in the `vlcli.backends` group; its module is imported the first time a backend is looked up
and calls `register` for each of its backends, which adds rows to the same table.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal, overload

from vlcli.backends.base import install_hint
from vlcli.backends.protocols import (
    PROTOCOLS,
    Capability,
    Captioner,
    Detector,
    Embedder,
    ImageTextScorer,
    NsfwScorer,
    TextGenerator,
    TextReader,
)
from vlcli.errors import UsageError

ENTRY_POINT_GROUP = "vlcli.backends"
BUILTIN_ORIGIN = "built-in"
Factory = Callable[..., Any]


@dataclass(frozen=True)
class Backend:
    """One registered backend: `target` is "module:Class" (imported when built) or a callable."""

    capability: str
    name: str
    target: str | Factory
    requires: tuple[str, ...] = ()  # top-level modules it imports when built
    origin: str = BUILTIN_ORIGIN  # "built-in", the entry point that registered it, or RUNTIME_ORIGIN
    note: str = ""  # shown beside it by `vl backends`

    def missing(self) -> list[str]:
        """The modules it needs that are not installed (found without importing them)."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def load(self) -> Factory:
        """The class or factory that builds it (imports its module the first time)."""
        if callable(self.target):
            return self.target
        module, _, attr = self.target.partition(":")
        factory: Factory = getattr(importlib.import_module(module), attr)
        return factory


def _builtin(capability: str, name: str, target: str, *requires: str) -> Backend:
    module = target if target.startswith("vlcli.") else "vlcli.backends." + target
    return Backend(capability, name, module, requires)


def _null(capability: str, target: str, *requires: str) -> Backend:
    """A `null` backend: correctly shaped outputs at no model cost, never a default."""
    module = target if target.startswith("vlcli.") else "vlcli.backends.null:" + target
    return Backend(capability, "null", module, requires, note=NULL_NOTE)


NULL_NOTE = "for measuring the pipeline's own ceiling (no model: outputs are not meaningful)"
_TORCH = ("torch", "torchvision")
BUILTIN = (
    _builtin("embedder", "transformers", "dinov2:TransformersEmbedder", *_TORCH, "transformers"),
    _builtin("nsfw", "nudenet", "nudenet_backend:NudeNetScorer", "onnxruntime", "nudenet"),
    _builtin("nsfw", "hf", "hf_classifier:HFNsfwClassifier", *_TORCH, "transformers"),
    _builtin("detector", "ultralytics", "yolo:UltralyticsDetector", *_TORCH, "ultralytics"),
    _builtin("captioner", "transformers", "captioner:TransformersCaptioner", *_TORCH, "transformers"),
    _builtin("clip", "open_clip", "clip:OpenClipScorer", *_TORCH, "open_clip"),
    _builtin("ocr", "rapidocr", "ocr:RapidOcrReader", "rapidocr", "onnxruntime"),
    _builtin("ocr", "paddleocr", "ocr:PaddleOcrReader", "paddleocr", "paddle"),
    _builtin("generator", "openai", "openai_backend:OpenAICompatibleGenerator", "httpx"),
    _builtin("generator", "vllm", "vllm_backend:VllmGenerator", "vllm"),
    _builtin(
        "generator", "transformers", "transformers_generator:TransformersGenerator", "torch", "transformers"
    ),
    _builtin("generator", "stub", "vlcli.testing.stub_generator:StubGenerator"),
    _null("embedder", "NullEmbedder", "torch"),
    _null("nsfw", "NullNsfwScorer"),
    _null("ocr", "NullTextReader"),
    _null("detector", "NullDetector"),
    _null("captioner", "NullCaptioner"),
    _null("clip", "NullImageTextScorer"),
    _null("generator", "vlcli.testing.stub_generator:NullGenerator"),
)
_TABLE: dict[tuple[str, str], Backend] = {(b.capability, b.name): b for b in BUILTIN}
RUNTIME_ORIGIN = "registered in this process"  # a register() call outside a plugin's import, e.g. a test
_origin = RUNTIME_ORIGIN  # who is registering now: an entry point while its module is imported
_plugins_loaded = False


def register(
    capability: str, name: str, target: str | None = None, requires: tuple[str, ...] = ()
) -> Callable[[Factory], Factory]:
    """Make a class or factory the backend `name` for `capability`: as a decorator, or with `target`
    ("module:Class", imported on first use) as a plain call."""

    def add(factory: str | Factory) -> None:
        _TABLE[(capability, name)] = Backend(capability, name, factory, requires, _origin)

    def wrap(factory: Factory) -> Factory:
        add(factory)
        return factory

    if target is not None:
        add(target)
    return wrap


def load_plugins() -> None:
    """Import every module declared in the `vlcli.backends` entry-point group, once per process."""
    global _origin, _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _origin = f"plugin {ep.name} ({ep.value})"
        try:
            ep.load()  # a plugin module registers its backends on import
        finally:
            _origin = RUNTIME_ORIGIN


def plugins() -> list[tuple[str, str]]:
    """The installed plugins: (entry point name, module) of each, without importing them."""
    return sorted((ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP))


def backends(capability: str | None = None) -> list[Backend]:
    """Every registered backend (or those of one capability), ordered by capability then name."""
    load_plugins()
    rows = [b for b in _TABLE.values() if capability in (None, b.capability)]
    order = list(PROTOCOLS)
    return sorted(
        rows, key=lambda b: (order.index(b.capability) if b.capability in order else 99, b.capability, b.name)
    )


def available(capability: str) -> list[str]:
    """Names of the registered backends for a capability."""
    return sorted(b.name for b in backends(capability))


@overload
def create(capability: Literal["embedder"], name: str, **options: Any) -> Embedder: ...
@overload
def create(capability: Literal["nsfw"], name: str, **options: Any) -> NsfwScorer: ...
@overload
def create(capability: Literal["ocr"], name: str, **options: Any) -> TextReader: ...
@overload
def create(capability: Literal["detector"], name: str, **options: Any) -> Detector: ...
@overload
def create(capability: Literal["captioner"], name: str, **options: Any) -> Captioner: ...
@overload
def create(capability: Literal["clip"], name: str, **options: Any) -> ImageTextScorer: ...
@overload
def create(capability: Literal["generator"], name: str, **options: Any) -> TextGenerator: ...
def create(capability: Capability, name: str, **options: Any) -> Any:
    """Build the backend `name` for `capability` with its options."""
    load_plugins()
    backend = _TABLE.get((capability, name))
    if backend is None:
        names = ", ".join(available(capability)) or "none"
        raise UsageError(f"unknown {capability} backend {name!r} (available: {names})")
    return backend.load()(**options)


def missing_hint(backend: Backend) -> str:
    """What to install so `backend` can run ("" when nothing is missing)."""
    missing = backend.missing()
    return install_hint(*missing) if missing else ""


def catalog() -> dict[str, Any]:
    """Every capability with its protocol and backends (origin, missing modules, install hint), and the
    installed plugins: what `vl backends` shows. Nothing heavy is imported to find out."""
    by_capability: dict[str, list[dict[str, Any]]] = {cap: [] for cap in PROTOCOLS}
    for b in backends():
        missing = b.missing()
        by_capability.setdefault(b.capability, []).append(
            {
                "name": b.name,
                "origin": b.origin,
                "ready": not missing,
                "missing": missing,
                "install": missing_hint(b),
                "note": b.note,
            }
        )
    protocols: dict[str, type] = {cap: proto for cap, proto in PROTOCOLS.items()}
    return {
        "capabilities": [
            {
                "capability": cap,
                "protocol": protocols[cap].__name__ if cap in protocols else "",
                "backends": rows,
            }
            for cap, rows in by_capability.items()
        ],
        "plugins": [{"name": name, "module": module} for name, module in plugins()],
    }
