"""The ultralytics detector: a random-weight yolov8n built offline, through the registry."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from vlcli.backends import available, create, yolo
from vlcli.backends.protocols import Detection, Detector
from vlcli.backends.yolo import pixel_box, ultralytics_device
from vlcli.errors import MissingDependencyError, ModelLoadError, UsageError

os.environ.setdefault("YOLO_OFFLINE", "1")
CONFIG = "yolov8n.yaml"  # random weights, built in-process with no download
TEST_SIZE = 160  # smaller than the default 640 to keep the tests quick on two cores


@pytest.fixture(scope="module", autouse=True)
def yolo_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Ultralytics' settings in a temp folder (matters when this module imports it first)."""
    folder = tmp_path_factory.mktemp("yolo-config")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLO_CONFIG_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def detector(yolo_config_dir: Path) -> Any:
    """yolov8n with random weights and a near-zero threshold, so that it finds many boxes."""
    return create("detector", "ultralytics", model=CONFIG, device="cpu", conf=0.0001, imgsz=TEST_SIZE)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    """Distinct noisy images of several sizes, shapes and modes."""
    rng = np.random.default_rng(0)

    def noise(w: int, h: int) -> Image.Image:
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    return [
        noise(320, 240),
        noise(120, 500),
        noise(700, 20),
        noise(64, 64).convert("L"),
        noise(50, 40).convert("RGBA"),
        noise(3, 2),
    ]


@pytest.fixture(scope="module")
def batched(detector: Any, images: list[Image.Image]) -> list[list[Detection]]:
    """The detections of all test images in one call."""
    found: list[list[Detection]] = detector.detect(images)
    return found


def test_registered_and_a_detector(detector: Any) -> None:
    assert "ultralytics" in available("detector")
    assert isinstance(detector, Detector)
    assert detector.detect([]) == []


def test_detections_are_well_formed(
    detector: Any, images: list[Image.Image], batched: list[list[Detection]]
) -> None:
    found = batched
    assert len(found) == len(images)
    assert sum(map(len, found)) > 0  # the low threshold exercises the mapping
    labels = set(detector.model.names.values())
    for image, dets in zip(images, found, strict=True):
        width, height = image.size
        assert len(dets) <= detector.max_det
        for d in dets:
            assert isinstance(d, Detection)
            left, top, right, bottom = d.box
            assert all(isinstance(v, int) for v in d.box)
            assert 0 <= left <= right <= width and 0 <= top <= bottom <= height
            assert d.label in labels
            assert detector.conf <= d.score <= 1.0
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)


def test_batch_equals_one_by_one_in_order(
    detector: Any, images: list[Image.Image], batched: list[list[Detection]]
) -> None:
    single = [detector.detect([img])[0] for img in images]
    assert [len(d) for d in batched] == [len(d) for d in single]
    for many, one in zip(batched, single, strict=True):
        for a, b in zip(many, one, strict=True):
            assert a.label == b.label
            assert np.allclose(a.box, b.box, atol=1)
            assert a.score == pytest.approx(b.score, rel=1e-3, abs=1e-6)


def test_chunks_of_batch_size_give_the_same_result(
    detector: Any, images: list[Image.Image], batched: list[list[Detection]]
) -> None:
    small = create(
        "detector", "ultralytics", model=CONFIG, device="cpu", conf=0.0001, imgsz=TEST_SIZE, batch_size=4
    )
    assert small.model is detector.model  # loaded once per process
    reversed_chunks = small.detect(images[::-1])[::-1]
    assert [[d.label for d in x] for x in reversed_chunks] == [[d.label for d in x] for x in batched]


def test_provenance(detector: Any) -> None:
    p = detector.provenance()
    assert p["model"] == CONFIG and p["weights_sha256"] is None  # a config: random weights, no file
    assert p["task"] == "detect" and p["num_classes"] == len(detector.model.names)
    assert p["conf"] == 0.0001 and p["imgsz"] == TEST_SIZE and p["half"] is False
    assert p["ultralytics_version"]
    json.dumps(p)


def test_local_weights_file_loads_and_is_hashed(detector: Any, tmp_path: Path) -> None:
    weights = tmp_path / "tiny.pt"
    detector.model.save(str(weights))
    local = create("detector", "ultralytics", model=str(weights), device="cpu", imgsz=TEST_SIZE)
    assert local.provenance()["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert len(local.detect([Image.new("RGB", (40, 30))])) == 1


def test_missing_weights_are_a_clear_error_without_network(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope" / "model.pt")
    with pytest.raises(ModelLoadError, match=r"nope/model\.pt.*no such file.*local path"):
        create("detector", "ultralytics", model=missing, device="cpu")
    with pytest.raises(ModelLoadError, match="not an Ultralytics weights name"):
        create("detector", "ultralytics", model="my-detector.pt", device="cpu")


def test_offline_known_name_not_downloaded_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"'yolo11s\.pt'.*not downloaded.*must be a local path"):
        create("detector", "ultralytics", model="yolo11s.pt", device="cpu")


def test_a_classifier_is_refused() -> None:
    with pytest.raises(UsageError, match="'classify' model"):
        create("detector", "ultralytics", model="yolov8n-cls.yaml", device="cpu")


@pytest.mark.parametrize(
    "options", [{"conf": 1.5}, {"iou": -0.1}, {"imgsz": 8}, {"max_det": 0}, {"half": True, "device": "cpu"}]
)
def test_bad_options_name_the_option(options: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        create("detector", "ultralytics", model=CONFIG, **{"device": "cpu", **options})


def test_missing_package_names_the_headless_build(monkeypatch: pytest.MonkeyPatch) -> None:
    yolo.import_ultralytics.cache_clear()
    monkeypatch.setitem(sys.modules, "ultralytics", None)
    try:
        with pytest.raises(MissingDependencyError, match="pip install ultralytics-opencv-headless"):
            yolo.import_ultralytics()
    finally:
        yolo.import_ultralytics.cache_clear()


def test_only_the_headless_opencv_is_installed() -> None:
    distribution("opencv-python-headless")
    with pytest.raises(PackageNotFoundError):
        distribution("opencv-python")  # `ultralytics` would pull it; use ultralytics-opencv-headless


def test_device_names() -> None:
    assert [ultralytics_device(d) for d in ("cpu", "cuda", "cuda:1", "mps")] == ["cpu", "0", "1", "mps"]


@given(
    st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=4, max_size=4),
    st.integers(1, 5000),
    st.integers(1, 5000),
)
def test_pixel_box_stays_inside_and_covers(xyxy: list[float], width: int, height: int) -> None:
    left, top, right, bottom = pixel_box(xyxy, width, height)
    assert 0 <= left <= right <= width and 0 <= top <= bottom <= height
    x0, y0, x1, y1 = xyxy
    if 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height:
        assert left <= x0 and top <= y0 and right >= x1 and bottom >= y1


_STATE_PROBE = """
import io, os, sys, contextlib
from pathlib import Path
import torch
from PIL import Image
want = min(8, max(1, (os.cpu_count() or 1) - 1)) + 1  # never the count ultralytics sets
torch.set_num_threads(want)
out = io.StringIO()
with contextlib.redirect_stdout(out):
    from vlcli.backends import create
    from vlcli.backends.yolo import import_ultralytics
    import_ultralytics()
    seen = {"import": torch.get_num_threads()}
    det = create("detector", "ultralytics", model="yolov8n.yaml", device="cpu", imgsz=64)
    seen["load"] = torch.get_num_threads()
    det.detect([Image.new("RGB", (64, 48))])
    seen["predict"] = torch.get_num_threads()
    omp = os.environ.get("OMP_NUM_THREADS")
    from ultralytics.utils.torch_utils import select_device
    select_device("cpu")  # what the guard undoes: ultralytics resets the process's threads
    dropped = torch.get_num_threads() != want
print(repr((want, seen, omp, dropped, out.getvalue(), sorted(p.name for p in Path.cwd().iterdir()))))
"""


def test_process_state_is_kept_and_nothing_is_printed_or_written(tmp_path: Path) -> None:
    work, config = tmp_path / "work", tmp_path / "config"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "YOLO_VERBOSE")}
    env.update(YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(config))
    run = subprocess.run(
        [sys.executable, "-c", _STATE_PROBE], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    want, seen, omp, dropped, printed, files = ast.literal_eval(run.stdout.strip().splitlines()[-1])
    assert seen == {"import": want, "load": want, "predict": want}
    assert omp is None  # ultralytics sets OMP_NUM_THREADS=1 on import; child processes would inherit it
    assert dropped  # without the guard the thread count does change
    assert printed == "" and run.stdout.count("\n") == 1
    assert files == []  # nothing in the working directory
    assert (config / "Ultralytics" / "settings.json").is_file()


def test_pil_image_open_is_not_patched_by_ultralytics() -> None:
    from PIL import Image

    from vlcli.backends.yolo import import_ultralytics

    before = Image.open
    import_ultralytics()
    assert Image.open is before
