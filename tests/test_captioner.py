"""The transformers captioner on tiny random BLIP and BLIP-2 checkpoints, built through the registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vlcli.backends import available, create
from vlcli.backends.protocols import Captioner
from vlcli.errors import ModelLoadError, UsageError

pytest.importorskip("transformers")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread: OpenMP hand-offs cost more than their work on a busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def picture(seed: int, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """Noise under a few coloured rectangles: every seed gives a clearly different image."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = int(rng.integers(size[0])), int(rng.integers(size[1]))
        draw.rectangle((x0, y0, x0 + size[0] // 3, y0 + size[1] // 3), fill=tuple(rng.integers(256, size=3)))
    return img.convert(mode)


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    """Distinct images of several sizes and modes (the captioner takes any PIL image)."""
    return [
        picture(0),
        picture(1, (300, 200)),
        picture(2, (20, 90)),
        picture(3, mode="L"),
        picture(4, mode="RGBA"),
        picture(5, (500, 3)),
    ]


@pytest.fixture(scope="module")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer random BLIP-2 checkpoint folder."""
    from vlcli.testing.tiny_models import tiny_blip2 as build

    return build(tmp_path_factory.mktemp("tiny-blip2"))


def test_blip_captions_are_deterministic_strings_and_batch_equals_one_by_one(
    tiny_blip: str, pictures: list[Image.Image]
) -> None:
    assert "transformers" in available("captioner")
    captioner = create("captioner", "transformers", model=tiny_blip, device="cpu", max_new_tokens=8)
    assert isinstance(captioner, Captioner)
    captions = captioner.caption(pictures)
    assert len(captions) == len(pictures) and all(isinstance(c, str) and c for c in captions)
    assert len(set(captions)) > 1  # the images steer the decoder, so a mixed-up order would show
    assert captioner.caption(pictures) == captions
    assert [captioner.caption([img])[0] for img in pictures] == captions
    assert captioner.caption([]) == []


def test_blip_prompt_is_continued_and_left_out_of_the_caption(
    tiny_blip: str, pictures: list[Image.Image]
) -> None:
    import transformers

    captioner = create("captioner", "transformers", model=tiny_blip, prompt="A photo of", max_new_tokens=6)
    captions = captioner.caption(pictures[:3])
    processor = transformers.AutoProcessor.from_pretrained(tiny_blip)
    model = transformers.BlipForConditionalGeneration.from_pretrained(tiny_blip).eval()
    inputs = processor(images=pictures[:3], text=["A photo of"] * 3, return_tensors="pt")
    full = processor.batch_decode(model.generate(**inputs, max_new_tokens=6), skip_special_tokens=True)
    assert all(text.startswith("a photo of") for text in full)  # the tokenizer is uncased
    assert captions == [text.removeprefix("a photo of").strip() for text in full]
    assert captioner.provenance()["prompt"] == "A photo of"


def test_blip_options_and_provenance(tiny_blip: str, pictures: list[Image.Image]) -> None:
    beams = create("captioner", "transformers", model=tiny_blip, num_beams=2, max_new_tokens=5)
    assert beams.caption(pictures[:2]) == beams.caption(pictures[:2])
    half = create("captioner", "transformers", model=tiny_blip, dtype="bf16", max_new_tokens=5)
    assert all(isinstance(c, str) for c in half.caption(pictures[:2]))
    prov = half.provenance()
    assert prov == {
        "model": tiny_blip,
        "revision": None,
        "model_type": "blip",
        "dtype": "bfloat16",
        "max_new_tokens": 5,
        "num_beams": 1,
        "prompt": None,
    }
    with pytest.raises(UsageError, match="max_new_tokens must be at least 1"):
        create("captioner", "transformers", model=tiny_blip, max_new_tokens=0)


def test_blip2_checkpoints_get_the_blip2_class(tiny_blip2: str, pictures: list[Image.Image]) -> None:
    import transformers

    captioner = create("captioner", "transformers", model=tiny_blip2, max_new_tokens=5)
    assert isinstance(captioner.model, transformers.Blip2ForConditionalGeneration)
    assert captioner.provenance()["model_type"] == "blip-2"
    captions = captioner.caption(pictures[:4])
    assert len(captions) == 4 and all(isinstance(c, str) for c in captions)
    assert [captioner.caption([img])[0] for img in pictures[:4]] == captions
    prompted = create("captioner", "transformers", model=tiny_blip2, prompt="a photo of", max_new_tokens=5)
    assert not any(c.startswith("a photo of") for c in prompted.caption(pictures[:2]))


def test_missing_or_wrong_models_are_clear_errors(tmp_path: Path, tiny_dinov2: str) -> None:
    with pytest.raises(
        ModelLoadError, match=r"cannot load 'Salesforce/blip-image-captioning-base'.*not in the local cache"
    ):
        create("captioner", "transformers")  # the default: not in this offline test's cache
    with pytest.raises(ModelLoadError, match="cannot load the config of"):
        create("captioner", "transformers", model=str(tmp_path / "missing"))
    with pytest.raises(
        UsageError, match="is a 'dinov2' model; the transformers captioner takes BLIP or BLIP-2"
    ):
        create("captioner", "transformers", model=tiny_dinov2)
