"""`export`: round trips through `datasets`, crop views and image files, row and column selection, safety."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from conftest import table_rows
from PIL import Image, ImageOps
from typer.testing import CliRunner, Result

from vlcli.cli import export as export_cli
from vlcli.errors import ExportError, QueryError, UsageError
from vlcli.exports import files
from vlcli.exports.export import MARKER, export
from vlcli.exports.qa import check_file_target
from vlcli.exports.views import BLOCKS_PER_WORKER, ViewOptions
from vlcli.table.schema import CROP_BOX, ingest_schema
from vlcli.table.storage import Table


class RecordingProgress:
    """A Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.rows = 0
        self.finished = False

    def start(self, step: str, total: int | None) -> None:
        self.total = total

    def advance(self, rows: int, errors: int) -> None:
        self.rows += rows

    def finish(self) -> None:
        self.finished = True


@pytest.fixture
def table(make_table: Callable[..., Table]) -> Table:
    """20 good JPEG rows plus one row whose ingest failed (no image)."""
    t = make_table(20)
    t.append(pa.table({"id": ["bad"], "source": ["mem://bad"], "ingest_status": ["error: not an image"]}))
    return t


def originals(table: Table) -> dict[str, bytes]:
    rows = table.to_arrow(["id", "image"], "ingest_status = 'ok'").to_pylist()
    return {r["id"]: r["image"] for r in rows}


def raw_images(ds: datasets.Dataset) -> dict[str, bytes]:
    plain = ds.cast_column("image", datasets.Image(decode=False))
    return {r["id"]: r["image"]["bytes"] for r in plain}


def load_parquet(folder: Path, cache: Path) -> datasets.Dataset:
    files = sorted(str(p) for p in folder.glob("part-*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(cache))
    assert isinstance(ds, datasets.Dataset)
    return ds


def test_parquet_round_trip(table: Table, tmp_path: Path) -> None:
    progress = RecordingProgress()
    report = export(table, parquet=tmp_path / "pq", shard_rows=7, progress=progress)
    assert report.rows == 20 and progress.rows == 20 and progress.total == 20 and progress.finished
    assert report.files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert report.bytes_written == sum(p.stat().st_size for p in (tmp_path / "pq").iterdir())
    ds = load_parquet(tmp_path / "pq", tmp_path / "cache")
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds.column_names == ingest_schema().names
    assert raw_images(ds) == originals(table)
    assert isinstance(ds[0]["image"], Image.Image)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*")) if folder.exists() else []


def test_hf_round_trip(table: Table, tmp_path: Path) -> None:
    hf_cache = Path(datasets.config.HF_DATASETS_CACHE)
    cache_before = _listing(hf_cache)
    report = export(table, hf=tmp_path / "hf", shard_rows=8)
    assert report.rows == 20
    assert sorted(os.listdir(tmp_path)) == ["hf", "t.lance"] and _listing(hf_cache) == cache_before
    assert sorted(os.listdir(tmp_path / "hf")) == report.files
    assert {"state.json", "dataset_info.json", "data-00002-of-00003.arrow"} <= set(report.files)
    assert "load_from_disk" in report.load_hint()
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert isinstance(ds, datasets.Dataset)
    assert isinstance(ds.features["image"], datasets.Image)
    assert raw_images(ds) == originals(table)
    first = ds[0]
    assert first["image"].size == (first["width"], first["height"])


def test_where_and_columns(table: Table, tmp_path: Path) -> None:
    report = export(
        table, parquet=tmp_path / "pq", where="source IN ('mem://3', 'mem://5')", columns=["width"]
    )
    assert report.rows == 2 and report.columns == ["id", "width", "image"]
    ds = load_parquet(tmp_path / "pq", tmp_path / "cache")
    assert ds.column_names == ["id", "width", "image"]
    wanted = {i: b for i, b in originals(table).items() if i in set(ds["id"])}
    assert raw_images(ds) == wanted and len(wanted) == 2


def test_no_image_and_all_rows(table: Table, tmp_path: Path) -> None:
    report = export(table, hf=tmp_path / "hf", columns=["ingest_status"], image=False, all_rows=True)
    assert report.rows == 21 and report.columns == ["id", "ingest_status"]
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert sorted(ds["ingest_status"])[0] == "error: not an image"


def test_failed_rows_keep_a_null_image(table: Table, tmp_path: Path) -> None:
    export(table, parquet=tmp_path / "pq", all_rows=True, where="id = 'bad'")
    ds = load_parquet(tmp_path / "pq", tmp_path / "cache")
    assert ds[0]["id"] == "bad" and ds[0]["image"] is None


def test_empty_selection_still_loads(table: Table, tmp_path: Path) -> None:
    assert export(table, parquet=tmp_path / "pq", where="width > 10000").rows == 0
    assert export(table, hf=tmp_path / "hf", where="width > 10000").rows == 0
    # `load_dataset` refuses empty splits, so check the one empty shard's rows and features directly
    shard = pq.read_table(tmp_path / "pq" / "part-00000.parquet")
    assert shard.num_rows == 0
    assert isinstance(datasets.Features.from_arrow_schema(shard.schema)["image"], datasets.Image)
    assert isinstance(datasets.load_from_disk(str(tmp_path / "hf")).features["image"], datasets.Image)


def test_where_is_pushed_down(tmp_path: Path) -> None:
    big = Table.create(tmp_path / "big.lance", ingest_schema())
    ids = [f"r{i:02d}" for i in range(30)]
    big.append(
        pa.table({"id": ids, "image": [os.urandom(100_000) for _ in ids], "ingest_status": ["ok"] * 30})
    )
    big = Table.open(big.path)
    big.bytes_read()
    assert export(big, parquet=tmp_path / "pq", where="id = 'r07'").rows == 1
    assert big.bytes_read() < 30 * 100_000 / 5


def test_refuses_a_non_empty_folder_unless_overwrite(table: Table, tmp_path: Path) -> None:
    target = tmp_path / "pq"
    export(table, parquet=target, shard_rows=5)
    with pytest.raises(ExportError, match="not empty: pass --overwrite"):
        export(table, parquet=target)
    report = export(table, parquet=target, where="source = 'mem://1'", overwrite=True)
    assert report.rows == 1 and sorted(os.listdir(target)) == ["part-00000.parquet"]  # old shards gone


def test_overwrite_leaves_foreign_files_alone(table: Table, tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match=r"did not write \('notes.txt'\)"):
        export(table, hf=target, overwrite=True)
    assert os.listdir(target) == ["notes.txt"]


def test_refuses_the_table_folder(table: Table) -> None:
    with pytest.raises(ExportError, match="overlaps the table"):
        export(table, parquet=Path(table.path) / "out", overwrite=True)


def test_refuses_the_table_folder_of_a_file_uri_table(table: Table, tmp_path: Path) -> None:
    by_uri = Table.open(Path(table.path).resolve().as_uri())
    with pytest.raises(ExportError, match="overlaps the table"):
        export(by_uri, images=Path(table.path) / "out")
    with pytest.raises(ExportError, match="overlaps the table"):
        export(by_uri, parquet=Path(table.path).parent, overwrite=True)
    with pytest.raises(ExportError, match="is inside the table"):
        check_file_target(Path(table.path) / "qa.jsonl", None, by_uri, overwrite=True)
    assert export(by_uri, images=tmp_path / "fine").rows == 20


def test_image_export_gives_back_pillows_block_cache(table: Table, tmp_path: Path) -> None:
    from PIL import _imaging

    before = _imaging.get_blocks_max()
    seen: list[int] = []
    real = files.render

    def spy(*args: Any) -> Any:
        seen.append(_imaging.get_blocks_max())
        return real(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(files, "render", spy)
        assert export(table, images=tmp_path / "out", workers=2).rows == 20
    assert min(seen) >= 2 * BLOCKS_PER_WORKER  # rows render with freed blocks kept for the next row
    assert _imaging.get_blocks_max() == before


def test_option_errors(table: Table, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="exactly one of --hf DIR, --parquet DIR or --images DIR"):
        export(table)
    with pytest.raises(UsageError, match="exactly one of --hf DIR, --parquet DIR or --images DIR"):
        export(table, hf=tmp_path / "a", parquet=tmp_path / "b")
    with pytest.raises(UsageError, match="--columns: unknown column 'nope'"):
        export(table, parquet=tmp_path / "c", columns=["width", "nope"])
    with pytest.raises(QueryError, match="--where 'widht > 3'"):
        export(table, parquet=tmp_path / "d", where="widht > 3")
    with pytest.raises(UsageError, match="--shard-rows"):
        export(table, parquet=tmp_path / "e", shard_rows=0)
    assert not any((tmp_path / n).exists() for n in "abcde")


def test_decodes_like_pil(table: Table, tmp_path: Path) -> None:
    export(table, hf=tmp_path / "hf", where="source = 'mem://0'")
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    expected = Image.open(io.BytesIO(originals(table)[ds[0]["id"]])).convert("RGB")
    assert ds[0]["image"].convert("RGB").tobytes() == expected.tobytes()


def cli() -> typer.Typer:
    """The export command on its own app."""
    app = typer.Typer()
    app.command("export")(export_cli.command)
    app.command("noop")(lambda: None)  # two commands keep `export` a subcommand
    return app


def run(*args: str) -> Result:
    return CliRunner().invoke(cli(), ["export", *args])


def test_cli_exports_and_says_how_to_load(table: Table, tmp_path: Path) -> None:
    target = str(tmp_path / "hf")
    result = run(table.path, "--hf", target, "--columns", "width, height", "--where", "source = 'mem://2'")
    assert result.exit_code == 0, result.output
    assert "exported 1 rows" in result.output and "columns: id, width, height, image" in result.output
    assert f"datasets.load_from_disk({target!r})" in result.output
    ds = datasets.load_from_disk(target)
    assert ds.column_names == ["id", "width", "height", "image"] and len(ds) == 1


def test_cli_parquet_overwrite(table: Table, tmp_path: Path) -> None:
    target = str(tmp_path / "pq")
    assert run(table.path, "--parquet", target, "--shard-rows", "10", "--no-image").exit_code == 0
    assert sorted(os.listdir(target)) == ["part-00000.parquet", "part-00001.parquet"]
    refused = run(table.path, "--parquet", target)
    assert refused.exit_code == 1 and "pass --overwrite" in refused.stderr
    assert run(table.path, "--parquet", target, "--overwrite").exit_code == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "exactly one of --hf DIR, --parquet DIR or --images DIR"),
        (["--columns", "width,nope"], 2, "--columns: unknown column 'nope'"),
        (["--where", "no_such_column = 1"], 1, "--where 'no_such_column = 1': Schema error: No field named"),
        (["--where", "width >"], 1, "--where 'width >': sql parser error"),
        (["--where", "width > 'x'"], 1, "could not convert"),
    ],
)
def test_cli_errors(table: Table, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    target = [] if not args else ["--parquet", str(tmp_path / "out")]
    result = run(table.path, *target, *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert ".rs:" not in result.stderr and "ingest_status = 'ok' AND" not in result.stderr
    assert not (tmp_path / "out").exists()


# --- crop views and image files ----------------------------------------------------------------

BOX_TYPE = CROP_BOX.type


def smooth(seed: int, size: tuple[int, int]) -> Image.Image:
    """Gradients and a wave: a crop one pixel off shows, and JPEG keeps it well."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    wave = 128 + 48 * np.sin((x + 7 * seed) / 5.0) * np.cos(y / 7.0)
    pixels = np.stack([(x * 255 // (w - 1) + 40 * seed) % 256, y * 255 // (h - 1), wave], -1)
    return Image.fromarray(pixels.astype(np.uint8))


def file_bytes(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def upright(data: bytes) -> Image.Image:
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")


def near(a: Image.Image, b: Image.Image) -> bool:
    """Same size, mean difference within JPEG noise (a crop one pixel off is ~3 on these images)."""
    assert a.size == b.size
    return float(np.abs(np.asarray(a.convert("RGB"), float) - np.asarray(b, float)).mean()) < 2.0


@dataclass
class CropCase:
    table: Table
    originals: dict[str, bytes]
    boxes: dict[str, tuple[int, int, int, int]]
    bad: str  # a row whose bytes cannot be decoded, with a box
    rotated: str


@pytest.fixture
def crops(tmp_path: Path) -> CropCase:
    """JPEG and PNG rows in two datasets, some with a crop_box, one EXIF-rotated, one truncated."""
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 120x80, shown 80x120
    images = [file_bytes(smooth(i, (120, 80)), "JPEG", quality=95) for i in range(5)]
    images += [file_bytes(smooth(5, (120, 80)), "PNG")]
    images += [file_bytes(smooth(6, (120, 80)), "JPEG", quality=95, exif=exif.tobytes())]
    rows = pa.concat_tables([table_rows(images[:4], "a"), table_rows(images[4:], "b")])
    bad_bytes = file_bytes(smooth(7, (120, 80)), "JPEG")[:-100]
    bad = pa.table({"id": ["f" * 32], "dataset": ["b"], "image": [bad_bytes], "ingest_status": ["ok"]})
    table = Table.create(tmp_path / "c.lance", ingest_schema())
    table.append(rows)
    table.append(bad)
    ids = rows.column("id").to_pylist()
    boxes = {ids[0]: (10, 5, 70, 65), ids[1]: (0, 0, 120, 80), ids[4]: (50, 10, 110, 70)}
    boxes |= {ids[5]: (30, 20, 90, 80), ids[6]: (10, 30, 70, 110), "f" * 32: (0, 0, 40, 40)}
    table.ensure_columns([CROP_BOX.field()])
    table.write_back(pa.table({"id": list(boxes), "crop_box": pa.array(list(boxes.values()), BOX_TYPE)}))
    return CropCase(table, dict(zip(ids, images)), boxes, "f" * 32, ids[6])


def check_views(case: CropCase, got: dict[str, bytes]) -> None:
    """Boxed rows are their crop (re-encoded like their source), the others their original bytes."""
    assert set(got) == set(case.originals)  # the undecodable row is left out
    for row_id, original in case.originals.items():
        box = case.boxes.get(row_id)
        if box is None or box == (0, 0, 120, 80):
            assert got[row_id] == original
            continue
        out = Image.open(io.BytesIO(got[row_id]))
        assert out.format == Image.open(io.BytesIO(original)).format.replace("MPO", "JPEG")
        assert near(out, upright(original).crop(box))


def test_parquet_and_hf_export_crop_views(crops: CropCase, tmp_path: Path) -> None:
    report = export(crops.table, parquet=tmp_path / "pq")
    assert report.rows == 7 and report.cropped == 5 and report.skipped == {"cannot decode": 1}
    ds = load_parquet(tmp_path / "pq", tmp_path / "cache")
    check_views(crops, raw_images(ds))
    plain = ds.cast_column("image", datasets.Image(decode=False))
    for row in plain:
        fmt = Image.open(io.BytesIO(row["image"]["bytes"])).format
        assert row["image"]["path"] == f"{row['id']}.{'png' if fmt == 'PNG' else 'jpg'}"
        assert row["crop_box"] == (list(crops.boxes[row["id"]]) if row["id"] in crops.boxes else None)
    rotated = ds.filter(lambda r: r["id"] == crops.rotated)[0]["image"]
    assert rotated.size == (60, 80)  # the upright image's crop, its rotation applied

    report = export(crops.table, hf=tmp_path / "hf", columns=["dataset"], workers=1)
    assert report.rows == 7 and report.skipped == {"cannot decode": 1}
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert ds.column_names == ["id", "dataset", "image"]
    check_views(crops, raw_images(ds))


def test_no_crop_exports_the_original_bytes(crops: CropCase, tmp_path: Path) -> None:
    report = export(crops.table, parquet=tmp_path / "pq", view=ViewOptions(crop=False))
    assert report.rows == 8 and report.cropped == 0 and not report.skipped
    got = raw_images(load_parquet(tmp_path / "pq", tmp_path / "cache"))
    assert got == originals(crops.table)  # the undecodable row too: nothing was decoded


def image_files(folder: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != MARKER}


def test_images_export_writes_each_view_in_dataset_folders(crops: CropCase, tmp_path: Path) -> None:
    progress = RecordingProgress()
    report = export(crops.table, images=tmp_path / "img", progress=progress)
    assert report.rows == 7 and report.cropped == 5 and report.skipped == {"cannot decode": 1}
    assert progress.rows == 8 and progress.total == 8 and report.by_dataset and report.file_count == 7
    folders = sorted(p.name for p in (tmp_path / "img").iterdir())
    assert folders == [MARKER, "a", "b"]
    assert sorted(p.name for p in (tmp_path / "img" / "a").iterdir()) == sorted(
        f"{i}.{'jpg'}" for i in list(crops.originals)[:4]
    )
    check_views(crops, image_files(tmp_path / "img"))
    assert report.bytes_written == sum(len(b) for b in image_files(tmp_path / "img").values())
    one = export(crops.table, images=tmp_path / "flat", where="dataset = 'a'")
    assert not one.by_dataset and one.rows == 4 and len(image_files(tmp_path / "flat")) == 4
    assert {p.parent for p in (tmp_path / "flat").rglob("*.jpg")} == {tmp_path / "flat"}


def test_images_size_and_format(crops: CropCase, tmp_path: Path) -> None:
    view = ViewOptions(size=40, format="png", crop=False)
    report = export(crops.table, images=tmp_path / "img", view=view, where="dataset = 'a'")
    files = sorted((tmp_path / "img").glob("[!.]*"))
    assert report.rows == 4 and len(files) == 4 and all(p.suffix == ".png" for p in files)
    assert {Image.open(p).size for p in files} == {(60, 40)}
    export(crops.table, images=tmp_path / "big", view=ViewOptions(size=100), where="dataset = 'a'")
    sizes = {p.stem: Image.open(p).size for p in (tmp_path / "big").glob("*.jpg")}
    # crops of 60 px and whole 80 px images are never enlarged; the full-image box is no crop
    ids = list(crops.originals)
    assert sizes == {ids[0]: (60, 60), ids[1]: (120, 80), ids[2]: (120, 80), ids[3]: (120, 80)}
    export(
        crops.table, images=tmp_path / "up", view=ViewOptions(size=100, upscale=True), where="dataset = 'a'"
    )
    assert {Image.open(p).size for p in (tmp_path / "up").glob("*.jpg")} == {(100, 100), (150, 100)}


def test_images_overwrite_only_replaces_an_images_export(crops: CropCase, tmp_path: Path) -> None:
    target = tmp_path / "img"
    export(crops.table, images=target)
    with pytest.raises(ExportError, match="not empty: pass --overwrite"):
        export(crops.table, images=target)
    report = export(crops.table, images=target, where="dataset = 'a'", overwrite=True)
    assert report.rows == 4 and sorted(p.name for p in target.iterdir())[0] == MARKER
    assert len(image_files(target)) == 4  # the dataset folders of the first export are gone
    (target / "b").mkdir()
    (target / "b" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match=r"did not write \('b'\)"):
        export(crops.table, images=target, overwrite=True)
    photos = tmp_path / "photos"  # image files with no marker are the user's, not an export's
    photos.mkdir()
    (photos / "IMG_0001.jpg").write_bytes(b"x")
    with pytest.raises(ExportError, match="did not write"):
        export(crops.table, images=photos, overwrite=True)
    assert (photos / "IMG_0001.jpg").exists()


def test_images_export_loads_as_an_imagefolder(crops: CropCase, tmp_path: Path) -> None:
    report = export(crops.table, images=tmp_path / "img")
    assert "imagefolder" in report.load_hint()
    ds = datasets.load_dataset(
        "imagefolder", data_dir=str(tmp_path / "img"), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert isinstance(ds, datasets.Dataset) and len(ds) == 7


def test_images_option_errors(crops: CropCase, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--columns and --no-image only apply to --hf and --parquet"):
        export(crops.table, images=tmp_path / "a", columns=["width"])
    with pytest.raises(UsageError, match="exactly one of"):
        export(crops.table, images=tmp_path / "a", hf=tmp_path / "b")
    with pytest.raises(UsageError, match="--workers"):
        export(crops.table, images=tmp_path / "a", workers=0)
    assert not any((tmp_path / n).exists() for n in "ab")


def test_cli_images(crops: CropCase, tmp_path: Path) -> None:
    target = tmp_path / "img"
    result = run(
        crops.table.path, "--images", str(target), "--size", "30", "--format", "png", "--workers", "2"
    )
    assert result.exit_code == 0, result.output
    assert (
        "exported 7 rows, 5 cropped" in result.output and "skipped 1 rows: cannot decode (1)" in result.output
    )
    assert "imagefolder" in result.output
    assert {min(Image.open(p).size) for p in target.rglob("*.png")} == {30}
    bad = run(crops.table.path, "--images", str(tmp_path / "x"), "--format", "gif")
    assert bad.exit_code == 2 and "--format must be png or jpg, not 'gif'" in bad.stderr
    refused = run(crops.table.path, "--images", str(tmp_path / "y"), "--columns", "width")
    assert refused.exit_code == 2 and "--images writes images" in refused.stderr


class FailingProgress(RecordingProgress):
    """Interrupts the export after the first batch."""

    def advance(self, rows: int, errors: int) -> None:
        raise KeyboardInterrupt


def test_an_interrupted_images_export_removes_its_files(crops: CropCase, tmp_path: Path) -> None:
    target = tmp_path / "img"
    with pytest.raises(KeyboardInterrupt):
        export(crops.table, images=target, progress=FailingProgress())
    assert list(target.iterdir()) == []
