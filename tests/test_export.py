"""`export`: round trips through `datasets` with byte-identical images, row and column selection, safety."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner, Result

from vlcli.cli import export as export_cli
from vlcli.errors import ExportError, QueryError, UsageError
from vlcli.export import export
from vlcli.schema import ingest_schema
from vlcli.storage import Table


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


def test_option_errors(table: Table, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="exactly one of --hf DIR or --parquet DIR"):
        export(table)
    with pytest.raises(UsageError, match="exactly one of --hf DIR or --parquet DIR"):
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
        ([], 2, "exactly one of --hf DIR or --parquet DIR"),
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
