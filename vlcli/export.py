"""Export rows to Hugging Face `datasets`, sharded Parquet or one image file per row, and Q/A items to
JSONL (DCVLR's shape), LLaVA or ShareGPT files (`vlcli.qa_export`); rows with a `crop_box` export their
crop view unless cropping is turned off."""

from __future__ import annotations

import fnmatch
import functools
import json
import math
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlcli.errors import ExportError, QueryError, UsageError
from vlcli.hub import check_repo_id, hub_token, push_dataset
from vlcli.images import Box, file_extension, image_extensions
from vlcli.predicate import Predicate, conjoin, parse_where
from vlcli.qa_records import QAOptions
from vlcli.schema import DATASET, ID, IMAGE, INGEST_STATUS
from vlcli.steps.base import Progress
from vlcli.storage import Table
from vlcli.views import CROP_BOX, View, ViewOptions, boxes, column, default_workers, map_rows, render

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


def export(
    table: Table,
    *,
    hf: str | Path | None = None,
    parquet: str | Path | None = None,
    images: str | Path | None = None,
    jsonl: str | Path | None = None,
    llava: str | Path | None = None,
    sharegpt: str | Path | None = None,
    where: str | Predicate | None = None,
    columns: Sequence[str] | None = None,
    image: bool = True,
    all_rows: bool = False,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    overwrite: bool = False,
    view: ViewOptions | None = None,
    qa: QAOptions | None = None,
    push_to_hub: str | None = None,
    private: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Write the rows matching `where` (and `ingest_status = 'ok'` unless `all_rows`) to `hf`, `parquet` or
    `images`, or their Q/A items to `jsonl`, `llava` or `sharegpt` (with the images in `images`); each image
    is its crop view when the row has a `crop_box` (unless `view.crop` is off). Q/A exports (and `hf` on a
    table with Q/A: one row per item) take rows kept by the filter unless `where` says otherwise, and only
    valid items unless `qa.all_items`. `push_to_hub` uploads the `hf` export (token from HF_TOKEN)."""
    from vlcli import qa_export as qx  # it builds on this module's helpers

    started = time.perf_counter()
    kind, target, images_dir = _pick_target(hf, parquet, images, jsonl, llava, sharegpt)
    view = view or ViewOptions()
    qa = qa or QAOptions()
    workers = default_workers() if workers is None else workers
    _check_options(kind, shard_rows, workers, columns, image, push_to_hub)
    token = None
    if push_to_hub is not None:
        check_repo_id(push_to_hub)
        token = hub_token()  # before anything is written: a missing token fails fast
    per_item = kind in QA_FILE_FORMATS or (kind == "hf" and qx.has_qa(table.schema))
    condition = parse_where(where)  # once: rejects what could escape the conditions it is combined with
    if per_item:
        predicate: str | None = qx.qa_predicate(table.schema, condition, qa, all_rows=all_rows)
    else:
        predicate = row_filter(condition, all_rows=all_rows)
    try:
        total = table.count(predicate)
    except QueryError as exc:
        raise QueryError(f"--where {str(condition)!r}: {_reason(exc, predicate)}") from exc
    report = ExportReport(format=kind, target=str(target), where=predicate)
    folder: Path | None = target
    if kind in QA_FILE_FORMATS:
        assert predicate is not None
        qx.check_file_target(target, images_dir, table, overwrite)
        report.images, folder = (str(images_dir) if images_dir is not None else None), images_dir
        write = qx.qa_file_writer(table, predicate, kind, target, images_dir, view, workers, qa, report)  # type: ignore[arg-type]
    elif kind == "images":
        report.by_dataset = len(_datasets(table, predicate)) > 1
        write = _images_writer(table, predicate, target, view, workers, report)
    elif per_item:
        assert predicate is not None
        extras = qx.qa_extra_columns(table.schema, columns)
        write = qx.qa_hf_writer(
            table, predicate, target, shard_rows, view, workers, qa, extras, image, report
        )
    else:
        report.columns = select_columns(table.schema, columns, image=image)
        write = _rows_writer(table, predicate, kind, target, shard_rows, view, workers, report)
    if per_item:
        report.note = qx.selection_note(table.schema, qa)
    if folder is not None:
        _prepare_target(folder, table, overwrite)  # only once every option has been checked
    if progress is not None:
        progress.start(f"export {kind}", total)
    try:
        report.files = write(progress)
    except BaseException:
        if folder is not None:
            _remove_export_files(folder)
        raise
    finally:
        if progress is not None:
            progress.finish()
    report.bytes_written = _bytes_written(target, report)
    if push_to_hub is not None and token is not None:
        report.pushed = push_dataset(target, target / TMP_DIR, push_to_hub, token, private=private)
    report.seconds = time.perf_counter() - started
    return report


Writer = Callable[[Progress | None], list[str]]


def _rows_writer(
    table: Table,
    predicate: str | None,
    kind: Format,
    target: Path,
    shard_rows: int,
    view: ViewOptions,
    workers: int,
    report: ExportReport,
) -> Writer:
    """The `--hf`/`--parquet` export, its features checked before anything is written."""
    names = report.columns
    schema = hf_schema(table.schema, names)
    crops = _crops(table, view) and IMAGE.name in names
    reads = list(dict.fromkeys([*names, CROP_BOX])) if crops else names

    def write(progress: Progress | None) -> list[str]:
        batches = _scan(table, reads, predicate)
        if IMAGE.name in names:
            rows = _viewed(batches, names, view, workers, report, progress)
        else:
            rows = _counting(batches, report, progress)
        if kind == "parquet":
            return write_parquet_shards(rows, target, schema, shard_rows)
        return _write_hf(rows, target, schema, shard_rows)

    return write


def _images_writer(
    table: Table, predicate: str | None, target: Path, view: ViewOptions, workers: int, report: ExportReport
) -> Writer:
    """The `--images` export: one file per row, in dataset folders when the rows span several datasets."""
    reads = [ID.name, IMAGE.name]
    reads += [CROP_BOX] if _crops(table, view) else []
    reads += [DATASET.name] if report.by_dataset else []

    def write(progress: Progress | None) -> list[str]:
        _write_marker(target, table, report, view)
        batches = _scan(table, reads, predicate)
        write_image_files(batches, target, view, workers, report, progress)
        return [MARKER]

    return write


def _crops(table: Table, view: ViewOptions) -> bool:
    return view.crop and CROP_BOX in table.schema.names


def _bytes_written(target: Path, report: ExportReport) -> int:
    if report.format == "images":
        return report.bytes_written  # counted file by file as they were written
    if report.format in QA_FILE_FORMATS:
        return report.bytes_written + target.stat().st_size  # the images, then the file
    return sum((target / f).stat().st_size for f in report.files)


# --- options ---------------------------------------------------------------------------------


def _pick_target(
    hf: str | Path | None,
    parquet: str | Path | None,
    images: str | Path | None,
    jsonl: str | Path | None,
    llava: str | Path | None,
    sharegpt: str | Path | None,
) -> tuple[Format, Path, Path | None]:
    """The destination: one folder, or one Q/A file with its image folder (optional for JSONL)."""
    files: dict[Format, str | Path | None] = {"jsonl": jsonl, "llava": llava, "sharegpt": sharegpt}
    given_files = [(kind, path) for kind, path in files.items() if path is not None]
    if len(given_files) > 1:
        raise UsageError("give one of --jsonl, --llava or --sharegpt per export")
    if given_files:
        kind, path = given_files[0]
        if hf is not None or parquet is not None:
            raise UsageError(f"--{kind} FILE goes with --images DIR only, not with --hf or --parquet")
        if images is None and kind != "jsonl":
            raise UsageError(
                f"--{kind} FILE needs --images DIR: its samples point at image files written there"
            )
        return kind, Path(path), Path(images) if images is not None else None
    folders: dict[Format, str | Path | None] = {"hf": hf, "parquet": parquet, "images": images}
    given = [(kind, path) for kind, path in folders.items() if path is not None]
    if len(given) != 1:
        raise UsageError(
            "give exactly one of --hf DIR, --parquet DIR or --images DIR, or a Q/A file: --jsonl FILE, "
            "--llava FILE or --sharegpt FILE"
        )
    kind, path = given[0]
    return kind, Path(path), None


def _check_options(
    kind: Format,
    shard_rows: int,
    workers: int,
    columns: Sequence[str] | None,
    image: bool,
    push_to_hub: str | None,
) -> None:
    if shard_rows < 1:
        raise UsageError("--shard-rows must be at least 1")
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if kind == "images" and (columns is not None or not image):
        raise UsageError("--columns and --no-image only apply to --hf and --parquet: --images writes images")
    if kind in QA_FILE_FORMATS and (columns is not None or not image):
        raise UsageError(f"--columns and --no-image only apply to --hf and --parquet, not --{kind}")
    if push_to_hub is not None and kind != "hf":
        raise UsageError("--push-to-hub uploads an --hf export: add --hf DIR")


def select_columns(schema: pa.Schema, columns: Sequence[str] | None, *, image: bool = True) -> list[str]:
    """The exported columns: `id` first, then `columns` (all when None), `image` unless `image=False`."""
    if columns is None:
        wanted = list(schema.names)
    else:
        wanted = [c.strip() for c in columns if c.strip()]
        unknown = [c for c in wanted if c not in schema.names]
        if unknown:
            listed = ", ".join(map(repr, unknown))
            raise UsageError(f"--columns: unknown column {listed} (the table has: {', '.join(schema.names)})")
        if image and IMAGE.name in schema.names and IMAGE.name not in wanted:
            wanted.append(IMAGE.name)
    if not image:
        wanted = [c for c in wanted if c != IMAGE.name]
    return list(dict.fromkeys([ID.name, *wanted]))


def row_filter(where: str | Predicate | None, *, all_rows: bool = False) -> str | None:
    """The Lance predicate for the exported rows: successfully ingested ones, narrowed by `where`."""
    return conjoin(None if all_rows else DEFAULT_WHERE, parse_where(where))


def _reason(exc: QueryError, predicate: str | None) -> str:
    """Lance's explanation, without the restated predicate, SQL wrapper or Rust source locations."""
    lines = str(exc.__cause__ or exc).strip().splitlines() or [str(exc)]
    text = re.sub(r",\s*\S+\.rs:\d+:\d+", "", lines[0]).replace("Invalid user input: ", "")
    text = text.replace(f"Error resolving filter expression {predicate}: ", "")
    if "sql parser error:" in text:
        text = text[text.index("sql parser error:") :].removesuffix(")")
    return text.rstrip(".,")


# --- target folder ---------------------------------------------------------------------------


def _prepare_target(target: Path, table: Table, overwrite: bool) -> None:
    """Make `target` an empty folder, refusing anything an export should not touch."""
    resolved = target.resolve()
    table_dir = Path(table.path).resolve()
    if resolved == table_dir or resolved.is_relative_to(table_dir) or table_dir.is_relative_to(resolved):
        raise ExportError(
            f"the export folder {str(target)!r} overlaps the table {table.path!r}: pick another"
        )
    if resolved.exists() and not resolved.is_dir():
        raise ExportError(f"{str(target)!r} is a file, not a folder")
    if resolved.is_dir() and any(resolved.iterdir()):
        if not overwrite:
            raise ExportError(f"{str(target)!r} is not empty: pass --overwrite to replace a previous export")
        marked = (resolved / MARKER).is_file()
        foreign = [p.name for p in resolved.iterdir() if not _written_by_export(p, marked)]
        if foreign:
            raise ExportError(
                f"{str(target)!r} holds files a vl export did not write ({foreign[0]!r}): "
                "--overwrite only replaces a previous export; pick an empty folder"
            )
        _remove_export_files(resolved)
    resolved.mkdir(parents=True, exist_ok=True)


def _is_export_file(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in EXPORT_FILES)


def _written_by_export(path: Path, marked: bool) -> bool:
    """Whether an export wrote `path`; image files and dataset folders count only beside a MARKER."""
    if _is_export_file(path.name):
        return True
    if not marked or path.is_symlink():
        return False
    if path.is_dir():
        return all(_is_image_file(p) for p in path.iterdir())
    return _is_image_file(path)


def _is_image_file(path: Path) -> bool:
    match = IMAGE_FILE.fullmatch(path.name)
    return (
        match is not None and match["ext"] in image_extensions() and path.is_file() and not path.is_symlink()
    )


def _remove_export_files(folder: Path) -> None:
    """Delete what an export writes in `folder`, leaving anything else alone."""
    if not folder.is_dir():
        return
    marked = (folder / MARKER).is_file()
    for path in folder.iterdir():
        if path.name == MARKER or not _written_by_export(path, marked):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    (folder / MARKER).unlink(missing_ok=True)  # last: an interrupted removal can still be repeated


# --- rows ------------------------------------------------------------------------------------


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


def _scan(table: Table, names: list[str], predicate: str | None) -> Iterator[pa.RecordBatch]:
    """Matching rows in small batches; Lance reads a row's image only once the row has matched."""
    batch_rows = IMAGE_BATCH_ROWS if IMAGE.name in names else PLAIN_BATCH_ROWS
    yield from table.scan(names, predicate, batch_size=batch_rows)


def _counting(
    batches: Iterable[pa.RecordBatch], report: ExportReport, progress: Progress | None
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield batch
        report.rows += batch.num_rows
        if progress is not None:
            progress.advance(batch.num_rows, 0)


def _viewed(
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
        _tally(report, views)
        if progress is not None:
            progress.advance(batch.num_rows, batch.num_rows - len(kept))
        ids = column(batch, ID.name)
        rows = batch.select(names).take(pa.array(kept, pa.int64()))
        yield from _with_views(rows, [views[i] for i in kept], [ids[i] for i in kept])


def _tally(report: ExportReport, views: Sequence[View]) -> None:
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


def _write_hf(
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
    return sorted(p.name for p in folder.iterdir() if _is_export_file(p.name))


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
        sub = [_dataset_folder(d) for d in column(batch, DATASET.name)] if report.by_dataset else None
        return [
            functools.partial(_write_one, folder / sub[k] if sub else folder, row_id, data, box, view)
            for k, (row_id, data, box) in enumerate(rows)
        ]

    for batch, written in map_rows(batches, tasks, workers):
        views = [v for v, _ in written]
        _tally(report, views)
        report.bytes_written += sum(n for _, n in written)
        if progress is not None:
            progress.advance(batch.num_rows, sum(v.skipped is not None for v in views))


def _write_one(
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


def _dataset_folder(name: str | None) -> str:
    """A dataset name as one safe folder name: no separators, no leading dot."""
    if name is None:
        return NO_DATASET
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return safe or NO_DATASET


def _datasets(table: Table, predicate: str | None) -> set[str | None]:
    """Distinct `dataset` values of the exported rows (stops at two: all the layout needs to know)."""
    if DATASET.name not in table.schema.names:
        return set()
    seen: set[str | None] = set()
    for batch in table.scan([DATASET.name], predicate, batch_size=PLAIN_BATCH_ROWS):
        seen.update(pc.unique(batch.column(0)).to_pylist())
        if len(seen) > 1:
            break
    return seen


def _write_marker(folder: Path, table: Table, report: ExportReport, view: ViewOptions) -> None:
    """Record what the export is, and mark the folder's image files as ours for a later --overwrite."""
    about = {
        "table": str(Path(table.path).resolve()),
        "version": table.version,
        "where": report.where,
        "by_dataset": report.by_dataset,
        "view": asdict(view),
    }
    (folder / MARKER).write_text(json.dumps(about, indent=2) + "\n")
