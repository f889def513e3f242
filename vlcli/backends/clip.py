"""Image-text similarity from open_clip models: the cosine of each image's and its paired text's embedding."""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from vlcli.backends.base import autocast, require, resolve_device, resolve_dtype
from vlcli.backends.hf import in_batches
from vlcli.errors import MissingDependencyError, ModelLoadError
from vlcli.hub import ModelRef, before_load

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "openai"
BATCH_SIZE = 64  # image-text pairs per forward pass: bounds memory, not results
LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise MissingDependencyError(
            f"the open_clip image-text scorer needs open_clip: pip install open_clip_torch ({exc})"
        ) from exc
    return open_clip


def model_source(model: str) -> str:
    """open_clip's name for `model`: an existing folder becomes `local-dir:FOLDER`, anything else is kept."""
    if not model.startswith((LOCAL_DIR, HF_HUB)) and Path(model).is_dir():
        return LOCAL_DIR + model
    return model


def _check_folder(folder: Path) -> None:
    model = str(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"cannot load the CLIP model {model!r}: no such folder")
    if not (folder / "open_clip_config.json").is_file():
        raise ModelLoadError(
            f"cannot load the CLIP model {model!r}: the folder has no open_clip_config.json (an open_clip "
            "checkpoint folder holds it and a weights file)"
        )
    if not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
        # open_clip would go on with random weights, which makes every score meaningless
        raise ModelLoadError(f"cannot load the CLIP model {model!r}: the folder holds no weights file")


def _check_builtin(open_clip: Any, model: str, pretrained: str | None) -> bool:
    """Check a built-in name and its weights; True when those weights were trained with QuickGELU."""
    name = model.replace("/", "-")  # open_clip's own spelling rule: ViT-B/32 is ViT-B-32
    if open_clip.get_model_config(name) is None:
        raise ModelLoadError(
            f"cannot load the CLIP model {model!r}: it is neither a folder nor an open_clip model name (see "
            f"open_clip.list_models(), e.g. {DEFAULT_MODEL}; or hf-hub:ORG/NAME)"
        )
    if pretrained is None or Path(pretrained).is_file():
        return False
    tag = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise ModelLoadError(
            f"cannot load the CLIP weights {pretrained!r} for {model}: neither a file nor one of its "
            f"pretrained tags ({tags})"
        )
    return bool(tag.get("quick_gelu", False))


@lru_cache(maxsize=2)
def _load(source: str, pretrained: str | None, device: str) -> tuple[Any, Any, Any]:
    open_clip = _open_clip()
    quick_gelu = False
    if source.startswith(LOCAL_DIR):
        _check_folder(Path(source.removeprefix(LOCAL_DIR)))
    elif not source.startswith(HF_HUB):
        quick_gelu = _check_builtin(open_clip, source, pretrained)
    if not source.startswith(LOCAL_DIR):
        before_load(ModelRef(f"--clip {source}", "--clip", source, "open_clip", pretrained=pretrained))
    try:
        # The openai weights were trained with QuickGELU, which the plain configs (ViT-B-32) lack.
        net, _, preprocess = open_clip.create_model_and_transforms(
            source, pretrained=pretrained, device=device, force_quick_gelu=quick_gelu
        )
        tokenizer = open_clip.get_tokenizer(source)
    except Exception as exc:
        raise ModelLoadError.wrap("the CLIP model", source, exc) from exc
    return net.eval(), preprocess, tokenizer


class OpenClipScorer:
    """An open_clip model as an `ImageTextScorer`: normalised image and text embeddings, their dot product."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        pretrained: str | None = DEFAULT_PRETRAINED,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        # trust_remote_code is accepted so every backend takes the same options: open_clip runs no model code.
        require("torch")
        self.name = model
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        source = model_source(model)
        # a folder or hub repository carries its own weights; open_clip ignores `pretrained` for them
        self.pretrained = None if source.startswith((LOCAL_DIR, HF_HUB)) else pretrained or None
        self.model, self.preprocess, self.tokenizer = _load(source, self.pretrained, self.device)

    def score(self, images: list[Image.Image], texts: list[str]) -> list[float]:
        """Cosine similarity of each image with its paired text, in input order."""
        if len(images) != len(texts):
            raise ValueError(
                f"score needs one text per image, got {len(images)} images and {len(texts)} texts"
            )
        return in_batches(self._score_batch, list(zip(images, texts)), BATCH_SIZE)

    def _score_batch(self, pairs: list[tuple[Image.Image, str]]) -> list[float]:
        torch = require("torch")
        images = [image for image, _ in pairs]
        texts = [text for _, text in pairs]
        rgb = [img if img.mode == "RGB" else img.convert("RGB") for img in images]
        pixels = torch.stack([self.preprocess(img) for img in rgb]).to(self.device)
        tokens = self.tokenizer(texts).to(self.device)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            image_emb = self.model.encode_image(pixels).float()
            text_emb = self.model.encode_text(tokens).float()
        image_emb = torch.nn.functional.normalize(image_emb, dim=-1)
        text_emb = torch.nn.functional.normalize(text_emb, dim=-1)
        cosine = (image_emb * text_emb).sum(dim=-1).clamp(-1.0, 1.0)
        return [float(c) for c in cosine.cpu()]

    def provenance(self) -> dict[str, Any]:
        """Model, pretrained weights, dtype and the open_clip version."""
        return {
            "model": self.name,
            "pretrained": self.pretrained,
            "dtype": str(self.dtype).removeprefix("torch."),
            "open_clip": importlib.metadata.version("open_clip_torch"),
        }
