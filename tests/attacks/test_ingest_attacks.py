"""Attacks on `vl ingest` and the table: concurrent ingests, special files, hostile paths, orphans, read-only
storage. Each test pins one finding of issue 11 (items 15, 17, 20, 21, 24, 25)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import jpeg_bytes, table_rows
from typer.testing import CliRunner, Result

import vlcli.ingestion.ingest as ingest_module
from vlcli.cli.app import app
from vlcli.images import content_id
from vlcli.ingestion.ingest import IngestOptions, ingest, ingest_source
from vlcli.ingestion.sources import FolderSource, Record
from vlcli.table.schema import FILTER_STATUS, ingest_schema
from vlcli.table.storage import Table

COLUMNS = ["id", "source", "image", "file_size", "ingest_status"]


def write(path: Path, data: bytes) -> Path:
    """Write `data` to `path`, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def rows_by_name(table: Path) -> dict[str, dict[str, Any]]:
    """The table's rows keyed on the file name of their source."""
    rows = Table.open(table).to_arrow(COLUMNS).to_pylist()
    return {Path(r["source"].split("#")[0]).name: r for r in rows}


def cli(*args: str) -> Result:
    """Run `vl` in-process."""
    return CliRunner().invoke(app, list(args))


def assert_one_line_error(result: Result, *words: str) -> None:
    """rc 1 and a single `error:` line naming `words`: no traceback, no Rust source path."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output and ".rs:" not in result.output
    for word in words:
        assert word in lines[0], lines[0]


# --- 15: concurrent ingests, duplicate ids, repair -------------------------------------------


class GatedFolder(FolderSource):
    """A folder source that waits at a barrier before yielding: both runs load the table's ids first."""

    def __init__(self, root: Path, barrier: threading.Barrier) -> None:
        super().__init__(str(root))
        self.barrier = barrier

    def records(self) -> Iterator[Record]:
        """The folder's records, once every gated run has started."""
        self.barrier.wait(timeout=60)
        return super().records()


def test_two_ingests_at_once_store_each_image_once(image_folder: Any, tmp_path: Path) -> None:
    folder = image_folder(10)
    path = tmp_path / "t.lance"
    Table.create(path, ingest_schema())
    barrier = threading.Barrier(2)
    reports: list[Any] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(ingest_source(GatedFolder(folder, barrier), path, IngestOptions(batch_rows=3)))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert failures == []
    ids = Table.open(path).to_arrow(["id"])["id"].to_pylist()
    assert len(ids) == len(set(ids)) == 10
    assert sum(r.added for r in reports) == 10 and sum(r.duplicates for r in reports) == 10


def _duplicated_table(path: Path) -> Table:
    """Four images; the first two stored twice, the second copies with filter_status filled."""
    table = Table.create(path, ingest_schema())
    rows = table_rows([jpeg_bytes(i) for i in range(4)])
    table.append(rows)
    table.ensure_columns([FILTER_STATUS.field()])
    table.append(rows.slice(0, 2).append_column("filter_status", pa.array(["ok", "ok"])))
    return table


def test_repair_removes_duplicate_ids_keeping_the_copy_with_most_work(tmp_path: Path) -> None:
    from vlcli.table.repair import repair

    _duplicated_table(tmp_path / "t.lance")

    report = repair(tmp_path / "t.lance")

    rows = Table.open(tmp_path / "t.lance").to_arrow(["id", "filter_status"]).to_pylist()
    assert report.duplicates_removed == 2
    assert len(rows) == len({r["id"] for r in rows}) == 4
    status = {r["id"]: r["filter_status"] for r in rows}
    assert [status[content_id(jpeg_bytes(i))] for i in range(4)] == ["ok", "ok", None, None]
    assert repair(tmp_path / "t.lance").duplicates_removed == 0


def test_a_step_on_duplicated_ids_says_to_run_repair(tmp_path: Path) -> None:
    from vlcli.errors import DuplicateIdsError

    table = _duplicated_table(tmp_path / "t.lance")
    ids = table.to_arrow(["id"])["id"]
    with pytest.raises(DuplicateIdsError, match="vl repair"):
        table.write_back(pa.table({"id": ids, "filter_status": pa.array(["ok"] * len(ids))}))

    result = cli("filter", str(tmp_path / "t.lance"), "--nsfw", "none")
    assert_one_line_error(result, "vl repair", "same id")

    result = cli("repair", str(tmp_path / "t.lance"))
    assert result.exit_code == 0, result.output
    assert "2 duplicate rows removed" in result.output
    assert cli("filter", str(tmp_path / "t.lance"), "--nsfw", "none").exit_code == 0


# --- 17 and 20: what a folder can hold ---------------------------------------------------------


def test_special_files_get_error_rows_and_are_never_opened(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    write(folder / "a.jpg", jpeg_bytes(1))
    os.mkfifo(folder / "fifo.jpg")  # opening it for reading would block forever
    (folder / "zero.jpg").symlink_to("/dev/zero")  # reading it would never end
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "linked-folder").symlink_to(tmp_path)  # not followed: counted as ignored

    report = ingest(folder, tmp_path / "t.lance")

    rows = rows_by_name(tmp_path / "t.lance")
    assert rows["a.jpg"]["ingest_status"] == "ok"
    assert rows["fifo.jpg"]["ingest_status"] == "error: not a regular file (a FIFO)"
    assert rows["zero.jpg"]["ingest_status"] == "error: not a regular file (a character device)"
    assert rows["loop.jpg"]["ingest_status"].startswith("error: cannot read file (Too many levels")
    assert (report.seen, report.added, report.errors, report.ignored) == (4, 1, 3, 1)


def test_an_unreadable_subfolder_gets_an_error_row_and_the_rest_is_ingested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "imgs"
    write(folder / "a.jpg", jpeg_bytes(1))
    write(folder / "locked" / "b.jpg", jpeg_bytes(2))
    write(folder / "z" / "c.jpg", jpeg_bytes(3))
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        # Tests run as root, which permission bits do not stop: refuse the one folder here instead.
        if os.fspath(path) == str(folder / "locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = ingest(folder, tmp_path / "t.lance")

    rows = rows_by_name(tmp_path / "t.lance")
    assert rows["locked"]["ingest_status"] == "error: cannot list folder (Permission denied)"
    assert (rows["a.jpg"]["ingest_status"], rows["c.jpg"]["ingest_status"]) == ("ok", "ok")
    assert (report.seen, report.added, report.errors) == (3, 2, 1)


def test_a_file_over_max_file_size_is_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    write(folder / "a.jpg", jpeg_bytes(1))
    with open(folder / "huge.jpg", "wb") as f:
        f.truncate(300 * 2**20)  # sparse: 300 MB on paper, nothing on disk
    report = ingest(folder, tmp_path / "t.lance")

    rows = rows_by_name(tmp_path / "t.lance")
    assert rows["huge.jpg"]["ingest_status"] == (
        "error: file too large: 314,572,800 bytes > max_file_size 268,435,456 (raise --max-file-size to read it)"
    )
    assert rows["huge.jpg"]["file_size"] == 300 * 2**20 and rows["huge.jpg"]["image"] is None
    assert rows["a.jpg"]["ingest_status"] == "ok"
    assert report.bytes_read == len(jpeg_bytes(1))

    small = ingest(folder, tmp_path / "u.lance", IngestOptions(max_file_size=100))
    assert small.reasons == {"error: file too large": 2}


def test_a_memory_error_on_one_file_keeps_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "imgs"
    for i in range(3):
        write(folder / f"{i}.jpg", jpeg_bytes(i))
    real_read = ingest_module._read

    def read(path: str, *args: Any) -> bytes:
        # A real MemoryError needs a file larger than memory: raise it for one file instead.
        if path.endswith("1.jpg"):
            raise MemoryError
        return real_read(path, *args)

    monkeypatch.setattr(ingest_module, "_read", read)
    report = ingest(folder, tmp_path / "t.lance")

    rows = rows_by_name(tmp_path / "t.lance")
    assert rows["1.jpg"]["ingest_status"] == "error: out of memory reading the file"
    assert (rows["0.jpg"]["ingest_status"], rows["2.jpg"]["ingest_status"]) == ("ok", "ok")
    assert (report.added, report.errors) == (2, 1)


def test_listed_special_files_are_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.jpg")
    listing = write(tmp_path / "list.txt", b"/dev/zero\nfifo.jpg\n")
    report = ingest(listing, tmp_path / "t.lance")
    statuses = sorted(r["ingest_status"] for r in rows_by_name(tmp_path / "t.lance").values())
    assert statuses == [
        "error: not a regular file (a FIFO)",
        "error: not a regular file (a character device)",
    ]
    assert report.errors == 2


# --- 21: image cells that hold only a path -----------------------------------------------------


def _path_parquet(folder: Path, *paths: str) -> Path:
    """A Parquet file whose image column holds {bytes: NULL, path} cells."""
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = pa.array([{"bytes": None, "path": p} for p in paths], type=image)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"image": cells}), folder / "rows.parquet")
    return folder / "rows.parquet"


def test_path_cells_resolve_inside_the_dataset_and_outside_paths_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = tmp_path / "ds"
    write(dataset / "imgs" / "a.jpg", jpeg_bytes(1))
    write(tmp_path / "outside.jpg", jpeg_bytes(2))
    (dataset / "imgs" / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    source = _path_parquet(dataset, "imgs/a.jpg", "/etc/passwd", "../outside.jpg", "imgs/link.jpg")
    monkeypatch.chdir(tmp_path)  # relative paths must not resolve against the current folder

    ingest(source, tmp_path / "t.lance")

    rows = Table.open(tmp_path / "t.lance").to_arrow(COLUMNS).to_pylist()
    by_row = {int(r["source"].rsplit("#", 1)[1]): r for r in rows}
    assert by_row[0]["ingest_status"] == "ok" and by_row[0]["image"] == jpeg_bytes(1)
    for i, path in ((1, "/etc/passwd"), (2, "../outside.jpg"), (3, "imgs/link.jpg")):
        assert by_row[i]["ingest_status"] == (
            f"error: image path outside the dataset folder ({path!r}); pass --allow-external-paths to read it"
        )
        assert by_row[i]["file_size"] is None and by_row[i]["image"] is None

    allowed = ingest(source, tmp_path / "u.lance", IngestOptions(allow_external_paths=True))
    # a.jpg and outside.jpg added, the link to outside.jpg a duplicate, /etc/passwd read: not an image
    assert (allowed.added, allowed.duplicates, allowed.errors) == (2, 1, 1)


def test_cli_allows_external_paths_on_request(tmp_path: Path) -> None:
    write(tmp_path / "outside.jpg", jpeg_bytes(2))
    source = _path_parquet(tmp_path / "ds", str(tmp_path / "outside.jpg"))
    result = cli("ingest", str(source), str(tmp_path / "t.lance"), "--allow-external-paths", "-q")
    assert result.exit_code == 0, result.output
    assert "1 added" in result.output


# --- 24: temp files an interrupted run left behind ---------------------------------------------


def test_orphan_temp_files_are_removed_by_the_next_run_but_fresh_ones_are_kept(
    image_folder: Any, tmp_path: Path
) -> None:
    folder = image_folder(3)
    table = tmp_path / "t.lance"
    ingest(folder, table)
    orphan = write(table / "data" / ".tmpOrphan", b"x" * 1000)
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    fresh = write(table / "data" / ".tmpWriting", b"y" * 10)  # a concurrent writer's file: too young

    report = ingest(folder, table)

    assert not orphan.exists() and fresh.exists()
    assert report.temp_files_removed == 1
    result = cli("repair", str(table), "--temp-age", "0")
    assert result.exit_code == 0, result.output
    assert "1 temporary file" in result.output and not fresh.exists()
    assert Table.open(table).count() == 3


# --- 25: storage that cannot be written --------------------------------------------------------


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make every folder under `path` unwritable, even for root (chattr +i), and undo it afterwards."""
    folders = [str(path)] + [os.path.join(root, d) for root, dirs, _ in os.walk(path) for d in dirs]
    if os.geteuid() != 0:
        for f in folders:
            os.chmod(f, 0o555)
        try:
            yield
        finally:
            for f in folders:
                os.chmod(f, 0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", *folders], capture_output=True).returncode != 0:
        pytest.skip("root ignores permission bits and chattr +i is unavailable here")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", *folders], check=True)


def test_ingest_into_a_read_only_table_is_one_line(image_folder: Any, tmp_path: Path) -> None:
    folder = image_folder(2)
    table = tmp_path / "t.lance"
    ingest(folder, table)
    write(folder / "new.jpg", jpeg_bytes(99))
    with read_only(table):
        result = cli("ingest", str(folder), str(table), "-q")
    assert_one_line_error(result, str(table), "not writable")


def test_a_step_on_a_read_only_table_is_one_line(image_folder: Any, tmp_path: Path) -> None:
    table = tmp_path / "t.lance"
    ingest(image_folder(2), table)
    with read_only(table):
        result = cli("filter", str(table), "--nsfw", "none")
    assert_one_line_error(result, str(table), "not writable")


def test_export_into_a_read_only_folder_is_one_line(image_folder: Any, tmp_path: Path) -> None:
    table = tmp_path / "t.lance"
    ingest(image_folder(2), table)
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        result = cli("export", str(table), "--parquet", str(out / "shards"))
    assert_one_line_error(result, str(out / "shards"), "not writable")


class VanishingTable(FolderSource):
    """A folder source that deletes the table after its first records: the table goes away mid-run."""

    def __init__(self, root: Path, table: Path) -> None:
        super().__init__(str(root))
        self.table = table

    def records(self) -> Iterator[Record]:
        """Yield two records, delete the table, yield the rest."""
        for i, record in enumerate(super().records()):
            if i == 2:
                shutil.rmtree(self.table)
            yield record


def test_a_table_deleted_during_ingest_is_a_clear_error(image_folder: Any, tmp_path: Path) -> None:
    from vlcli.errors import TableWriteError

    table = tmp_path / "t.lance"
    with pytest.raises(TableWriteError, match="deleted or moved"):
        ingest_source(VanishingTable(image_folder(6), table), table, IngestOptions(batch_rows=2))
