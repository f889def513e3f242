"""The open_clip image-text scorer on a tiny random model, built through the registry."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vlcli.backends import available, create
from vlcli.backends.clip import _check_builtin, model_source
from vlcli.backends.protocols import ImageTextScorer
from vlcli.errors import ModelLoadError

open_clip = pytest.importorskip("open_clip")

TEXTS = ["a dog on a beach", "", "a red square " * 40, "two cats", "a street at night", "text on a wall"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread: OpenMP hand-offs cost more than their work on a busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    """Distinct noise images of several sizes and modes, one per text in TEXTS."""
    rng = np.random.default_rng(0)
    sizes = [(64, 48), (300, 200), (20, 90), (64, 64), (40, 40), (500, 3)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    images[3] = images[3].convert("L")
    images[4] = images[4].convert("RGBA")
    return images


@pytest.fixture(scope="module")
def scorer(tiny_clip: str) -> Any:
    """The tiny model as users load a checkpoint folder."""
    return create("clip", "open_clip", model=tiny_clip, device="cpu")


def test_scores_are_cosines_of_the_normalised_embeddings(
    scorer: Any, tiny_clip: str, pictures: list[Image.Image]
) -> None:
    import torch

    assert "open_clip" in available("clip")
    assert isinstance(scorer, ImageTextScorer)
    scores = scorer.score(pictures, TEXTS)
    assert len(scores) == len(pictures)
    assert all(isinstance(s, float) and -1.0 <= s <= 1.0 for s in scores)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny_clip}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tiny_clip}")
    with torch.no_grad():
        pixels = torch.stack([preprocess(img.convert("RGB")) for img in pictures])
        image = model.eval().encode_image(pixels)
        text = model.encode_text(tokenizer(TEXTS))
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    np.testing.assert_allclose(scores, (image * text).sum(-1).numpy(), atol=1e-5)


def test_batch_equals_one_by_one(scorer: Any, pictures: list[Image.Image]) -> None:
    batch = scorer.score(pictures, TEXTS)
    assert scorer.score(pictures, TEXTS) == batch
    singles = [scorer.score([img], [text])[0] for img, text in zip(pictures, TEXTS)]
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    assert scorer.score([], []) == []
    with pytest.raises(ValueError, match="one text per image"):
        scorer.score(pictures, TEXTS[:2])


def test_provenance_and_bf16(scorer: Any, tiny_clip: str, pictures: list[Image.Image]) -> None:
    assert scorer.provenance() == {
        "model": tiny_clip,
        "pretrained": None,
        "dtype": "float32",
        "open_clip": open_clip.__version__,
    }
    half = create("clip", "open_clip", model=tiny_clip, dtype="bf16")
    np.testing.assert_allclose(half.score(pictures, TEXTS), scorer.score(pictures, TEXTS), atol=0.05)


def test_registered_config_with_a_checkpoint_file_or_random_weights(
    tmp_path: Path, tiny_clip: str, scorer: Any, pictures: list[Image.Image]
) -> None:
    config = json.loads((Path(tiny_clip) / "open_clip_config.json").read_text())["model_cfg"]
    (tmp_path / "vl-test-tiny.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "vl-test-tiny.json")
    weights = str(Path(tiny_clip) / "open_clip_model.safetensors")
    from_file = create("clip", "open_clip", model="vl-test-tiny", pretrained=weights)
    assert from_file.score(pictures, TEXTS) == scorer.score(pictures, TEXTS)
    assert from_file.provenance()["pretrained"] == weights
    random = create("clip", "open_clip", model="vl-test-tiny", pretrained=None)
    assert all(-1.0 <= s <= 1.0 for s in random.score(pictures, TEXTS))


def test_openai_weights_get_quick_gelu() -> None:
    assert _check_builtin(open_clip, "ViT-B-32", "openai") is True
    assert _check_builtin(open_clip, "ViT-B/32", "laion2b_s34b_b79k") is False
    assert _check_builtin(open_clip, "ViT-B-32", None) is False


def test_missing_models_are_clear_errors(tmp_path: Path, tiny_clip: str) -> None:
    assert model_source(tiny_clip) == f"local-dir:{tiny_clip}"
    assert model_source("ViT-B-32") == "ViT-B-32"
    with pytest.raises(ModelLoadError, match="neither a folder nor an open_clip model name"):
        create("clip", "open_clip", model=str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="no such folder"):
        create("clip", "open_clip", model=f"local-dir:{tmp_path / 'missing'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=r"no open_clip_config\.json"):
        create("clip", "open_clip", model=str(empty))
    shutil.copy(Path(tiny_clip) / "open_clip_config.json", empty)
    with pytest.raises(ModelLoadError, match="holds no weights file"):
        create("clip", "open_clip", model=str(empty))
    with pytest.raises(ModelLoadError, match=r"neither a file nor one of its pretrained tags.*openai"):
        create("clip", "open_clip", pretrained="no-such-tag")
    with pytest.raises(ModelLoadError, match=r"cannot load 'ViT-B-32'.*not in the local cache"):
        create("clip", "open_clip")  # the default weights: not downloadable in this offline test


def test_plans_know_where_the_default_weights_live_without_importing_open_clip() -> None:
    from vlcli.hub import OPEN_CLIP_DEFAULTS

    for (name, tag), repo in OPEN_CLIP_DEFAULTS.items():
        assert open_clip.get_pretrained_cfg(name, tag)["hf_hub"] == repo
