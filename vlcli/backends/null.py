"""The `null` backends: one per capability, correctly shaped results at (almost) no model cost.

They exist to measure the pipeline's own ceiling: with them, a step's speed is that of its decoding,
resizing, cutting and committing alone, and a profile shows where that time goes. Their outputs are
not meaningful and they are never a default. Nothing heavy is imported except torch by the embedder,
whose tensors the crop step needs anyway. The null generator is the stub generator's replies under
this name (`vlcli.testing.stub_generator.NullGenerator`: the backends may not import the testing kit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlcli.backends.base import require, resolve_device
from vlcli.backends.protocols import Detection, TextBox
from vlcli.backends.registry import NULL_NOTE as NOTE

if TYPE_CHECKING:
    from PIL import Image

NAME = "null"
EMBED_DIM = 768  # dinov2-base's width, so the embedding column is the size a real run writes
CAPTION = "a photo of a scene with an object"
CLIP_SCORE = 0.3  # about what CLIP gives a matching caption
POOL = 4  # the embedder's embedding is a projection of a POOL x POOL colour thumbnail


def _provenance(capability: str, **settings: Any) -> dict[str, Any]:
    return {"backend": NAME, "capability": capability, "note": NOTE, **settings}


class NullEmbedder:
    """Unit vectors of `dim` projected from a 4x4 colour thumbnail: deterministic and content-dependent
    (so crop still picks a box), with a nearest-neighbour resize instead of a model's bicubic one."""

    def __init__(
        self,
        model: str = NAME,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        dim: int = EMBED_DIM,
        input_size: int = 224,
    ) -> None:
        torch = require("torch")
        self.name = NAME
        self.device = resolve_device(device)
        self.dim = dim
        self.input_size = input_size
        generator = torch.Generator().manual_seed(0)
        projection = torch.randn(3 * POOL * POOL, dim, generator=generator)
        self._projection = projection.to(self.device)

    def resize(self, images: Any, size: tuple[int, int]) -> Any:
        """uint8 [B,3,H,W] -> uint8 [B,3,h,w] by nearest neighbour: a strided view when shrinking (no
        copy, so the resize costs nothing), an interpolation when enlarging."""
        torch = require("torch")
        (h, w), (th, tw) = images.shape[-2:], size
        if h >= th and w >= tw:
            return images[..., :: h // th, :: w // tw][..., :th, :tw]
        return torch.nn.functional.interpolate(images, size=size, mode="nearest")

    def preprocess(self, images: Any) -> Any:
        """uint8 [B,3,H,W] -> float32 [B,3,S,S] in [0, 1]."""
        return self.resize(images, (self.input_size, self.input_size)).float().div_(255.0)

    def embed(self, pixels: Any) -> Any:
        """float32 [B, dim] unit vectors, a fixed projection of each image's mean colours on a 4x4 grid."""
        torch = require("torch")
        pooled = torch.nn.functional.adaptive_avg_pool2d(pixels.to(self.device).float(), POOL)
        return torch.nn.functional.normalize(pooled.flatten(1) @ self._projection, dim=1)

    def provenance(self) -> dict[str, Any]:
        """Names the null backend and the shape of what it returns."""
        return _provenance("embedder", dim=self.dim, input_size=self.input_size)


class NullNsfwScorer:
    """P(nsfw) = 0.0 for every image."""

    name = NAME

    def __init__(self, **options: Any) -> None:
        pass

    def score(self, images: list[Image.Image]) -> list[float]:
        """0.0 per image."""
        return [0.0] * len(images)

    def provenance(self) -> dict[str, Any]:
        """Names the null backend."""
        return _provenance("nsfw")


class NullTextReader:
    """No text in any image."""

    name = NAME

    def __init__(self, **options: Any) -> None:
        pass

    def read(self, images: list[Image.Image]) -> list[list[TextBox]]:
        """An empty list per image."""
        return [[] for _ in images]

    def provenance(self) -> dict[str, Any]:
        """Names the null backend."""
        return _provenance("ocr")


class NullDetector:
    """One fixed detection per image: the middle half of it, labelled "object"."""

    name = NAME

    def __init__(self, **options: Any) -> None:
        pass

    def detect(self, images: list[Image.Image]) -> list[list[Detection]]:
        """One centred box covering half of each side."""
        return [
            [Detection((im.width // 4, im.height // 4, im.width * 3 // 4, im.height * 3 // 4), "object", 1.0)]
            for im in images
        ]

    def provenance(self) -> dict[str, Any]:
        """Names the null backend."""
        return _provenance("detector")


class NullCaptioner:
    """The same caption for every image."""

    name = NAME

    def __init__(self, **options: Any) -> None:
        pass

    def caption(self, images: list[Image.Image]) -> list[str]:
        """CAPTION per image."""
        return [CAPTION] * len(images)

    def provenance(self) -> dict[str, Any]:
        """Names the null backend and its caption."""
        return _provenance("captioner", caption=CAPTION)


class NullImageTextScorer:
    """The same similarity for every (image, text) pair."""

    name = NAME

    def __init__(self, **options: Any) -> None:
        pass

    def score(self, images: list[Image.Image], texts: list[str]) -> list[float]:
        """CLIP_SCORE per pair."""
        return [CLIP_SCORE] * len(images)

    def provenance(self) -> dict[str, Any]:
        """Names the null backend and its score."""
        return _provenance("clip", score=CLIP_SCORE)
