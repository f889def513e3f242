"""OCR backends: the real PP-OCRv6 models shipped in the rapidocr wheel on rendered text; paddleocr's adapter."""

from __future__ import annotations

import random
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vlcli.backends import available, create, ocr
from vlcli.backends.ocr import (
    MIN_SCORE,
    PaddleOcrReader,
    TextBox,
    choose_provider,
    quad_bounds,
    shipped_models,
)
from vlcli.backends.protocols import TextReader
from vlcli.errors import MissingDependencyError, ModelLoadError, UsageError

VOCABULARY = (
    "apple river stone market paper light window garden yellow bridge summer winter number coffee "
    "street orange silver planet ticket forest museum letter doctor office rocket purple travel school "
    "camera pocket island signal castle dinner 2024 42 315 7.5"
)
WORDS = VOCABULARY.split()

Lines = list[tuple[str, tuple[int, int, int, int]]]  # each rendered line and its pixel bounds


def document(seed: int, size: tuple[int, int] = (640, 480)) -> tuple[Image.Image, Lines]:
    """Black lines of random words in several font sizes on white, like a scanned page."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    lines: Lines = []
    y = 20
    while True:
        font = ImageFont.load_default(size=rng.choice([14, 16, 18, 22, 26]))
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        x = rng.randint(10, 60)
        x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
        if y1 > size[1] - 10:
            return img, lines
        if x1 < size[0] - 10:
            draw.text((x, y), text, fill="black", font=font)
            lines.append((text, (x0, y0, x1, y1)))
        y += int((y1 - y0) * rng.uniform(1.8, 2.8)) + 4


def scene(seed: int, size: tuple[int, int] = (640, 480)) -> tuple[Image.Image, Lines]:
    """A photo-like picture: noisy gradient, coloured blobs, a few signs and white captions outlined in black."""
    rng = random.Random(seed)
    w, h = size
    top = np.array([rng.randrange(60, 200) for _ in range(3)])
    bottom = np.array([rng.randrange(20, 160) for _ in range(3)])
    pixels = np.linspace(top, bottom, h)[:, None, :].repeat(w, axis=1)
    pixels += np.random.default_rng(seed).normal(0, 12, pixels.shape)
    img = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.randrange(w), rng.randrange(h)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x, y, x + rng.randrange(20, 150), y + rng.randrange(20, 150)), fill=colour)
    lines: Lines = []
    for _ in range(rng.randint(1, 4)):
        size_px = rng.choice([18, 22, 28, 36])
        font = ImageFont.load_default(size=size_px)
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
        x = rng.randrange(10, max(11, int(w - draw.textlength(text, font=font) - 10)))
        y = rng.randrange(10, h - size_px - 10)
        box = draw.textbbox((x, y), text, font=font)
        if rng.random() < 0.5:  # a sign: dark text on a light panel
            draw.rectangle((box[0] - 6, box[1] - 6, box[2] + 6, box[3] + 6), fill=(250, 250, 240))
            draw.text((x, y), text, fill=(20, 20, 20), font=font)
        else:  # a caption: white text with a black outline, straight on the picture
            draw.text((x, y), text, fill="white", font=font, stroke_width=2, stroke_fill="black")
        lines.append((text, box))
    return img, lines


def word_recall(lines: Lines, found: list[TextBox]) -> float:
    """Share of the rendered words read back (case-insensitive, each found word used once)."""
    truth = [word.lower() for text, _ in lines for word in text.split()]
    pool = [word.lower() for box in found for word in box.text.split()]
    hits = 0
    for word in truth:
        if word in pool:
            pool.remove(word)
            hits += 1
    return hits / max(1, len(truth))


def area(box: tuple[int, int, int, int]) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def assert_well_formed(found: list[TextBox], size: tuple[int, int], min_score: float = MIN_SCORE) -> None:
    w, h = size
    for tb in found:
        left, top, right, bottom = tb.box
        assert all(isinstance(v, int) for v in tb.box)
        assert 0 <= left <= right <= w and 0 <= top <= bottom <= h
        assert isinstance(tb.text, str) and tb.text.strip()
        assert isinstance(tb.score, float) and min_score <= tb.score <= 1.0


@pytest.fixture(scope="module")
def reader() -> Any:
    """The default OCR backend with two workers (exercises the thread pool), loaded once."""
    return create("ocr", "rapidocr", workers=2)


@pytest.fixture(scope="module")
def samples() -> dict[str, list[tuple[Image.Image, Lines]]]:
    return {"document": [document(i) for i in range(4)], "scene": [scene(i) for i in range(6)]}


@pytest.fixture(scope="module")
def results(
    reader: Any, samples: dict[str, list[tuple[Image.Image, Lines]]]
) -> dict[str, list[list[TextBox]]]:
    """Each sample set read in one batch."""
    return {kind: reader.read([img for img, _ in items]) for kind, items in samples.items()}


# --- rapidocr on rendered text ---------------------------------------------------------------------------


def test_rapidocr_is_a_registered_text_reader(reader: Any) -> None:
    assert {"rapidocr", "paddleocr"} <= set(available("ocr"))
    assert isinstance(reader, TextReader)
    assert reader.name == "rapidocr" and reader.read([]) == []


@pytest.mark.parametrize(("kind", "floor"), [("document", 0.95), ("scene", 0.85)])
def test_rapidocr_reads_rendered_words(
    kind: str,
    floor: float,
    samples: dict[str, list[tuple[Image.Image, Lines]]],
    results: dict[str, list[list[TextBox]]],
) -> None:
    # Measured: 1.00 on documents, 0.95 on scenes; the misses are two small words read as one.
    recalls = [word_recall(lines, found) for (_, lines), found in zip(samples[kind], results[kind])]
    assert np.mean(recalls) >= floor, recalls
    for (img, _), found in zip(samples[kind], results[kind]):
        assert_well_formed(found, img.size)


def test_rapidocr_boxes_are_where_the_lines_are(
    samples: dict[str, list[tuple[Image.Image, Lines]]], results: dict[str, list[list[TextBox]]]
) -> None:
    for (_, lines), found in zip(samples["document"], results["document"]):
        assert len(found) == len(lines)
        for (text, box), tb in zip(lines, found):  # one box per line, in reading order
            assert tb.text == text
            # the detector pads its boxes around the glyphs (PP-OCR's unclip ratio), by a few pixels
            assert overlap(box, tb.box) >= 0.9 * area(box), (text, box, tb.box)
            assert area(tb.box) <= 3 * area(box), (text, box, tb.box)


def test_rapidocr_finds_nothing_in_empty_images(reader: Any) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    blank = [
        Image.new("RGB", (640, 480), "white"),
        Image.new("RGB", (64, 64), "black"),
        Image.fromarray(noise),
    ]
    assert reader.read(blank) == [[], [], []]


def test_rapidocr_batch_equals_one_by_one(
    reader: Any, samples: dict[str, list[tuple[Image.Image, Lines]]]
) -> None:
    images = [img for img, _ in samples["document"][:2] + samples["scene"][:3]]
    assert reader.read(images) == [reader.read([img])[0] for img in images]


def test_rapidocr_takes_any_size_and_mode(
    reader: Any, samples: dict[str, list[tuple[Image.Image, Lines]]]
) -> None:
    doc, lines = samples["document"][0]
    odd = [
        doc.convert("L"),
        doc.convert("RGBA"),
        doc.convert("P"),
        Image.new("RGB", (1, 1), "white"),
        doc.crop((0, 0, 640, 40)),  # a strip much wider than tall
        doc.resize((160, 120)),
    ]
    found = reader.read(odd)
    for img, boxes in zip(odd, found):
        assert_well_formed(boxes, img.size)
    assert word_recall(lines, found[0]) >= 0.95 and word_recall(lines, found[1]) >= 0.95
    assert found[3] == []


def test_rapidocr_provenance_and_options(samples: dict[str, list[tuple[Image.Image, Lines]]]) -> None:
    strict = create(
        "ocr", "rapidocr", device="cpu", dtype="auto", workers=1, min_score=0.999, orientation=False
    )
    prov = strict.provenance()
    assert (
        prov["models"]["det"] == "PP-OCRv6_det_small.onnx"
        and prov["models"]["rec"] == "PP-OCRv6_rec_small.onnx"
    )
    assert all(len(h) == 64 for h in prov["models_sha256"].values())
    assert prov["min_score"] == 0.999 and prov["orientation"] is False and prov["det_side"] == 960
    assert prov["provider"] == "cpu" and prov["rapidocr_version"]
    img = samples["document"][0][0]
    assert_well_formed(strict.read([img])[0], img.size, min_score=0.999)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_score": 1.5}, "min_score"),
        ({"det_side": 8}, "det_side"),
        ({"workers": -1}, "workers"),
        ({"dtype": "int4"}, "--dtype"),
        ({"device": "tpu"}, "--device"),
    ],
)
def test_rapidocr_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        create("ocr", "rapidocr", **options)


def test_rapidocr_cuda_without_provider_says_what_to_do() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(UsageError, match="onnxruntime-gpu"):
        create("ocr", "rapidocr", device="cuda")


def test_rapidocr_loads_models_from_a_folder(
    tmp_path: Path, samples: dict[str, list[tuple[Image.Image, Lines]]]
) -> None:
    models = tmp_path / "my-ocr"
    models.mkdir()
    for role in ("det", "rec"):
        (models / f"{role}.onnx").symlink_to(shipped_models()[role])
    custom = create("ocr", "rapidocr", model=str(models), workers=1)
    assert custom.name == "rapidocr:my-ocr"
    assert custom.provenance()["models"] == {
        "det": "det.onnx",
        "rec": "rec.onnx",
        "cls": shipped_models()["cls"].split("/")[-1],
    }
    img, lines = samples["document"][1]
    assert word_recall(lines, custom.read([img])[0]) >= 0.95


def test_rapidocr_bad_model_folders_are_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a folder"):
        create("ocr", "rapidocr", model=str(tmp_path / "missing"))
    (tmp_path / "det.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match=r"no \*rec\*\.onnx"):
        create("ocr", "rapidocr", model=str(tmp_path))
    (tmp_path / "rec.onnx").write_bytes(b"not a model either")
    with pytest.raises(ModelLoadError, match="cannot load the OCR models"):
        create("ocr", "rapidocr", model=str(tmp_path))
    (tmp_path / "rec_v2.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="several rec models"):
        create("ocr", "rapidocr", model=str(tmp_path))


def test_rapidocr_missing_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rapidocr", None)  # makes `import rapidocr` fail
    with pytest.raises(MissingDependencyError, match="pip install rapidocr"):
        create("ocr", "rapidocr")


def test_quad_bounds_are_integer_and_clipped() -> None:
    assert quad_bounds([[10.2, 5.7], [50.9, 6.1], [50.5, 20.2], [10.0, 19.9]], (640, 480)) == (10, 5, 51, 21)
    assert quad_bounds(np.array([[-3, -2], [700, -2], [700, 500], [-3, 500]]), (640, 480)) == (0, 0, 640, 480)
    assert quad_bounds([[700, 10], [720, 10], [720, 20], [700, 20]], (640, 480)) == (640, 10, 640, 20)


# --- paddleocr: only its adapter and error paths (its models need a download) -----------------------------


def fake_paddleocr(monkeypatch: pytest.MonkeyPatch, pipeline: Any) -> None:
    module = types.ModuleType("paddleocr")
    module.PaddleOCR = pipeline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "paddleocr", module)


def test_paddleocr_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paddleocr", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'vlcli\[paddleocr\]'"):
        create("ocr", "paddleocr")


def test_paddleocr_that_cannot_load_its_models_is_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(**kwargs: Any) -> Any:
        raise ConnectionError("No model hoster is available")

    fake_paddleocr(monkeypatch, offline)
    with pytest.raises(ModelLoadError, match="PaddleOCR models 'PP-OCRv5_mobile': No model hoster"):
        create("ocr", "paddleocr")
    with pytest.raises(UsageError, match="Metal"):
        create("ocr", "paddleocr", device="mps")


def test_paddleocr_results_become_text_boxes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    class Pipeline:
        def __init__(self, **kwargs: Any) -> None:
            calls.append(kwargs)

        def predict(self, arrays: list[np.ndarray]) -> list[dict[str, Any]]:
            assert all(a.ndim == 3 and a.flags.c_contiguous for a in arrays)
            assert tuple(arrays[0][0, 0]) == (0, 0, 255)  # BGR: the red pixel's red is last
            quad = np.array([[12, 8], [90, 9], [90, 30], [12, 29]], np.int16)
            off_image = np.array([[-5, 400], [700, 400], [700, 500], [-5, 500]], np.int16)
            return [
                {
                    "rec_polys": [quad, off_image, quad],
                    "rec_texts": ["hello", "edge", " "],
                    "rec_scores": [0.9, 0.8, 0.7],
                },
                {"rec_polys": [], "rec_texts": [], "rec_scores": []},
            ]

    fake_paddleocr(monkeypatch, Pipeline)
    paddle = create("ocr", "paddleocr", model="PP-OCRv5_server", device="cuda:1", min_score=0.6)
    assert isinstance(paddle, PaddleOcrReader) and isinstance(paddle, TextReader)
    assert calls[0]["text_detection_model_name"] == "PP-OCRv5_server_det"
    assert calls[0]["text_recognition_model_name"] == "PP-OCRv5_server_rec"
    assert calls[0]["device"] == "gpu:1" and calls[0]["text_rec_score_thresh"] == 0.6
    red = Image.new("RGB", (640, 480), (255, 0, 0))
    assert paddle.read([red, red.convert("L")]) == [
        [TextBox((12, 8, 90, 30), "hello", 0.9), TextBox((0, 400, 640, 480), "edge", 0.8)],
        [],
    ]
    assert paddle.read([]) == []
    assert paddle.provenance()["model"] == "paddleocr:PP-OCRv5_server"


# --- which engine: GPU when there is one, else the CPU with a notice ----------------------------------

CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("device", "providers", "gpu", "cuda", "notice"),
    [
        ("auto", WITH_CUDA, True, True, None),
        ("auto", WITH_CUDA, False, True, None),
        ("auto", CPU_ONLY, True, False, "no CUDA provider"),
        ("auto", CPU_ONLY, False, False, None),  # no GPU: the CPU is no fallback, nothing to say
        ("cpu", WITH_CUDA, True, False, None),
        ("cuda", WITH_CUDA, True, True, None),
        ("cuda:1", WITH_CUDA, True, True, None),
        ("mps", WITH_CUDA, False, False, "no Metal engine"),
    ],
)
def test_choose_provider(
    device: str, providers: list[str], gpu: bool, cuda: bool, notice: str | None
) -> None:
    chosen, said = choose_provider(device, providers, gpu)
    assert chosen is cuda
    assert (said is None) if notice is None else (said is not None and notice in said)
    if said is not None:
        assert "\n" not in said and said.startswith("OCR runs on the CPU")


def test_choose_provider_cuda_without_provider_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="onnxruntime-gpu"):
        choose_provider("cuda", CPU_ONLY, True)


def test_a_gpu_without_the_cuda_provider_gives_one_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: CPU_ONLY)
    monkeypatch.setattr(ocr, "gpu_present", lambda: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # what a run sees: each notice once
        assert [ocr._use_cuda("auto") for _ in range(3)] == [False] * 3
        assert ocr._use_cuda("cpu") is False
    notices = [w for w in caught if issubclass(w.category, ocr.DeviceNotice)]
    assert [str(w.message) for w in notices] == [ocr.NO_CUDA_PROVIDER]


def test_device_cpu_never_asks_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: WITH_CUDA)
    monkeypatch.setattr(ocr, "gpu_present", lambda: pytest.fail("--device cpu probed for a GPU"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ocr.DeviceNotice)
        reader = create("ocr", "rapidocr", device="cpu", workers=1)
    assert reader.cuda is False and reader._params()["EngineConfig.onnxruntime.use_cuda"] is False
    assert reader.provenance()["provider"] == "cpu"


def test_a_cuda_provider_that_cannot_start_falls_back_with_a_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime really has CUDA")
    # onnxruntime lists CUDA, but the session it builds runs on the CPU (as without CUDA libraries).
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: WITH_CUDA)
    with pytest.warns(ocr.DeviceNotice, match="could not start its CUDA provider"):
        reader = create("ocr", "rapidocr", device="auto", workers=1)
    assert reader.cuda is False and reader.provenance()["provider"] == "cpu"
