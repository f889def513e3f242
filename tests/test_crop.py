"""`vl crop` with a tiny random DINOv2: scores equal a plain per-crop PIL/torch reference, boxes, bad rows."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import table_rows  # noqa: E402

from vlcli.steps.base import RunOptions  # noqa: E402
from vlcli.steps.crop.geometry import resized_size, seed_boxes, to_original  # noqa: E402
from vlcli.steps.crop.step import CropSettings, CropStep  # noqa: E402
from vlcli.steps.runner import run_step  # noqa: E402
from vlcli.table.schema import ingest_schema  # noqa: E402
from vlcli.table.storage import Table  # noqa: E402

R = 64  # resize target: small so the tests are quick


def scene(seed: int, size: tuple[int, int], fmt: str = "PNG") -> bytes:
    """A picture with a few strong shapes, so candidate crops differ."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        r = rng.randrange(5, max(6, min(size) // 2))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def reference_scores(data: bytes, model_dir: str, num_crops: int) -> list[float]:
    """The seed's algorithm written plainly: PIL crop and resize per candidate, one forward each."""
    processor = transformers.AutoImageProcessor.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    s = processor.crop_size["height"]
    mean = torch.tensor(processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1)

    def embed(img: Image.Image) -> torch.Tensor:
        arr = np.asarray(img.resize((s, s), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
        x = (torch.from_numpy(arr).permute(2, 0, 1) - mean) / std
        with torch.no_grad():
            return model(pixel_values=x[None]).pooler_output[0]

    img = Image.open(io.BytesIO(data)).convert("RGB")
    img = img.resize(resized_size(*img.size, R), Image.Resampling.BICUBIC)
    full = embed(img)
    return [
        float(torch.cosine_similarity(embed(img.crop(b)), full, dim=0))
        for b in seed_boxes(*img.size, num_crops)
    ]


def crop_table(tmp_path: Path, images: list[bytes]) -> Table:
    table = Table.create(tmp_path / "crop.lance", ingest_schema())
    table.append(table_rows(images))
    return table


def rows(table: Table) -> dict[str, dict[str, object]]:
    cols = ["id", "crop_box", "crop_score", "crop_status", "embedding", "width", "height"]
    return {r["id"]: r for r in table.to_arrow(cols).to_pylist()}


def test_scores_match_a_plain_per_crop_reference(tmp_path: Path, tiny_dinov2: str) -> None:
    images = [scene(1, (200, 120)), scene(2, (90, 170)), scene(3, (300, 100))]
    table = crop_table(tmp_path, images)
    settings = CropSettings(model=tiny_dinov2, resize_to=R, num_crops=5, device="cpu")
    report = run_step(table, CropStep(settings), RunOptions(batch_size=2))
    assert report.done == 3
    got = rows(table)
    for data, row_id in zip(images, table_rows(images).column("id").to_pylist()):
        expected = reference_scores(data, tiny_dinov2, 5)
        row = got[row_id]
        assert row["crop_score"] == pytest.approx(max(expected), abs=1e-3)
        w, h = Image.open(io.BytesIO(data)).size
        rw, rh = resized_size(w, h, R)
        best = int(np.argmax(expected))
        assert tuple(row["crop_box"]) == to_original(seed_boxes(rw, rh, 5)[best], (rw, rh), (w, h))
        assert len(row["embedding"]) == 32
        assert np.linalg.norm(row["embedding"]) == pytest.approx(1.0, abs=1e-5)


def test_square_portrait_tiny_and_broken_images(tmp_path: Path, tiny_dinov2: str) -> None:
    square, portrait, tiny = scene(4, (150, 150)), scene(5, (80, 240)), scene(6, (20, 40))
    table = crop_table(tmp_path, [square, portrait, tiny])
    ids = table_rows([square, portrait, tiny]).column("id").to_pylist()
    table.write_back(pa.table({"id": [ids[2]], "image": [b"\xff\xd8\xff garbage"]}))
    settings = CropSettings(model=tiny_dinov2, resize_to=R, num_crops=4, device="cpu")
    run_step(table, CropStep(settings))
    got = rows(table)
    assert got[ids[0]]["crop_box"] == [0, 0, 150, 150] and got[ids[0]]["crop_score"] == 1.0
    left, top, right, bottom = got[ids[1]]["crop_box"]
    assert (left, right) == (0, 80) and bottom - top == 80  # a square slid down a portrait
    assert str(got[ids[2]]["crop_status"]).startswith("error: ")
    assert got[ids[2]]["crop_box"] is None


def test_too_small_and_low_score_are_skipped(tmp_path: Path, tiny_dinov2: str) -> None:
    images = [scene(7, (20, 40)), scene(8, (200, 100))]
    table = crop_table(tmp_path, images)
    ids = table_rows(images).column("id").to_pylist()
    settings = CropSettings(model=tiny_dinov2, resize_to=R, num_crops=3, min_score=0.99999, device="cpu")
    report = run_step(table, CropStep(settings))
    got = rows(table)
    assert got[ids[0]]["crop_status"] == "skipped: too small (20x40 < --min-side 32)"
    assert str(got[ids[1]]["crop_status"]).startswith("skipped: low score")
    assert got[ids[1]]["crop_box"] is None and got[ids[1]]["crop_score"] is not None
    assert report.reasons == {"skipped: too small": 1, "skipped: low score": 1}


def test_jpeg_bf16_and_grid_options_run(tmp_path: Path, tiny_dinov2: str) -> None:
    images = [scene(9, (320, 200), "JPEG"), scene(10, (200, 320), "JPEG")]
    table = crop_table(tmp_path, images)
    settings = CropSettings(
        model=tiny_dinov2,
        resize_to=R,
        num_crops=3,
        aspects=((1, 1), (4, 3)),
        scales=(1.0, 0.8),
        dtype="bf16",
        keep_embedding=False,
        device="cpu",
    )
    report = run_step(table, CropStep(settings))
    assert report.done == 2 and "embedding" not in table.schema.names
    for row in rows_without_embedding(table):
        left, top, right, bottom = row["crop_box"]
        assert 0 <= left < right <= row["width"] and 0 <= top < bottom <= row["height"]


def rows_without_embedding(table: Table) -> list[dict[str, object]]:
    return table.to_arrow(["crop_box", "width", "height"]).to_pylist()


def test_provenance_names_the_model(tmp_path: Path, tiny_dinov2: str) -> None:
    table = crop_table(tmp_path, [scene(11, (200, 100))])
    run_step(table, CropStep(CropSettings(model=tiny_dinov2, resize_to=R, num_crops=2, device="cpu")))
    params = table.metadata()["provenance.crop"]["params"]
    assert params["model"] == tiny_dinov2 and params["num_crops"] == 2
    assert params["embedder"]["dtype"] == "float32"


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import fake_steps  # noqa: F401  (puts tests/ on the path for the spawn pool)
from vlcli.steps.base import RunOptions
from vlcli.steps.runner import run_step
from vlcli.steps.crop.step import CropSettings, CropStep
from vlcli.table.storage import Table

class Slow(CropStep):
    def process(self, items):
        import time
        time.sleep(0.3)
        return super().process(items)

run_step(Table.open({table!r}), Slow(CropSettings(model={model!r}, resize_to=64, num_crops=3, device="cpu")),
         RunOptions(batch_size=2, commit_rows=2))
"""


def _committed(path: str) -> int:
    current = Table.open(path)
    return current.count("crop_status IS NOT NULL") if "crop_status" in current.schema.names else 0


def test_crop_killed_mid_run_resumes_to_the_same_table(tmp_path: Path, tiny_dinov2: str) -> None:
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    images = [scene(100 + i, (160 + 8 * i, 96)) for i in range(14)]
    table = crop_table(tmp_path, images)
    reference = Table.open(shutil.copytree(table.path, tmp_path / "reference.lance"))
    settings = CropSettings(model=tiny_dinov2, resize_to=64, num_crops=3, device="cpu")
    run_step(reference, CropStep(settings), RunOptions(batch_size=2))

    code = KILL_SCRIPT.format(tests=str(Path(__file__).parent), table=table.path, model=tiny_dinov2)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    try:
        while _committed(table.path) < 4:
            assert time.monotonic() < deadline and proc.poll() is None, "crop never committed"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = Table.open(table.path).count("crop_status IS NOT NULL")
    assert done_before < 14

    report = run_step(Table.open(table.path), CropStep(settings), RunOptions(batch_size=2))
    assert report.processed == 14 - done_before
    cols = ["id", "crop_box", "crop_score", "crop_status", "embedding"]
    got = sorted(Table.open(table.path).to_arrow(cols).to_pylist(), key=lambda r: r["id"])
    want = sorted(reference.to_arrow(cols).to_pylist(), key=lambda r: r["id"])
    assert [r["crop_box"] for r in got] == [r["crop_box"] for r in want]
    assert [r["crop_status"] for r in got] == ["ok"] * 14
    for g, w in zip(got, want):
        assert g["crop_score"] == pytest.approx(w["crop_score"], abs=1e-5)
        assert np.allclose(g["embedding"], w["embedding"], atol=1e-5)


def test_reused_buffers_give_the_same_results_batch_after_batch(tmp_path: Path, tiny_dinov2: str) -> None:
    step = CropStep(CropSettings(model=tiny_dinov2, resize_to=R, num_crops=5, device="cpu"))
    step.setup()
    images = [scene(20, (96, 64)), scene(21, (64, 112)), scene(22, (80, 80))]
    items = [step.prepare({"image": data, "width": None, "height": None}) for data in images]
    first = step.process(items)
    again = step.process(items[:2])  # a smaller batch reuses the buffers of the first
    assert again == first[:2]
    assert step._buffers  # kept for the next batch, but never shipped to pool workers
    assert step.__getstate__()["_buffers"] == {}


def test_portrait_candidates_share_their_first_pass_bit_for_bit(tmp_path: Path, tiny_dinov2: str) -> None:
    step = CropStep(CropSettings(model=tiny_dinov2, resize_to=R, num_crops=4, device="cpu"))
    step.setup()
    for size in ((64, 112), (112, 64)):  # portrait: shared first pass; landscape: cut first
        p = step.prepare({"image": scene(30, size), "width": None, "height": None})
        full = torch.from_numpy(p.pixels)
        _shared, candidates = step._views(full, p)
        direct = [full[y0:y1, x0:x1] for x0, y0, x1, y1 in p.boxes]
        for got, want in zip(candidates, direct):
            a = step.embedder.resize(got.permute(2, 0, 1)[None].contiguous(), (56, 56))
            b = step.embedder.resize(want.permute(2, 0, 1)[None].contiguous(), (56, 56))
            assert torch.equal(a, b)
