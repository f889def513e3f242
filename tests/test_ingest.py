"""`vl ingest`: every source kind, dataset naming, idempotence, duplicates, carried columns, errors, CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import jpeg_bytes
from typer.testing import CliRunner, Result

from vlcli.cli.app import app
from vlcli.errors import SourceError, UsageError
from vlcli.images import content_id, source_id
from vlcli.ingestion.ingest import IngestOptions, IngestReport, ingest, ingest_source
from vlcli.ingestion.sources import HubSource
from vlcli.table.storage import Table

COLUMNS = ["id", "source", "dataset", "image", "width", "height", "format", "file_size", "ingest_status"]


def rows_of(table: Path | Table, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """The table's rows, sorted by source."""
    t = table if isinstance(table, Table) else Table.open(table)
    return sorted(t.to_arrow(columns or COLUMNS).to_pylist(), key=lambda r: r["source"])


def write(path: Path, data: bytes) -> Path:
    """Write `data` to `path`, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


class Recorder:
    """A Progress that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def start(self, step: str, total: int | None) -> None:
        self.calls.append(("start", step, total))

    def advance(self, rows: int, errors: int) -> None:
        self.calls.append(("advance", rows, errors))

    def finish(self) -> None:
        self.calls.append(("finish",))

    def advanced(self) -> tuple[int, int]:
        """Total rows and errors reported through `advance`."""
        steps = [c for c in self.calls if c[0] == "advance"]
        return sum(c[1] for c in steps), sum(c[2] for c in steps)


# --- Hugging Face and Parquet fixtures -------------------------------------------------------

IMAGES = [jpeg_bytes(100 + i, (32 + i, 24)) for i in range(5)]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved DatasetDict (train: 3 rows, test: 2 rows) with an Image feature and columns to carry."""
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["cat", "dog"]),
            "tags": datasets.Sequence(datasets.Value("string")),
        }
    )

    def split(images: list[bytes], offset: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {
                "image": [{"bytes": b, "path": None} for b in images],
                "caption": [f"caption {offset + i}" for i in range(len(images))],
                "label": [(offset + i) % 2 for i in range(len(images))],
                "tags": [["a", str(offset + i)] for i in range(len(images))],
            },
            features=features,
        )

    folder = tmp_path_factory.mktemp("hf") / "pets"
    datasets.DatasetDict({"train": split(IMAGES[:3], 0), "test": split(IMAGES[3:], 3)}).save_to_disk(
        str(folder)
    )
    return folder


@pytest.fixture(scope="module")
def parquet_dir(hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The train split as hub-style Parquet shards (Image feature in the schema metadata)."""
    import datasets

    folder = tmp_path_factory.mktemp("pq") / "pets-parquet"
    train = datasets.load_from_disk(str(hf_dir))["train"]
    train.select([0, 1]).to_parquet(str(folder / "train-00000-of-00002.parquet"))
    train.select([2]).to_parquet(str(folder / "train-00001-of-00002.parquet"))
    return folder


def plain_parquet(path: Path, **columns: list[Any]) -> Path:
    """A Parquet file written straight from Arrow (no Hugging Face metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


# --- folders ---------------------------------------------------------------------------------


def test_folder_rows_hold_the_original_bytes_and_header_facts(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    files = {
        "a.jpg": jpeg_bytes(1, (64, 48)),
        "sub/b.jpeg": jpeg_bytes(2, (30, 40)),
        "sub/deeper/c.JPG": jpeg_bytes(3),
    }
    for name, data in files.items():
        write(folder / name, data)
    write(folder / "notes.txt", b"not an image")
    write(folder / ".hidden.jpg", jpeg_bytes(4))
    write(folder / ".cache" / "d.jpg", jpeg_bytes(5))

    report = ingest(folder, tmp_path / "t.lance")

    assert (report.seen, report.added, report.duplicates, report.errors) == (3, 3, 0, 0)
    assert report.ignored == 1 and report.ignored_extensions == {".txt": 1}
    assert report.bytes_read == sum(len(d) for d in files.values())
    expected = sorted((str(folder / name), content_id(data), data, len(data)) for name, data in files.items())
    rows = rows_of(tmp_path / "t.lance")
    assert [(r["source"], r["id"], r["image"], r["file_size"]) for r in rows] == expected
    assert {r["dataset"] for r in rows} == {"photos"}
    assert {r["ingest_status"] for r in rows} == {"ok"}
    assert (rows[0]["width"], rows[0]["height"], rows[0]["format"]) == (64, 48, "JPEG")


def test_a_dangling_link_gets_an_error_row(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    write(folder / "a.jpg", jpeg_bytes(1))
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    report = ingest(folder, tmp_path / "t.lance")
    assert (report.added, report.errors) == (1, 1)
    assert rows_of(tmp_path / "t.lance")[1]["ingest_status"] == "error: file not found"


def test_data_layout_names_the_dataset_and_dataset_option_overrides(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write(data / "cats" / "train" / "a.jpg", jpeg_bytes(1))
    write(data / "dogs" / "train" / "sub" / "b.jpg", jpeg_bytes(2))
    write(data / "loose.jpg", jpeg_bytes(3))

    ingest(data, tmp_path / "t.lance")
    by_name = {Path(r["source"]).name: r["dataset"] for r in rows_of(tmp_path / "t.lance")}
    assert by_name == {"a.jpg": "cats", "b.jpg": "dogs", "loose.jpg": "data"}

    ingest(data / "cats" / "train", tmp_path / "u.lance")  # SRC is the train folder itself
    assert {r["dataset"] for r in rows_of(tmp_path / "u.lance")} == {"cats"}

    ingest(data, tmp_path / "v.lance", IngestOptions(dataset="mine"))
    assert {r["dataset"] for r in rows_of(tmp_path / "v.lance")} == {"mine"}


def test_reingesting_adds_nothing_and_leaves_the_rows_unchanged(
    image_folder: Callable[..., Path], tmp_path: Path
) -> None:
    folder = image_folder(6)
    write(folder / "broken.jpg", b"nope")
    first = ingest(folder, tmp_path / "t.lance")
    before = rows_of(tmp_path / "t.lance")

    again = ingest(folder, tmp_path / "t.lance")

    assert (first.added, first.errors) == (6, 1)
    assert (again.seen, again.added, again.duplicates, again.errors, again.already_in_table) == (
        7,
        0,
        6,
        1,
        6,
    )
    assert rows_of(tmp_path / "t.lance") == before


def test_every_item_seen_is_counted_in_exactly_one_bucket(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    for i in range(3):
        write(folder / f"{i}.jpg", jpeg_bytes(i))
    write(folder / "copy.jpg", jpeg_bytes(0))
    write(folder / "broken.jpg", b"not an image")
    write(folder / "notes.txt", b"ignored: no image extension")

    first = ingest(folder, tmp_path / "t.lance")
    again = ingest(folder, tmp_path / "t.lance")

    # 5 image files: on the first run 3 new images, 1 copy of one of them, 1 broken file
    assert (first.seen, first.added, first.duplicates, first.errors, first.ignored) == (5, 3, 1, 1, 1)
    # the second run: the same 5, and the broken one is still an error, not also a duplicate
    assert (again.seen, again.added, again.duplicates, again.errors, again.ignored) == (5, 0, 4, 1, 1)
    for report in (first, again):
        assert report.seen == report.added + report.duplicates + report.errors
    assert Table.open(tmp_path / "t.lance").count() == 4  # 3 images and the broken file's error row


def test_identical_files_are_stored_once_and_reported(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    write(folder / "a.jpg", jpeg_bytes(1))
    write(folder / "b.jpg", jpeg_bytes(2))
    write(folder / "copy" / "a-again.jpg", jpeg_bytes(1))

    report = ingest(folder, tmp_path / "t.lance")

    assert (report.seen, report.added, report.duplicates, report.already_in_table) == (3, 2, 1, 0)
    sources = [r["source"] for r in rows_of(tmp_path / "t.lance")]
    assert sources == [str(folder / "a.jpg"), str(folder / "b.jpg")]  # the first in walk order is kept


def test_rows_are_appended_in_batches_with_progress(
    image_folder: Callable[..., Path], tmp_path: Path
) -> None:
    folder = image_folder(10)
    write(folder / "bad.png", b"")
    progress = Recorder()

    report = ingest(folder, tmp_path / "t.lance", IngestOptions(batch_rows=3), progress)

    table = Table.open(tmp_path / "t.lance")
    # ceil(11 / 3) batches; the one holding bad.png appends its error row apart (one more commit)
    assert table.count() == 11 and len(table.fragment_ids()) == 5
    assert progress.calls[0] == ("start", "ingest", 11)
    assert progress.calls[-1] == ("finish",)
    assert progress.advanced() == (11, 1)
    assert (report.added, report.errors) == (10, 1)


def test_batch_bytes_caps_an_append(image_folder: Callable[..., Path], tmp_path: Path) -> None:
    ingest(image_folder(3), tmp_path / "t.lance", IngestOptions(batch_bytes=1))
    assert len(Table.open(tmp_path / "t.lance").fragment_ids()) == 3


def test_the_run_is_recorded_in_metadata_and_tagged(
    image_folder: Callable[..., Path], tmp_path: Path
) -> None:
    folder = image_folder(2)
    ingest(folder, tmp_path / "t.lance")
    table = Table.open(tmp_path / "t.lance")
    last = table.metadata()["ingest.last"]
    assert last["source"] == str(folder) and last["kind"] == "folder"
    assert (last["seen"], last["added"], last["errors"]) == (2, 2, 0)
    assert any(name.startswith("ingest-v") for name in table.tags())


def test_ingest_into_an_open_table(
    make_table: Callable[..., Table], image_folder: Callable[..., Path]
) -> None:
    table = make_table(3)
    report = ingest(image_folder(5), table)
    assert report.added == 2 and report.duplicates == 3  # conftest's images 0..2 are already there
    assert table.count() == 5


def test_a_single_image_file(tmp_path: Path) -> None:
    path = write(tmp_path / "pics" / "one.png", jpeg_bytes(9))
    report = ingest(path, tmp_path / "t.lance")
    assert report.added == 1
    assert rows_of(tmp_path / "t.lance")[0]["dataset"] == "pics"


# --- lists of paths --------------------------------------------------------------------------


def test_a_text_file_of_paths(tmp_path: Path) -> None:
    a = write(tmp_path / "imgs" / "a.jpg", jpeg_bytes(1))
    b = write(tmp_path / "elsewhere" / "b.jpg", jpeg_bytes(2))
    (tmp_path / "imgs" / "folder.jpg").mkdir()
    listing = tmp_path / "imgs" / "list.txt"
    listing.write_text(f"# my picks\na.jpg\n\n  {b}  \nmissing.jpg\nfolder.jpg\na.jpg\n")

    report = ingest(listing, tmp_path / "t.lance")

    assert (report.seen, report.added, report.duplicates, report.errors) == (5, 2, 1, 2)
    rows = {r["source"]: r for r in rows_of(tmp_path / "t.lance")}
    assert rows[str(a)]["image"] == a.read_bytes() and rows[str(b)]["ingest_status"] == "ok"
    missing = rows[str(tmp_path / "imgs" / "missing.jpg")]
    assert missing["ingest_status"] == "error: file not found" and missing["image"] is None
    assert missing["id"] == source_id(missing["source"])
    assert rows[str(tmp_path / "imgs" / "folder.jpg")]["ingest_status"] == "error: is a folder, not a file"
    assert {r["dataset"] for r in rows.values()} == {"list"}
    assert ingest(listing, tmp_path / "t.lance").added == 0


def test_a_list_without_paths_is_a_source_error(tmp_path: Path) -> None:
    listing = tmp_path / "empty.txt"
    listing.write_text("# nothing here\n\n")
    with pytest.raises(SourceError, match="lists no paths"):
        ingest(listing, tmp_path / "t.lance")


# --- Parquet ---------------------------------------------------------------------------------


def test_a_parquet_file_with_an_image_feature(parquet_dir: Path, tmp_path: Path) -> None:
    shard = parquet_dir / "train-00000-of-00002.parquet"
    report = ingest(shard, tmp_path / "t.lance", IngestOptions(keep_columns=("caption", "label")))

    assert report.added == 2
    rows = rows_of(tmp_path / "t.lance", [*COLUMNS, "caption", "label"])
    assert [r["source"] for r in rows] == [f"{shard}#0", f"{shard}#1"]
    assert [r["image"] for r in rows] == IMAGES[:2]
    assert [(r["caption"], r["label"]) for r in rows] == [("caption 0", 0), ("caption 1", 1)]
    assert {r["dataset"] for r in rows} == {"train-00000-of-00002"}
    schema = Table.open(tmp_path / "t.lance").schema
    assert schema.field("caption").type == pa.string() and schema.field("label").type == pa.int64()


def test_a_folder_of_parquet_files_with_plain_binary_columns(tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    plain_parquet(folder / "a.parquet", thumb=[b"x", b"y"], image=IMAGES[:2], label=[1, 2])
    plain_parquet(folder / "more" / "b.parquet", thumb=[b"z"], image=[IMAGES[2]], label=[3])

    report = ingest(folder, tmp_path / "t.lance", IngestOptions(keep_columns=("label",)))

    assert (report.added, report.errors) == (3, 0)  # "image" is preferred over "thumb"
    rows = rows_of(tmp_path / "t.lance", ["source", "image", "label", "dataset"])
    assert [r["source"] for r in rows] == [
        f"{folder}/a.parquet#0",
        f"{folder}/a.parquet#1",
        f"{folder}/more/b.parquet#0",
    ]
    assert [r["image"] for r in rows] == IMAGES[:3] and [r["label"] for r in rows] == [1, 2, 3]
    assert {r["dataset"] for r in rows} == {"shards"}

    override = ingest(folder, tmp_path / "u.lance", IngestOptions(image_column="thumb"))
    assert override.errors == 3 and override.reasons == {"error: not an image": 3}


def test_a_source_without_an_image_column_names_its_columns(tmp_path: Path) -> None:
    path = plain_parquet(tmp_path / "meta.parquet", caption=["a"], n=[1])
    with pytest.raises(
        SourceError, match=r"no image column .*caption \(string\), n \(int64\).*--image-column"
    ):
        ingest(path, tmp_path / "t.lance")


@pytest.mark.parametrize(
    ("column", "message"), [("nope", "--image-column: no column 'nope'"), ("caption", "not image bytes")]
)
def test_bad_image_column_overrides_are_usage_errors(tmp_path: Path, column: str, message: str) -> None:
    path = plain_parquet(tmp_path / "p.parquet", image=IMAGES[:1], caption=["a"])
    with pytest.raises(UsageError, match=message):
        ingest(path, tmp_path / "t.lance", IngestOptions(image_column=column))


# --- saved Hugging Face datasets ---------------------------------------------------------------


def test_a_saved_dataset_dict_split_with_carried_columns(hf_dir: Path, tmp_path: Path) -> None:
    options = IngestOptions(split="test", keep_columns=("caption", "label", "tags"))
    report = ingest(hf_dir, tmp_path / "t.lance", options)

    assert report.added == 2
    rows = rows_of(tmp_path / "t.lance", [*COLUMNS, "caption", "label", "tags"])
    assert [r["source"] for r in rows] == [f"{hf_dir}#test/0", f"{hf_dir}#test/1"]
    assert [r["image"] for r in rows] == IMAGES[3:]
    assert [r["id"] for r in rows] == [content_id(b) for b in IMAGES[3:]]
    assert [(r["caption"], r["label"], r["tags"]) for r in rows] == [
        ("caption 3", 1, ["a", "3"]),
        ("caption 4", 0, ["a", "4"]),
    ]
    assert {r["dataset"] for r in rows} == {"pets"}
    schema = Table.open(tmp_path / "t.lance").schema
    assert schema.field("label").type == pa.int64()
    assert schema.field("tags").type == pa.list_(pa.string())


def test_an_unknown_split_lists_the_splits(hf_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--split: no split 'validation' .*splits: train, test"):
        ingest(hf_dir, tmp_path / "t.lance", IngestOptions(split="validation"))


def test_a_row_without_an_image_gets_an_error_row(tmp_path: Path) -> None:
    import datasets

    folder = tmp_path / "holes"
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": IMAGES[0], "path": None}, None]},
        features=datasets.Features({"image": datasets.Image()}),
    )
    ds.save_to_disk(str(folder))

    report = ingest(folder, tmp_path / "t.lance")

    assert (report.added, report.errors) == (1, 1)
    statuses = [r["ingest_status"] for r in rows_of(tmp_path / "t.lance")]
    assert statuses == ["ok", "error: no image in this row"]


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (("id",), "--keep-columns: 'id' is a vl column name"),
        (("nope",), "--keep-columns: no column 'nope'.*caption"),
        (("image",), "--keep-columns: 'image' is the image column"),
    ],
)
def test_bad_keep_columns_are_usage_errors(
    hf_dir: Path, tmp_path: Path, keep: tuple[str, ...], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        ingest(hf_dir, tmp_path / "t.lance", IngestOptions(keep_columns=keep))
    assert not (tmp_path / "t.lance").exists()  # nothing created for a bad command


def test_keep_columns_do_not_apply_to_image_folders(
    image_folder: Callable[..., Path], tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="--keep-columns applies to Parquet and Hugging Face"):
        ingest(image_folder(1), tmp_path / "t.lance", IngestOptions(keep_columns=("caption",)))


def test_carried_columns_new_to_a_table_are_added(
    hf_dir: Path, image_folder: Callable[..., Path], tmp_path: Path
) -> None:
    ingest(image_folder(2), tmp_path / "t.lance")
    ingest(hf_dir, tmp_path / "t.lance", IngestOptions(keep_columns=("caption",)))
    rows = rows_of(tmp_path / "t.lance", ["source", "caption"])
    assert sorted(r["caption"] or "" for r in rows) == ["", "", "caption 0", "caption 1", "caption 2"]


def test_a_carried_column_of_another_type_is_refused(hf_dir: Path, tmp_path: Path) -> None:
    ingest(hf_dir, tmp_path / "t.lance", IngestOptions(keep_columns=("label",)))
    other = plain_parquet(tmp_path / "p.parquet", image=[jpeg_bytes(50)], label=["a string"])
    with pytest.raises(UsageError, match="--keep-columns: column 'label' is int64 in the table but string"):
        ingest(other, tmp_path / "t.lance", IngestOptions(keep_columns=("label",)))


# --- the hub reader, pointed at a local folder (never downloads) -----------------------------


def test_the_hub_reader_streams_with_hub_sources(parquet_dir: Path, tmp_path: Path) -> None:
    progress = Recorder()
    source = HubSource(str(parquet_dir), split="train", keep=("caption",))

    report = ingest_source(source, tmp_path / "t.lance", progress=progress)

    assert report.added == 3 and progress.calls[0] == ("start", "ingest", None)
    rows = rows_of(tmp_path / "t.lance", ["source", "image", "caption", "dataset"])
    assert [r["source"] for r in rows] == [f"hf://{parquet_dir}/train#{i}" for i in range(3)]
    assert [r["image"] for r in rows] == IMAGES[:3]
    assert [r["caption"] for r in rows] == ["caption 0", "caption 1", "caption 2"]
    assert {r["dataset"] for r in rows} == {"pets-parquet"}


def test_the_hub_reader_reports_a_bad_split(parquet_dir: Path) -> None:
    with pytest.raises(UsageError, match="--split: Bad split: nope"):
        HubSource(str(parquet_dir), split="nope")


def test_an_unreachable_hub_id_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a file or folder, and the hub dataset cannot be opened"):
        ingest("no-such-owner/no-such-dataset", tmp_path / "t.lance")


# --- sources that cannot be ingested -------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing" / "dir" / "x", "no such file or folder"),
        (lambda p: write(p / "archive.zip", b"PK"), "unsupported source"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "it is empty"),
        (lambda p: write(p / "docs" / "a.txt", b"x").parent, "only 1 files without an image extension"),
    ],
    ids=["missing", "zip", "empty-folder", "no-images"],
)
def test_unusable_sources_say_what_to_pass(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    with pytest.raises(SourceError, match=message) as info:
        ingest(make(tmp_path), tmp_path / "t.lance")
    assert "pass a folder of images" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "t.lance").exists()


def test_a_table_given_as_source_hints_at_the_argument_order(
    image_folder: Callable[..., Path], tmp_path: Path
) -> None:
    ingest(image_folder(1), tmp_path / "t.lance")
    with pytest.raises(
        SourceError, match="is a Lance table, not a source: the order is `vl ingest SRC TABLE`"
    ):
        ingest(tmp_path / "t.lance", tmp_path / "u.lance")


def test_a_table_path_holding_other_files_is_refused(
    image_folder: Callable[..., Path], tmp_path: Path
) -> None:
    folder = image_folder(1)
    with pytest.raises(UsageError, match="exists and is not a vl table"):
        ingest(folder, folder)
    (tmp_path / "empty").mkdir()
    assert ingest(folder, tmp_path / "empty").added == 1  # an empty folder is fine
    with pytest.raises(UsageError, match="exists and is not a vl table"):
        ingest(folder, folder.resolve().as_uri())  # a file:// URI names the same folder


# --- the command line ------------------------------------------------------------------------


def vl(*args: str) -> Result:
    """Run `vl ingest ARGS` on the real `vl` application."""
    return CliRunner().invoke(app, ["ingest", *args])


def test_cli_prints_a_summary(image_folder: Callable[..., Path], tmp_path: Path) -> None:
    folder = image_folder(3)
    write(folder / "bad.jpg", b"text")
    write(folder / "readme.md", b"# hi")
    write(folder / "again.jpg", jpeg_bytes(0))

    result = vl(str(folder), str(tmp_path / "t.lance"), "--quiet")

    assert result.exit_code == 0, result.output
    assert "ingest: 5 seen = 3 added + 1 duplicate + 1 error; 1 ignored;" in result.output
    assert "duplicates: 0 already in the table, 1 identical to an earlier item of this run" in result.output
    assert "error: not an image" in result.output
    assert "ignored 1 files without an image extension (.md 1)" in result.output
    assert "MB/s" in result.output


def test_cli_carries_comma_separated_columns(hf_dir: Path, tmp_path: Path) -> None:
    result = vl(
        str(hf_dir), str(tmp_path / "t.lance"), "--keep-columns", "caption, label", "--split", "test", "-q"
    )
    assert result.exit_code == 0, result.output
    assert {"caption", "label"} <= set(Table.open(tmp_path / "t.lance").schema.names)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    result = vl(str(tmp_path / "nowhere" / "pics"), str(tmp_path / "t.lance"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no such file or folder")
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_usage_errors_name_the_flag(image_folder: Callable[..., Path], tmp_path: Path) -> None:
    result = vl(str(image_folder(1)), str(tmp_path / "t.lance"), "--keep-columns", "caption")
    assert result.exit_code == 2 and "--keep-columns" in result.stderr


def test_report_speed_is_bytes_over_seconds() -> None:
    assert IngestReport(bytes_read=3_000_000, seconds=2.0).mb_per_second == 1.5
    assert IngestReport().mb_per_second == 0.0
