"""Image captions from BLIP and BLIP-2 checkpoints through transformers: batched, greedy by default."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from PIL import Image

from vlcli.backends.base import require, resolve_device, resolve_dtype
from vlcli.backends.hf import Checkpoint, in_batches
from vlcli.errors import UsageError

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "Salesforce/blip-image-captioning-base"
BATCH_SIZE = 32  # images per generate call: bounds memory, not results
MODEL_CLASSES = {"blip": "BlipForConditionalGeneration", "blip-2": "Blip2ForConditionalGeneration"}


def model_class_name(model: str, model_type: str) -> str:
    """The transformers class that captions with a checkpoint whose config has this `model_type`."""
    try:
        return MODEL_CLASSES[model_type]
    except KeyError:
        raise UsageError(
            f"{model!r} is a {model_type!r} model; the transformers captioner takes BLIP or BLIP-2 "
            f"checkpoints (model_type {' or '.join(MODEL_CLASSES)}), e.g. {DEFAULT_MODEL}"
        ) from None


@lru_cache(maxsize=2)
def _load(
    model: str, revision: str | None, trust_remote_code: bool, device: str, dtype: torch.dtype
) -> tuple[Any, Any]:
    checkpoint = Checkpoint(model, revision, trust_remote_code, "--captioner")
    config = checkpoint.load("AutoConfig", "the config of")
    model_class = model_class_name(model, config.model_type)
    processor = checkpoint.load("AutoProcessor", "the processor of")
    # Loaded in the target dtype rather than autocast: BLIP-2 holds 3.9B parameters, 15 GB in fp32.
    net = checkpoint.load(model_class, "the captioning model", dtype=dtype)
    return processor, net.to(device).eval()


class TransformersCaptioner:
    """BLIP (`BlipForConditionalGeneration`) or BLIP-2 (`Blip2ForConditionalGeneration`) as a `Captioner`.

    With a `prompt`, BLIP continues the prompt and BLIP-2 answers it; either way the caption is only the
    text the model adds after the prompt.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_new_tokens: int = 30,
        num_beams: int = 1,
        prompt: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        require("torch")
        if max_new_tokens < 1:
            raise UsageError(f"the captioner's max_new_tokens must be at least 1, not {max_new_tokens}")
        if num_beams < 1:
            raise UsageError(f"the captioner's num_beams must be at least 1, not {num_beams}")
        self.name = model
        self.revision = revision
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self.prompt = prompt or None
        self.processor, self.model = _load(model, revision, trust_remote_code, self.device, self.dtype)
        self.model_type = str(self.model.config.model_type)
        self._prompt_text = self._decoded_prompt()
        self._commit = getattr(self.model.config, "_commit_hash", None)

    def _decoded_prompt(self) -> str:
        # The prompt as it comes back out of the tokenizer (BLIP's lowercases it), to strip it from captions.
        if self.prompt is None:
            return ""
        tokenizer = self.processor.tokenizer
        ids = tokenizer(self.prompt, add_special_tokens=False)["input_ids"]
        return str(tokenizer.decode(ids, skip_special_tokens=True)).strip()

    def caption(self, images: list[Image.Image]) -> list[str]:
        """One caption per image (greedy decoding unless num_beams > 1), in input order."""
        return in_batches(self._caption_batch, images, BATCH_SIZE)

    def _caption_batch(self, images: list[Image.Image]) -> list[str]:
        torch = require("torch")
        rgb = [img if img.mode == "RGB" else img.convert("RGB") for img in images]
        text = [self.prompt] * len(rgb) if self.prompt else None
        inputs = self.processor(images=rgb, text=text, return_tensors="pt")
        inputs = inputs.to(device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            ids = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams, do_sample=False
            )
        texts = self.processor.batch_decode(ids, skip_special_tokens=True)
        return [self._strip_prompt(str(t).strip()) for t in texts]

    def _strip_prompt(self, text: str) -> str:
        if self._prompt_text and text.startswith(self._prompt_text):
            return text[len(self._prompt_text) :].strip()
        return text

    def provenance(self) -> dict[str, Any]:
        """Model, revision, dtype and the generation settings."""
        return {
            "model": self.name,
            "revision": self.revision or self._commit,
            "model_type": self.model_type,
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
            "prompt": self.prompt,
        }
