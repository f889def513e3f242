"""Image embeddings from any DINOv2/DINOv3 (or other ViT) checkpoint through transformers."""

from __future__ import annotations

from typing import Any

from vlcli.backends.base import autocast, require, resolve_device, resolve_dtype
from vlcli.backends.hf import Checkpoint

DEFAULT_MODEL = "facebook/dinov2-base"


def embedding_dim(
    model: str = DEFAULT_MODEL, revision: str | None = None, trust_remote_code: bool = False
) -> int:
    """The embedding width of `model`, read from its config alone (no weights loaded)."""
    config = Checkpoint(model, revision, trust_remote_code).load("AutoConfig", "the config of")
    return int(config.hidden_size)


def _input_size(processor: Any) -> int:
    for attr in ("crop_size", "size"):
        size = getattr(processor, attr, None)
        if size is None:
            continue
        for key in ("height", "shortest_edge"):
            value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
            if value:
                return int(value)
    return 224


class TransformersEmbedder:
    """`AutoModel` + `AutoImageProcessor`: squash-resize, normalize with the model's mean/std, CLS pooling."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        torch = require("torch")
        self.name = model
        self.revision = revision
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        checkpoint = Checkpoint(model, revision, trust_remote_code)
        processor = checkpoint.load("AutoImageProcessor", "the image processor of")
        net = checkpoint.load("AutoModel", "the model")
        self.model = net.to(self.device).eval()
        self.input_size = _input_size(processor)
        self.dim = int(net.config.hidden_size)
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(processor.image_mean, dtype=torch.float32, device=self.device).view(shape)
        self._std = torch.tensor(processor.image_std, dtype=torch.float32, device=self.device).view(shape)
        self._commit = getattr(net.config, "_commit_hash", None)

    def resize(self, images: Any, size: tuple[int, int]) -> Any:
        """uint8 [B,3,H,W] -> uint8 [B,3,h,w]: bicubic, antialiased, rounded like PIL; separable, so an
        axis that keeps its size is not filtered at all."""
        tvf = require("torchvision.transforms.v2.functional")
        return tvf.resize(images, list(size), interpolation=tvf.InterpolationMode.BICUBIC, antialias=True)

    def preprocess(self, images: Any) -> Any:
        """uint8 [B,3,H,W] -> normalized float32 [B,3,S,S] (bicubic, antialiased, rounded like PIL)."""
        resized = self.resize(images, (self.input_size, self.input_size))
        return resized.float().div_(255.0).sub_(self._mean).div_(self._std)  # in place: no temporaries

    def embed(self, pixels: Any) -> Any:
        """The CLS (`pooler_output`) embedding of each preprocessed image, as float32 [B, D]."""
        torch = require("torch")
        pixels = pixels.to(self.device)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            out = self.model(pixel_values=pixels)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state[:, 0]
        return pooled.float()

    def provenance(self) -> dict[str, Any]:
        """Model, revision, dtype and input size."""
        return {
            "model": self.name,
            "revision": self.revision or self._commit,
            "dtype": str(self.dtype).removeprefix("torch."),
            "input_size": self.input_size,
        }
