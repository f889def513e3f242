"""NSFW backends: NudeNet's shipped detector and a tiny local transformers classifier, through the registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vlcli.backends import available, create
from vlcli.backends.hf_classifier import NSFW_LABELS, nsfw_label_ids
from vlcli.backends.nudenet_backend import (
    COUNTED_CLASSES,
    MIN_CONFIDENCE,
    PAD_GREY,
    exposed_score,
    letterbox,
)
from vlcli.backends.protocols import NsfwScorer
from vlcli.errors import MissingDependencyError, ModelLoadError, UsageError


def scene(seed: int, size: tuple[int, int] = (400, 300)) -> Image.Image:
    """A plain outdoor scene: sky gradient, sun, ground, a house, light noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    sky = np.linspace([90, 150, 230], [200, 225, 250], h // 2).astype(np.uint8)
    ground = np.tile(np.array([60 + seed * 10 % 60, 140, 50], np.uint8), (h - h // 2, 1))
    rows = np.concatenate([sky, ground])
    pixels = np.repeat(rows[:, None, :], w, axis=1).astype(np.int16)
    pixels += rng.integers(-8, 9, pixels.shape, dtype=np.int16)
    img = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.ellipse((w * 0.75, h * 0.08, w * 0.9, h * 0.28), fill=(250, 220, 60))
    left = int(w * (0.2 + 0.1 * (seed % 3)))
    draw.rectangle((left, h * 0.35, left + w * 0.25, h * 0.65), fill=(170, 80, 60))
    draw.polygon(
        [(left - 10, h * 0.35), (left + w * 0.125, h * 0.2), (left + w * 0.25 + 10, h * 0.35)],
        fill=(90, 40, 30),
    )
    return img


@pytest.fixture(scope="module")
def scenes() -> list[Image.Image]:
    """Plain scenes of several sizes and modes (the backends take any PIL image)."""
    return [
        scene(0),
        scene(1, (640, 480)),
        scene(2, (200, 600)),
        scene(3, (1000, 12)),
        scene(4).convert("L"),
        scene(5, (33, 21)),
    ]


@pytest.fixture(scope="module")
def nudenet() -> Any:
    """The shipped NudeNet detector, loaded once for the module."""
    return create("nsfw", "nudenet")


# --- nudenet -------------------------------------------------------------------------------------------


def test_nudenet_scores_plain_scenes_low(nudenet: Any, scenes: list[Image.Image]) -> None:
    scores = nudenet.score(scenes)
    assert len(scores) == len(scenes)
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    assert max(scores) < 0.2  # nothing exposed in a house under the sun
    assert nudenet.score([]) == []


def test_nudenet_is_deterministic_and_batch_equals_one_by_one(
    nudenet: Any, scenes: list[Image.Image]
) -> None:
    everything = create("nsfw", "nudenet", classes=nudenet.labels, min_confidence=0.0)
    batch = everything.score(scenes)
    assert batch == everything.score(scenes)
    singles = [everything.score([img])[0] for img in scenes]
    np.testing.assert_allclose(batch, singles, atol=1e-6)
    # with every class counted and no cut, the detector's best box always scores above zero
    assert min(batch) > 0.0


def test_nudenet_takes_the_filter_steps_options(scenes: list[Image.Image]) -> None:
    scorer = create("nsfw", "nudenet", device="auto", dtype="auto", trust_remote_code=False)
    assert isinstance(scorer, NsfwScorer)
    assert scorer.score(scenes[:1]) == [0.0]
    prov = scorer.provenance()
    assert prov["classes"] == list(COUNTED_CLASSES)
    assert prov["min_confidence"] == MIN_CONFIDENCE
    assert prov["input_size"] == 320 and len(prov["model_sha256"]) == 64


def test_nudenet_rejects_unknown_classes() -> None:
    with pytest.raises(UsageError, match=r"unknown NudeNet classes \['NUDE'\].*FACE_FEMALE"):
        create("nsfw", "nudenet", classes=["NUDE"])


def test_nudenet_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        create("nsfw", "nudenet", model=str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="cannot load the NSFW detector"):
        create("nsfw", "nudenet", model=str(junk))


def test_nudenet_missing_packages_name_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nudenet" else real(name, *a)
    )
    with pytest.raises(MissingDependencyError, match="pip install nudenet"):
        create("nsfw", "nudenet")
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(MissingDependencyError, match="pip install onnxruntime"):
        create("nsfw", "nudenet")


def test_nudenet_cuda_without_provider_says_what_to_do() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(UsageError, match="onnxruntime-gpu"):
        create("nsfw", "nudenet", device="cuda")


def test_nudenet_never_imports_cv2() -> None:
    code = (
        "import sys; sys.modules['cv2'] = None\n"  # any `import cv2` now fails
        "from PIL import Image; from vlcli.backends import create\n"
        "print(create('nsfw', 'nudenet').score([Image.new('RGB', (64, 48), 'white')]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0.0]"


def test_letterbox_keeps_aspect_and_centres_on_grey() -> None:
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    pixels = letterbox(img, 32)
    assert pixels.shape == (3, 32, 32) and pixels.dtype == np.float32
    grey = PAD_GREY / 255
    np.testing.assert_allclose(pixels[:, :8, :], grey, atol=1e-6)  # 32x16 image centred: 8 rows above
    np.testing.assert_allclose(pixels[:, 24:, :], grey, atol=1e-6)
    np.testing.assert_allclose(
        pixels[:, 8:24, :].reshape(3, -1).mean(axis=1), [1, 0, 0], atol=1e-6
    )  # RGB order


def test_exposed_score_rule() -> None:
    counted = np.array([1])  # classes: 0 FACE_FEMALE, 1 BUTTOCKS_EXPOSED (counted), 2 BUTTOCKS_COVERED

    def out(*anchors: tuple[float, float, float]) -> np.ndarray:
        probs = np.array(anchors, np.float32).T  # [classes, anchors]
        return np.concatenate([np.zeros((4, len(anchors)), np.float32), probs])[None]

    # the best counted box wins, whatever else is in the image
    assert exposed_score(out((0.9, 0.1, 0), (0, 0.6, 0.1), (0, 0.4, 0)), counted, 0.2)[0] == pytest.approx(
        0.6
    )
    # a box counts only under its top class: an exposed runner-up to "covered" does not
    assert exposed_score(out((0, 0.5, 0.7)), counted, 0.2)[0] == 0.0
    # below the detection threshold it is no detection
    assert exposed_score(out((0, 0.19, 0)), counted, 0.2)[0] == 0.0
    # batched: one score per image
    both = np.concatenate([out((0, 0.3, 0)), out((0.8, 0, 0))])
    np.testing.assert_allclose(exposed_score(both, counted, 0.2), [0.3, 0.0])


# --- hf ------------------------------------------------------------------------------------------------


def tiny_classifier(folder: Path, labels: dict[int, str], problem_type: str | None = None) -> str:
    """A random 2-layer ViT image classifier with its processor, saved like a hub checkpoint."""
    from vlcli.testing.tiny_models import tiny_image_classifier

    assert list(labels) == list(range(len(labels)))
    return tiny_image_classifier(folder, tuple(labels.values()), problem_type=problem_type)


@pytest.fixture(scope="module")
def tiny_nsfw(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random classifier with labels normal / nsfw."""
    return tiny_classifier(tmp_path_factory.mktemp("tiny_nsfw"), {0: "normal", 1: "nsfw"})


def test_hf_equals_the_transformers_pipeline(tiny_nsfw: str, scenes: list[Image.Image]) -> None:
    import transformers

    scorer = create("nsfw", "hf", model=tiny_nsfw, device="cpu")
    assert isinstance(scorer, NsfwScorer)
    scores = scorer.score(scenes)
    pipe = transformers.pipeline("image-classification", model=tiny_nsfw, device="cpu")
    expected = [next(r["score"] for r in res if r["label"] == "nsfw") for res in pipe(scenes, top_k=None)]
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    singles = [scorer.score([img])[0] for img in scenes]
    np.testing.assert_allclose(scores, singles, atol=1e-5)
    assert scores == scorer.score(scenes)
    assert scorer.score([]) == []
    assert scorer.provenance()["nsfw_labels"] == ["nsfw"]


def test_hf_sums_several_nsfw_labels(tmp_path: Path, scenes: list[Image.Image]) -> None:
    import torch
    import transformers

    labels = {0: "drawings", 1: "Hentai", 2: "neutral", 3: "PORN", 4: "sexy"}
    path = tiny_classifier(tmp_path / "five", labels)
    scores = create("nsfw", "hf", model=path, device="cpu").score(scenes[:3])
    processor = transformers.AutoImageProcessor.from_pretrained(path)
    net = transformers.AutoModelForImageClassification.from_pretrained(path).eval()
    with torch.no_grad():
        probs = net(**processor(images=scenes[:3], return_tensors="pt")).logits.softmax(-1)
    np.testing.assert_allclose(scores, probs[:, [1, 3, 4]].sum(-1).numpy(), atol=1e-5)


def test_nsfw_label_rules() -> None:
    assert nsfw_label_ids({0: "SFW", 1: "NSFW"}) == [1]
    assert nsfw_label_ids({0: "unsafe", 1: "safe"}) == [0]
    assert nsfw_label_ids({0: "LABEL_0", 1: "LABEL_1"}, labels=["label_1"]) == [1]
    assert {"nsfw", "porn", "sexy", "hentai", "explicit", "unsafe"} == NSFW_LABELS
    with pytest.raises(UsageError, match=r"no NSFW label \(its labels: normal, safe\).*`labels` option"):
        nsfw_label_ids({0: "normal", 1: "safe"})
    with pytest.raises(UsageError, match=r"no label racy \(its labels: normal, nsfw\)"):
        nsfw_label_ids({0: "normal", 1: "nsfw"}, labels=["nsfw", "racy"])


def test_hf_model_without_nsfw_label_fails_listing_labels(tmp_path: Path) -> None:
    path = tiny_classifier(tmp_path / "cats", {0: "cat", 1: "dog"})
    with pytest.raises(UsageError, match=r"its labels: cat, dog"):
        create("nsfw", "hf", model=path, device="cpu")
    assert create("nsfw", "hf", model=path, device="cpu", labels=["dog"]).labels == ["dog"]


def test_hf_multi_label_model_is_refused(tmp_path: Path) -> None:
    path = tiny_classifier(tmp_path / "multi", {0: "normal", 1: "nsfw"}, "multi_label_classification")
    with pytest.raises(UsageError, match="not a single-label classifier"):
        create("nsfw", "hf", model=path, device="cpu")


@pytest.mark.parametrize("model", ["nobody/no-such-nsfw-model", "/no/such/folder"])
def test_hf_missing_model_is_a_clear_error(model: str) -> None:
    with pytest.raises(ModelLoadError, match=f"cannot load .*{model}.*offline"):
        create("nsfw", "hf", model=model, device="cpu")


def test_registry_lists_both_backends() -> None:
    assert {"hf", "nudenet"} <= set(available("nsfw"))
    with pytest.raises(UsageError, match=r"unknown nsfw backend 'nope' .*hf.*nudenet"):
        create("nsfw", "nope")
