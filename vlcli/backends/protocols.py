"""The capabilities a step asks a backend for: one small batch-first protocol each, and their values.

Nothing here imports a model library, so steps, plugins and `vl backends` can read it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from PIL import Image

Capability = Literal["embedder", "nsfw", "ocr", "detector", "captioner", "clip", "generator"]
Box = tuple[int, int, int, int]  # left, top, right, bottom, in the image's pixels
Message = dict[str, Any]  # {"role": "system"|"user"|"assistant", "content": str | list[part]}


@dataclass(frozen=True)
class TextBox:
    """One text line: `box` = (left, top, right, bottom) in the image's pixels, its text and confidence."""

    box: Box
    text: str
    score: float


@dataclass(frozen=True)
class Detection:
    """One detected object: its box in the image's pixels, its class name and confidence."""

    box: Box
    label: str
    score: float


@dataclass(frozen=True)
class GenerationRequest:
    """One chat to complete. `json_schema` asks for a reply matching it where the backend can."""

    messages: list[Message]
    json_schema: dict[str, Any] | None = None
    max_tokens: int = 1024
    temperature: float = 0.7
    seed: int | None = None


@dataclass(frozen=True)
class GenerationResult:
    """The reply to one request: `text` when the backend answered, else `error` (one line, no secrets)."""

    text: str | None = None
    error: str | None = None
    attempts: int = 1  # transport attempts (retries on 429/5xx/timeouts included)
    usage: dict[str, int] = field(default_factory=dict)  # prompt_tokens / completion_tokens, if known

    @property
    def ok(self) -> bool:
        """Whether the backend produced text."""
        return self.text is not None and self.error is None


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


@runtime_checkable
class TextReader(Protocol):
    """Reads the text lines of batches of upright images, one list of `TextBox` per image, in order."""

    name: str

    def read(self, images: list[Image.Image]) -> list[list[TextBox]]:
        """The text lines of each image, in input order; an image without text gives an empty list."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Model names, hashes or versions, and settings that determine the output."""
        ...


@runtime_checkable
class Detector(Protocol):
    """Detects objects in batches of upright images: one list of detections per image, in order."""

    name: str

    def detect(self, images: list[Image.Image]) -> list[list[Detection]]:
        """Detections of each image, in input order; an empty batch gives an empty list."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Model name, weights hash, library version and settings that determine the detections."""
        ...


@runtime_checkable
class Captioner(Protocol):
    """Captions batches of upright RGB images: one string per image, in order."""

    name: str

    def caption(self, images: list[Image.Image]) -> list[str]:
        """The caption of each image, in input order; an empty batch gives an empty list."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Model name, revision and settings that determine the captions."""
        ...


@runtime_checkable
class ImageTextScorer(Protocol):
    """Scores batches of (image, text) pairs: the cosine similarity of each pair, in [-1, 1], in order."""

    name: str

    def score(self, images: list[Image.Image], texts: list[str]) -> list[float]:
        """Cosine similarity of each image with its paired text; an empty batch gives an empty list."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Model name, weights and settings that determine the scores."""
        ...


@runtime_checkable
class TextGenerator(Protocol):
    """Completes batches of chats; one result per request, in order; never raises for one bad request."""

    name: str
    model: str
    supports_images: bool

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Complete every request (concurrently or batched as the backend can), in input order."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Backend, model and settings that determine the replies (never a key or a token)."""
        ...

    def close(self) -> None:
        """Release connections, engines and memory."""
        ...


PROTOCOLS: dict[Capability, type] = {
    "embedder": Embedder,
    "nsfw": NsfwScorer,
    "ocr": TextReader,
    "detector": Detector,
    "captioner": Captioner,
    "clip": ImageTextScorer,
    "generator": TextGenerator,
}
