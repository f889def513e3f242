"""The parts of an export that the row and Q/A exports share: the report, scanning and rendering rows,
and writing Parquet shards, Hugging Face datasets, image files and the export marker."""

from __future__ import annotations

import fnmatch
import functools
import json
import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlcli.errors import ExportError
from vlcli.exports.views import View, ViewOptions, boxes, column, map_rows, render
from vlcli.images import Box, file_extension
from vlcli.steps.base import Progress
from vlcli.table.schema import DATASET, ID, IMAGE, INGEST_STATUS
from vlcli.table.storage import Table

DEFAULT_SHARD_ROWS = 1000
DEFAULT_WHERE = f"{INGEST_STATUS.name} = 'ok'"
# Image rows are big: small scan batches keep memory flat; metadata-only exports can take more.
IMAGE_BATCH_ROWS = 64
PLAIN_BATCH_ROWS = 8192
# Arrow `binary` (what the Hugging Face Image feature stores) caps one array at 2 GiB.
MAX_CHUNK_BYTES = 1 << 30
TMP_DIR = ".vl-export-tmp"
# Left by `--images` exports: proof that the image files beside it were written by an export.
MARKER = ".vl-export.json"
# Everything an export writes into its folder; --overwrite removes these and nothing else.
# (`.part-*.parquet.part`: a shard being written, under a temporary name until it is complete)
EXPORT_FILES = (
    "part-*.parquet",
    ".part-*.parquet.part",
    "data-*-of-*.arrow",
    "dataset_info.json",
    "state.json",
    TMP_DIR,
    MARKER,
)
# What `--images` writes: `<id>.<ext>` (and `.<id>.<ext>.part` while writing), maybe in dataset folders.
IMAGE_FILE = re.compile(r"\.?[A-Za-z0-9][A-Za-z0-9_-]*\.(?P<ext>[a-z0-9]+)(\.part)?")
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}")
NO_DATASET = "_none"

Format = Literal["hf", "parquet", "images", "jsonl", "llava", "sharegpt"]
QA_FILE_FORMATS: tuple[Format, ...] = ("jsonl", "llava", "sharegpt")


@dataclass
class ExportReport:
    """What an export wrote."""

    format: Format
    target: str
    rows: int = 0
    bytes_written: int = 0
    files: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    where: str | None = None
    seconds: float = 0.0
    cropped: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    by_dataset: bool = False
    images: str | None = None  # the image folder of a Q/A file export
    items: int = 0  # Q/A items exported (Q/A exports)
    samples: int = 0  # records in a Q/A file (one per item, or per image with multi-turn)
    skipped_items: int = 0  # Q/A items left out as not valid
    note: str | None = None  # which Q/A items were taken
    pushed: str | None = None  # the Hub repository URL after --push-to-hub

    @property
    def file_count(self) -> int:
        """Files written: one per row for `--images`, the file plus its images for a Q/A file, the shards
        and metadata otherwise."""
        if self.format == "images":
            return self.rows
        if self.format in QA_FILE_FORMATS:
            return len(self.files) + (self.rows if self.images is not None else 0)
        return len(self.files)

    def load_hint(self) -> str:
        """Python that loads the export back."""
        if self.format == "hf":
            return f"datasets.load_from_disk({self.target!r})"
        if self.format == "images":
            return f"datasets.load_dataset('imagefolder', data_dir={self.target!r}, split='train')"
        if self.format in QA_FILE_FORMATS:
            return f"datasets.load_dataset('json', data_files={self.target!r}, split='train')"
        files = str(Path(self.target) / "part-*.parquet")
        return f"datasets.load_dataset('parquet', data_files={files!r}, split='train')"


Writer = Callable[[Progress | None], list[str]]


def is_export_file(name: str) -> bool:
    """Whether `name` is a file or folder an export writes (see EXPORT_FILES)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in EXPORT_FILES)


def hf_schema(schema: pa.Schema, names: Sequence[str]) -> pa.Schema:
    """The Arrow schema of the export, with Hugging Face feature metadata: `image` as an `Image` feature."""
    import datasets

    plain = pa.schema([schema.field(n).remove_metadata() for n in names if n != IMAGE.name])
    try:
        features = datasets.Features.from_arrow_schema(plain)
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise ExportError(f"a column cannot be exported to Hugging Face features: {exc}") from exc
    if IMAGE.name in names:
        features[IMAGE.name] = datasets.Image()
    ordered = datasets.Features({n: features[n] for n in names})
    out: pa.Schema = ordered.arrow_schema
    return out


def scan_rows(table: Table, names: list[str], predicate: str | None) -> Iterator[pa.RecordBatch]:
    """Matching rows in small batches; Lance reads a row's image only once the row has matched."""
    batch_rows = IMAGE_BATCH_ROWS if IMAGE.name in names else PLAIN_BATCH_ROWS
    yield from table.scan(names, predicate, batch_size=batch_rows)


def counted_rows(
    batches: Iterable[pa.RecordBatch], report: ExportReport, progress: Progress | None
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield batch
        report.rows += batch.num_rows
        if progress is not None:
            progress.advance(batch.num_rows, 0)


def viewed_rows(
    batches: Iterable[pa.RecordBatch],
    names: list[str],
    view: ViewOptions,
    workers: int,
    report: ExportReport,
    progress: Progress | None,
) -> Iterator[pa.RecordBatch]:
    """Batches of `names` whose `image` is the `{bytes, path}` struct of each row's view, rendered in
    parallel; rows whose image cannot be rendered are left out and counted by reason."""

    def tasks(batch: pa.RecordBatch) -> list[Callable[[], View]]:
        pairs = zip(column(batch, IMAGE.name), boxes(batch, view))
        return [functools.partial(render, data, box, view) for data, box in pairs]

    for batch, views in map_rows(batches, tasks, workers):
        kept = [i for i, v in enumerate(views) if v.skipped is None]
        tally(report, views)
        if progress is not None:
            progress.advance(batch.num_rows, batch.num_rows - len(kept))
        ids = column(batch, ID.name)
        rows = batch.select(names).take(pa.array(kept, pa.int64()))
        yield from _with_views(rows, [views[i] for i in kept], [ids[i] for i in kept])


def tally(report: ExportReport, views: Sequence[View]) -> None:
    for v in views:
        if v.skipped is not None:
            report.skipped[v.skipped] += 1
        else:
            report.rows += 1
            report.cropped += v.cropped


def _with_views(batch: pa.RecordBatch, views: list[View], ids: list[str]) -> Iterator[pa.RecordBatch]:
    """`batch` with its image replaced by the views, split so no slice holds over MAX_CHUNK_BYTES."""
    start, size = 0, 0
    for end, v in enumerate(views):
        n = len(v.data or b"")
        if end > start and size + n > MAX_CHUNK_BYTES:
            yield _set_images(batch, views, ids, start, end)
            start, size = end, 0
        size += n
    if start < len(views) or not views:
        yield _set_images(batch, views, ids, start, len(views))


def _set_images(
    batch: pa.RecordBatch, views: list[View], ids: list[str], start: int, end: int
) -> pa.RecordBatch:
    data = pa.array([v.data for v in views[start:end]], pa.binary())
    paths = [
        f"{i}.{file_extension(v.format)}" if v.format is not None else None
        for i, v in zip(ids[start:end], views[start:end])
    ]
    struct = pa.StructArray.from_arrays(
        [data, pa.array(paths, pa.string())], names=["bytes", "path"], mask=data.is_null()
    )
    part = batch.slice(start, end - start)
    return part.set_column(part.schema.get_field_index(IMAGE.name), IMAGE.name, struct)


def to_hf_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Shape a batch to the export schema; a binary `image` becomes the `{bytes, path}` struct."""
    arrays = []
    for f in schema:
        column = batch.column(f.name)
        if f.name == IMAGE.name and not pa.types.is_struct(column.type):
            raw = column.cast(pa.binary())
            column = pa.StructArray.from_arrays(
                [raw, pa.nulls(len(raw), pa.string())], names=["bytes", "path"], mask=raw.is_null()
            )
        arrays.append(column.cast(f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# --- writers ---------------------------------------------------------------------------------


def write_parquet_shards(
    batches: Iterable[pa.RecordBatch], folder: Path, schema: pa.Schema, shard_rows: int
) -> list[str]:
    """Write `part-00000.parquet`, ... of at most `shard_rows` rows each; return their names. Each shard is
    written under a temporary name and renamed once complete, so a killed export leaves no partial shard."""
    names: list[str] = []
    writer: pq.ParquetWriter | None = None
    in_shard = 0

    def open_shard() -> pq.ParquetWriter:
        names.append(f"part-{len(names):05d}.parquet")
        return pq.ParquetWriter(_partial(folder / names[-1]), schema)

    def close_shard(done: pq.ParquetWriter) -> None:
        done.close()
        os.replace(_partial(folder / names[-1]), folder / names[-1])

    try:
        for batch in batches:
            out = to_hf_batch(batch, schema)
            while out.num_rows:
                if writer is None or in_shard == shard_rows:
                    if writer is not None:
                        close_shard(writer)
                    writer, in_shard = open_shard(), 0
                take = min(shard_rows - in_shard, out.num_rows)
                writer.write_batch(out.slice(0, take))
                in_shard += take
                out = out.slice(take)
        # no rows: one empty shard still carries the schema and features
        close_shard(writer if writer is not None else open_shard())
        writer = None
    finally:
        if writer is not None:  # failed mid-shard: drop the partial file
            writer.close()
            _partial(folder / names[-1]).unlink(missing_ok=True)
    return names


def _partial(path: Path) -> Path:
    """Where `path` is written until it is complete."""
    return path.with_name(f".{path.name}.part")


def write_hf(
    batches: Iterable[pa.RecordBatch], folder: Path, schema: pa.Schema, shard_rows: int
) -> list[str]:
    """Stream rows to one Arrow file inside `folder`, then let `datasets` save it there in shards of at
    most `shard_rows` rows."""
    import datasets

    tmp = folder / TMP_DIR
    tmp.mkdir()
    rows_file = tmp / "rows.arrow"
    with pa.OSFile(str(rows_file), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(to_hf_batch(batch, schema))
    dataset = datasets.Dataset.from_file(str(rows_file))  # memory-mapped: flat memory
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the caller's Progress already reports the rows
    try:
        dataset.save_to_disk(str(folder), num_shards=max(1, math.ceil(len(dataset) / shard_rows)))
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
        del dataset
        shutil.rmtree(tmp)
    return sorted(p.name for p in folder.iterdir() if is_export_file(p.name))


# --- image files -----------------------------------------------------------------------------


def write_image_files(
    batches: Iterable[pa.RecordBatch],
    folder: Path,
    view: ViewOptions,
    workers: int,
    report: ExportReport,
    progress: Progress | None = None,
) -> None:
    """Render and write each row's view as `folder/[<dataset>/]<id>.<ext>` on `workers` threads."""

    def tasks(batch: pa.RecordBatch) -> list[Callable[[], tuple[View, int]]]:
        rows = zip(column(batch, ID.name), column(batch, IMAGE.name), boxes(batch, view))
        sub = [dataset_folder(d) for d in column(batch, DATASET.name)] if report.by_dataset else None
        return [
            functools.partial(write_one, folder / sub[k] if sub else folder, row_id, data, box, view)
            for k, (row_id, data, box) in enumerate(rows)
        ]

    for batch, written in map_rows(batches, tasks, workers):
        views = [v for v, _ in written]
        tally(report, views)
        report.bytes_written += sum(n for _, n in written)
        if progress is not None:
            progress.advance(batch.num_rows, sum(v.skipped is not None for v in views))


def write_one(
    folder: Path, row_id: str, data: bytes | None, box: Box | None, view: ViewOptions
) -> tuple[View, int]:
    """Render one row and write its file; return the view (without its bytes) and the bytes written."""
    if not SAFE_ID.fullmatch(row_id or ""):
        return View(skipped="id is not a safe file name"), 0
    if data is None:
        return View(skipped="no image (ingest failed)"), 0
    rendered = render(data, box, view)
    if rendered.skipped is not None:
        return rendered, 0
    if rendered.data is None or rendered.format is None:
        return View(skipped="not an image (unrecognised format)"), 0
    folder.mkdir(exist_ok=True)
    _write_new_file(folder / f"{row_id}.{file_extension(rendered.format)}", rendered.data)
    return View(format=rendered.format, cropped=rendered.cropped), len(rendered.data)


def _write_new_file(path: Path, data: bytes) -> None:
    """Write through a temporary name, so a crash never leaves a truncated file under the final one."""
    tmp = path.with_name(f".{path.name}.part")
    # O_EXCL | O_NOFOLLOW: never write through a link that appeared in the folder.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def dataset_folder(name: str | None) -> str:
    """A dataset name as one safe folder name: no separators, no leading dot."""
    if name is None:
        return NO_DATASET
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return safe or NO_DATASET


def datasets_of(table: Table, predicate: str | None) -> set[str | None]:
    """Distinct `dataset` values of the exported rows (stops at two: all the layout needs to know)."""
    if DATASET.name not in table.schema.names:
        return set()
    seen: set[str | None] = set()
    for batch in table.scan([DATASET.name], predicate, batch_size=PLAIN_BATCH_ROWS):
        seen.update(pc.unique(batch.column(0)).to_pylist())
        if len(seen) > 1:
            break
    return seen


def write_marker(folder: Path, table: Table, report: ExportReport, view: ViewOptions) -> None:
    """Record what the export is, and mark the folder's image files as ours for a later --overwrite."""
    about = {
        "table": str(Path(table.local_path).resolve()) if table.local_path is not None else table.path,
        "version": table.version,
        "where": report.where,
        "by_dataset": report.by_dataset,
        "view": asdict(view),
    }
    (folder / MARKER).write_text(json.dumps(about, indent=2) + "\n")
