"""`vl crop`'s pixel paths: the exact path's pixels are PIL's, `--preprocess fast` agrees with it on most
photos, JPEGs decode on a device in batches (tested on the CPU), and `--decode gpu` needs CUDA."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import table_rows  # noqa: E402

from vlcli.demo.samples import draw_scene  # noqa: E402
from vlcli.errors import UsageError  # noqa: E402
from vlcli.images import ImageProblem, decode  # noqa: E402
from vlcli.steps.base import RunOptions  # noqa: E402
from vlcli.steps.crop.geometry import CropGrid, grid_boxes, resized_size  # noqa: E402
from vlcli.steps.crop.pixels import decode_jpeg_cpu, decode_jpegs, fit_boxes  # noqa: E402
from vlcli.steps.crop.step import CropSettings, CropStep  # noqa: E402
from vlcli.steps.runner import run_step  # noqa: E402
from vlcli.table.schema import ingest_schema  # noqa: E402
from vlcli.table.storage import Table  # noqa: E402

R = 224  # resize target: small enough for quick tests, large enough for a reduced JPEG decode


def photo(seed: int, size: tuple[int, int], mode: str = "RGB", **save: object) -> bytes:
    """A generated photo-like scene as a JPEG."""
    img = draw_scene(random.Random(seed), np.random.default_rng(seed), size).convert(mode)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def row(data: bytes) -> dict[str, object]:
    w, h = Image.open(io.BytesIO(data)).size
    return {"id": "x", "image": data, "width": w, "height": h}


def cut_short(data: bytes) -> bytes:
    """The JPEG's header and the first bytes of its scan: a readable header, no image."""
    return data[: data.index(b"\xff\xda") + 40]


def test_exact_pixels_are_pils_decode_and_bicubic_resize() -> None:
    """The exact path's pixels are bit for bit Pillow's (draft) decode and bicubic resize, RGB or grey:
    the seed's boxes depend on every level."""
    step = CropStep(CropSettings(model="unused", resize_to=R, keep_embedding=False))
    for i, (size, mode) in enumerate([((400, 300), "RGB"), ((300, 520), "L"), ((1000, 470), "RGB")]):
        data = photo(i, size, mode)
        img = decode(data, min_side=R)
        expected = np.asarray(img.resize(resized_size(*img.size, R), Image.Resampling.BICUBIC))
        assert np.array_equal(step.prepare(row(data)).pixels, expected)


def test_opencv_jpeg_decode_equals_pillows_at_every_draft_scale() -> None:
    for i, size in enumerate([(640, 480), (1001, 751), (333, 257)]):
        data = photo(i, size)
        for min_side in (480, 200, 100, 40):  # scales 1, 2, 4 and 8
            ours = decode_jpeg_cpu(data, min_side)
            assert ours is not None or (size, min_side) == ((1001, 751), 40)  # Pillow shrinks that further
            if ours is not None:
                assert np.array_equal(ours, np.asarray(decode(data, min_side=min_side)))
    rotated = photo(1, (64, 48), exif=_exif_rotated())
    assert decode_jpeg_cpu(rotated, 32) is None  # EXIF rotation and CMYK are left to Pillow
    assert decode_jpeg_cpu(photo(2, (64, 48), "CMYK"), 32) is None


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()


def test_fit_boxes_keep_one_size_inside_the_image() -> None:
    frame = resized_size(1600, 1200, 1024)
    boxes = grid_boxes(*frame, CropGrid(15))
    for size in [(800, 600), (401, 301), (1600, 1200)]:
        cuts = fit_boxes(boxes, frame, size)
        assert len({(x1 - x0, y1 - y0) for x0, y0, x1, y1 in cuts}) == 1
        assert all(0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1] for x0, y0, x1, y1 in cuts)
        assert cuts[0][0] == 0 and cuts[-1][2] == size[0]  # both ends, as in the frame


def test_fast_path_decodes_reduced_and_agrees_with_exact(tmp_path: Path, tiny_dinov2: str) -> None:
    """Fast decodes at half the scale and picks the exact path's box on most generated photos (the
    measured share with this tiny random model: 22/24)."""
    images = [photo(i, (480, 360) if i % 3 else (360, 480)) for i in range(24)]
    rows_ = [row(d) for d in images]
    boxes = {}
    for mode in ("exact", "fast"):
        step = CropStep(CropSettings(model=tiny_dinov2, resize_to=R, device="cpu", preprocess=mode))  # type: ignore[arg-type]
        step.setup()
        items = [step.prepare(r) for r in rows_]
        boxes[mode] = [tuple(out["crop_box"]) for out in step.process(items)]
        if mode == "fast":
            assert items[1].pixels is not None and items[1].pixels.shape == (
                180,
                240,
                3,
            )  # a half-scale decode
    same = sum(a == b for a, b in zip(boxes["exact"], boxes["fast"]))
    assert same >= 0.8 * len(images)


def test_decode_jpegs_batches_and_fails_rows_alone() -> None:
    """On the CPU the device decoder is libjpeg too: the same pixels as Pillow, one bad JPEG failing alone."""
    good = [photo(i, (120, 90)) for i in range(3)]
    broken = cut_short(good[0])
    out = decode_jpegs([good[0], good[1]], "cpu")
    for data, tensor in zip(good, out):
        assert tensor.shape == (90, 120, 3)
        assert np.array_equal(tensor.numpy(), np.asarray(decode(data)))
    out = decode_jpegs([good[0], broken, good[2]], "cpu")
    assert isinstance(out[1], ImageProblem) and str(out[1]).startswith("cannot decode")
    assert np.array_equal(out[2].numpy(), np.asarray(decode(good[2])))
    assert decode_jpegs([], "cpu") == []


def test_device_decode_path_on_the_cpu(tiny_dinov2: str) -> None:
    """The `--decode gpu` path run with device cpu: plain JPEGs go to the device decoder as bytes, PNG,
    CMYK and EXIF-rotated JPEGs decode in prepare; a JPEG the device cannot decode fails alone."""
    settings = CropSettings(model=tiny_dinov2, resize_to=R, device="cpu", preprocess="fast", decode="gpu")
    step = CropStep(settings)
    step.setup()
    png = io.BytesIO()
    draw_scene(random.Random(9), np.random.default_rng(9), (300, 240)).save(png, "PNG")
    datas = [
        photo(1, (300, 240)),
        png.getvalue(),
        photo(2, (300, 240), "CMYK"),
        photo(3, (240, 300), exif=_exif_rotated()),
        cut_short(photo(4, (300, 240))),
        photo(5, (240, 320), "L"),
    ]
    items = [step.prepare(row(d)) for d in datas]
    assert [it.jpeg is not None for it in items] == [True, False, False, False, True, True]
    out = step.process(items)
    assert [o.get("crop_status", "ok") for o in out][:4] == ["ok"] * 4
    assert out[4]["crop_status"].startswith("error: cannot decode")
    assert "crop_status" not in out[5] and len(out[5]["crop_box"]) == 4
    # the device-decoded JPEG is cut from its full-size pixels at the same boxes
    assert items[0].cuts == fit_boxes(items[0].boxes, items[0].resized, (300, 240))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_decode_gpu_needs_cuda_and_fast(tmp_path: Path) -> None:
    table = Table.create(tmp_path / "t.lance", ingest_schema())
    table.append(table_rows([photo(1, (64, 48))]))
    step = CropStep(CropSettings(model="unused", preprocess="fast", decode="gpu", keep_embedding=False))
    with pytest.raises(UsageError, match="--decode gpu needs a CUDA GPU"):
        run_step(table, step, RunOptions())
    with pytest.raises(UsageError, match="add --preprocess fast"):
        CropSettings(decode="gpu")
    with pytest.raises(UsageError, match="--preprocess must be exact or fast"):
        CropSettings(preprocess="quick")


def test_cli_preprocess_fast_runs_and_decode_gpu_stops_without_cuda(tmp_path: Path, tiny_dinov2: str) -> None:
    from typer.testing import CliRunner

    from vlcli.cli.app import app

    path = str(tmp_path / "t.lance")
    table = Table.create(path, ingest_schema())
    table.append(table_rows([photo(i, (320, 240)) for i in range(3)]))
    base = ["crop", path, "--model", tiny_dinov2, "--resize-to", str(R), "--device", "cpu"]
    result = CliRunner().invoke(app, [*base, "--preprocess", "fast"])
    assert result.exit_code == 0, result.output
    assert Table.open(path).to_arrow(["crop_status"]).column(0).to_pylist() == ["ok"] * 3
    if not torch.cuda.is_available():
        result = CliRunner().invoke(app, [*base, "--preprocess", "fast", "--decode", "gpu", "--redo"])
        assert result.exit_code == 2  # a usage error
        assert (
            "--decode gpu needs a CUDA GPU" in result.output and len(result.output.strip().splitlines()) == 1
        )
