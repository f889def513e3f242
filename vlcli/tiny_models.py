"""Tiny random-weight models built offline from configs: for the demo, the offline preset and tests.

Their outputs are not meaningful; they exist so the whole pipeline runs with no model hub. Each builder
writes a folder laid out like a hub checkpoint, loaded through the same code path as real model names.
"""

from __future__ import annotations

import os
from pathlib import Path

from vlcli.backends.base import require

BANNER = (
    "offline models: tiny random-weight stand-ins are used, so crops, scores and other model outputs are "
    "NOT meaningful; use the real models (the default outside `vl demo`) for real data"
)


def tiny_dinov2(folder: str | os.PathLike[str], image_size: int = 56, seed: int = 0) -> str:
    """A 2-layer random DINOv2 with its image processor in `folder` (reused if already there)."""
    path = Path(folder)
    if (path / "config.json").exists() and (path / "preprocessor_config.json").exists():
        return str(path)
    torch = require("torch", "models")
    transformers = require("transformers", "models")
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = transformers.Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=image_size,
        patch_size=14,
    )
    processor = transformers.BitImageProcessor(
        size={"shortest_edge": image_size + image_size // 7},
        crop_size={"height": image_size, "width": image_size},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    path.mkdir(parents=True, exist_ok=True)
    transformers.Dinov2Model(config).save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def tiny_image_classifier(
    folder: str | os.PathLike[str], labels: tuple[str, ...] = ("normal", "nsfw"), seed: int = 0
) -> str:
    """A 2-layer random ViT image classifier with `labels` and its processor in `folder`."""
    path = Path(folder)
    if (path / "config.json").exists() and (path / "preprocessor_config.json").exists():
        return str(path)
    torch = require("torch", "models")
    transformers = require("transformers", "models")
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    path.mkdir(parents=True, exist_ok=True)
    transformers.ViTForImageClassification(config).save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)
