"""NSFW scores from any transformers image-classification model: the softmax mass of its NSFW label(s)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from PIL import Image

from vlcli.backends.base import autocast, require, resolve_device, resolve_dtype
from vlcli.backends.hf import Checkpoint, in_batches
from vlcli.errors import UsageError

DEFAULT_MODEL = "AdamCodd/vit-base-nsfw-detector"
NSFW_LABELS = frozenset({"nsfw", "porn", "sexy", "hentai", "explicit", "unsafe"})
BATCH_SIZE = 64  # images per forward pass: bounds memory, not results


def nsfw_label_ids(id2label: Mapping[int, str], labels: Sequence[str] | None = None) -> list[int]:
    """Indices of the NSFW labels: those named in `labels` (any case), else those in `NSFW_LABELS`."""
    wanted = {name.lower() for name in labels} if labels else set(NSFW_LABELS)
    ids = sorted(int(i) for i, name in id2label.items() if str(name).lower() in wanted)
    found = {str(id2label[i]).lower() for i in ids}
    have = ", ".join(str(id2label[i]) for i in sorted(id2label))
    if labels and found != wanted:
        missing = sorted(wanted - found)
        raise UsageError(f"the model has no label {', '.join(missing)} (its labels: {have})")
    if not ids:
        raise UsageError(
            f"the model has no NSFW label (its labels: {have}); use a model with a label named one of "
            f"{', '.join(sorted(NSFW_LABELS))}, or name its NSFW label(s) with the hf backend's `labels` option"
        )
    return ids


@lru_cache(maxsize=2)
def _load(model: str, revision: str | None, trust_remote_code: bool, device: str) -> tuple[Any, Any]:
    checkpoint = Checkpoint(model, revision, trust_remote_code, "--nsfw-model")
    processor = checkpoint.load("AutoImageProcessor", "the image processor of")
    net = checkpoint.load("AutoModelForImageClassification", "the image classifier")
    return processor, net.to(device).eval()


class HFNsfwClassifier:
    """`AutoModelForImageClassification` as an `NsfwScorer`: softmax over the logits, summed over NSFW labels."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        labels: Sequence[str] | None = None,
    ) -> None:
        require("torch")
        self.name = model
        self.revision = revision
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.processor, self.model = _load(model, revision, trust_remote_code, self.device)
        config = self.model.config
        if config.problem_type == "multi_label_classification" or config.num_labels < 2:
            raise UsageError(
                f"{model!r} is not a single-label classifier with at least two labels: its scores are not a "
                "softmax, so P(nsfw) is undefined here"
            )
        self.label_ids = nsfw_label_ids(config.id2label, labels)
        self.labels = [str(config.id2label[i]) for i in self.label_ids]
        self._commit = getattr(config, "_commit_hash", None)

    def score(self, images: list[Image.Image]) -> list[float]:
        """P(nsfw) of each image: softmax over the logits, summed over the NSFW labels."""
        return in_batches(self._score_batch, images, BATCH_SIZE)

    def _score_batch(self, images: list[Image.Image]) -> list[float]:
        torch = require("torch")
        rgb = [img if img.mode == "RGB" else img.convert("RGB") for img in images]
        inputs = self.processor(images=rgb, return_tensors="pt").to(self.device)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            logits = self.model(**inputs).logits
        probs = logits.float().softmax(dim=-1)[:, self.label_ids].sum(dim=-1)
        return [float(p) for p in probs.clamp(0.0, 1.0).cpu()]

    def provenance(self) -> dict[str, Any]:
        """Model, revision, dtype and the labels counted as NSFW."""
        return {
            "model": self.name,
            "revision": self.revision or self._commit,
            "dtype": str(self.dtype).removeprefix("torch."),
            "nsfw_labels": self.labels,
        }
