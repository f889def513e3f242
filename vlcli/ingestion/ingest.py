"""`vl ingest`: read images from a source into the table, one row per image, keyed on a content hash."""

from __future__ import annotations

import ctypes
import functools
import os
import stat
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from vlcli import __version__
from vlcli.errors import UsageError
from vlcli.images import DEFAULT_MAX_PIXELS, ImageProblem, content_id, probe, source_id
from vlcli.ingestion.sources import Record, Source, open_source
from vlcli.steps.base import Progress, error_status, reason_key
from vlcli.table.schema import ingest_schema
from vlcli.table.storage import Table, local_path, table_exists
from vlcli.text import MAX_REASON_CHARS, one_line

_CHUNK_ROWS = 16  # records per worker task: amortises task overhead, keeps the pool busy
_CHUNK_BYTES = 16 * 2**20
_ARROW_CHUNK_BYTES = 4 * 2**20  # well under glibc's mmap threshold (32 MB): reused, not faulted in
DEFAULT_MAX_FILE_SIZE = 256 * 2**20  # far above any real photo; a file is read whole, so this bounds memory
_NOT_FILES = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


@dataclass(frozen=True)
class IngestOptions:
    """How to read a source and batch its rows into the table."""

    dataset: str | None = None  # overrides the dataset name
    split: str = "train"  # for Hugging Face datasets
    image_column: str | None = None  # overrides auto-detection (Hugging Face / Parquet)
    keep_columns: tuple[str, ...] = ()  # source columns carried along as table columns
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_size: int = DEFAULT_MAX_FILE_SIZE  # bytes; larger files get an error row and are not read
    allow_external_paths: bool = False  # image cells holding a path may point outside the dataset folder
    batch_rows: int = 512  # append every N rows or batch_bytes, whichever first (flat memory)
    batch_bytes: int = 256 * 2**20
    workers: int = field(default_factory=lambda: min(8, (os.cpu_count() or 1) + 2))  # file reading + hashing

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise UsageError("--max-pixels must be at least 1")
        if self.max_file_size < 1:
            raise UsageError("--max-file-size must be at least 1")
        if self.batch_rows < 1:
            raise UsageError("--batch-rows must be at least 1")
        if self.batch_bytes < 1:
            raise UsageError("batch_bytes must be at least 1")
        if self.workers < 1:
            raise UsageError("workers must be at least 1")
        if isinstance(self.keep_columns, str):
            raise UsageError("--keep-columns: pass a tuple of names, e.g. ('caption', 'label')")
        object.__setattr__(self, "keep_columns", tuple(self.keep_columns))  # a list is fine too


@dataclass
class IngestReport:
    """What an ingest run did. Every item seen lands in one bucket: seen = added + duplicates + errors."""

    seen: int = 0
    added: int = 0  # usable images new to the table
    duplicates: int = 0  # usable images already in the table, or identical to an earlier item of this run
    errors: int = 0  # unusable items (their error row is stored once, by whichever run saw them first)
    ignored: int = 0  # files skipped for their extension (never read, not counted in seen)
    reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    bytes_read: int = 0
    table: str = ""
    already_in_table: int = 0  # the part of `duplicates` that a previous (or concurrent) run had stored
    ignored_extensions: Counter[str] = field(default_factory=Counter)
    temp_files_removed: int = 0  # orphan files of interrupted earlier writes, removed before this run

    @property
    def mb_per_second(self) -> float:
        """Source bytes read per second, in MB (10**6 bytes)."""
        return self.bytes_read / 1e6 / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Row:
    """One prepared record: its id, what the table stores, and whether the bytes were usable."""

    id: str
    record: Record
    image: bytes | None
    width: int | None
    height: int | None
    format: str | None
    file_size: int | None
    status: str
    warnings: str | None = None  # what Pillow warned about while probing (a corrupt EXIF block)
    read: bool = True  # False: refused unread (file_size is then its size on disk)


@functools.cache
def tune_allocator() -> bool:
    """Keep freed heap memory mapped (glibc only; once per process); return whether it applied.

    Ingest allocates and frees ~100 MB of file bytes per batch. By default glibc hands that memory back to
    the OS after each batch and the next batch page-faults it in again, which on VMs cost more than
    reading and hashing the bytes (reads ran 3-4x faster with it kept). Memory is still reused, so peak
    RSS stays about the same.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(
            libc.mallopt(m_trim_threshold, 512 * 2**20) and libc.mallopt(m_mmap_threshold, 32 * 2**20)
        )
    except (OSError, AttributeError):  # not glibc (musl, ...): keep its defaults
        return False


# --- per-record work (runs in the worker threads) ---------------------------------------------


class _Refused(Exception):
    """A path that is not read: not a regular file, or too large."""

    def __init__(self, reason: str, size: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.size = size


def _read(path: str, max_size: int = DEFAULT_MAX_FILE_SIZE) -> bytes:
    """The bytes of a regular file of at most `max_size` bytes; anything else is `_Refused` unread."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer; the type is then checked on the open file,
    # so a path swapped after a check cannot slip a device through.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        kind = next((name for test, name in _NOT_FILES if test(info.st_mode)), None)
        if kind is not None or not stat.S_ISREG(info.st_mode):
            raise _Refused(f"not a regular file ({kind or 'a special file'})")
        if info.st_size > max_size:
            raise _Refused(_too_large("file", info.st_size, max_size), info.st_size)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_size + 1)
        if len(data) > max_size:  # it grew after the check
            raise _Refused(_too_large("file", len(data), max_size), len(data))
        return data
    finally:
        os.close(fd)


def _too_large(what: str, size: int, max_size: int) -> str:
    return f"{what} too large: {size:,} bytes > max_file_size {max_size:,} (raise --max-file-size to read it)"


def _read_error(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read file ({exc.strerror or exc})"


def _error_row(record: Record, reason: str, size: int | None) -> _Row:
    text = one_line(reason)
    status = text if text.startswith("error: ") else f"error: {text}"
    return _Row(source_id(record.source), record, None, None, None, None, size, status)


def _prepare(
    record: Record, max_pixels: int = DEFAULT_MAX_PIXELS, max_file_size: int = DEFAULT_MAX_FILE_SIZE
) -> _Row:
    """Read, hash and probe one record; an unusable one becomes an error row, never an exception."""
    try:
        return _prepare_record(record, max_pixels, max_file_size)
    except MemoryError:  # one huge item must not take the others down with it
        return _error_row(record, "out of memory reading the file", record.size or None)


def _prepare_record(record: Record, max_pixels: int, max_file_size: int) -> _Row:
    if record.error is not None:
        return _error_row(record, record.error, None)
    data = record.data
    if data is None:
        if record.path is None:
            return _error_row(record, "no bytes and no path", None)
        try:
            data = _read(record.path, max_file_size)
        except _Refused as exc:
            return replace(_error_row(record, exc.reason, exc.size), read=False)
        except OSError as exc:
            return _error_row(record, _read_error(exc), None)
    elif len(data) > max_file_size:
        return _error_row(record, _too_large("image", len(data), max_file_size), len(data))
    try:
        info = probe(data, max_pixels)
    except ImageProblem as exc:
        return _error_row(record, str(exc), len(data))
    except Exception as exc:  # a PIL plugin choking on a hostile header must not stop the run
        return _error_row(record, error_status(exc), len(data))
    notes = "; ".join(info.warnings)[:MAX_REASON_CHARS] or None
    return _Row(content_id(data), record, data, info.width, info.height, info.format, len(data), "ok", notes)


def _prepare_chunk(records: list[Record], max_pixels: int, max_file_size: int) -> list[_Row]:
    return [_prepare(r, max_pixels, max_file_size) for r in records]


def _chunks(records: Iterable[Record]) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    size = 0
    for record in records:
        chunk.append(record)
        size += record.size
        if len(chunk) >= _CHUNK_ROWS or size >= _CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _prepared_rows(
    records: Iterable[Record], pool: ThreadPoolExecutor, opts: IngestOptions
) -> Iterator[_Row]:
    """Prepare records in the pool, in input order, reading ahead at most one batch (rows and bytes)."""
    ahead: deque[tuple[Future[list[_Row]], int, int]] = deque()
    rows = size = 0
    for chunk in _chunks(records):
        while ahead and (rows >= opts.batch_rows or size >= opts.batch_bytes):
            future, n, b = ahead.popleft()
            rows, size = rows - n, size - b
            yield from future.result()
        chunk_size = sum(r.size for r in chunk)
        future = pool.submit(_prepare_chunk, chunk, opts.max_pixels, opts.max_file_size)
        ahead.append((future, len(chunk), chunk_size))
        rows, size = rows + len(chunk), size + chunk_size
    while ahead:
        yield from ahead.popleft()[0].result()


# --- batching into the table ----------------------------------------------------------------


def _column(values: list[Any], type_: pa.DataType) -> pa.ChunkedArray:
    """Values as Arrow; image bytes in chunks small enough for malloc to recycle (see tune_allocator)."""
    pool = pa.system_memory_pool()
    if type_ != pa.large_binary():
        return pa.chunked_array([pa.array(values, type=type_, memory_pool=pool)], type=type_)
    chunks: list[pa.Array] = []
    start = size = 0
    for i, value in enumerate(values):
        size += len(value) if value is not None else 0
        if size >= _ARROW_CHUNK_BYTES:
            chunks.append(pa.array(values[start : i + 1], type=type_, memory_pool=pool))
            start, size = i + 1, 0
    chunks.append(pa.array(values[start:], type=type_, memory_pool=pool))
    return pa.chunked_array(chunks, type=type_)


class _Batch:
    """New rows waiting to be appended, as columns."""

    def __init__(self, extra_fields: list[pa.Field]) -> None:
        self.schema = ingest_schema(extra_fields)
        self.extra_names = [f.name for f in extra_fields]
        self.rows: list[_Row] = []
        self.bytes = 0

    def add(self, row: _Row) -> None:
        """Queue one new row."""
        self.rows.append(row)
        self.bytes += len(row.image) if row.image is not None else 0

    def to_arrow(self, rows: list[_Row]) -> pa.Table:
        """`rows` as a table with the ingest schema plus carried columns."""
        columns: dict[str, list[Any]] = {
            "id": [r.id for r in rows],
            "source": [r.record.source for r in rows],
            "dataset": [r.record.dataset for r in rows],
            "image": [r.image for r in rows],
            "width": [r.width for r in rows],
            "height": [r.height for r in rows],
            "format": [r.format for r in rows],
            "file_size": [r.file_size for r in rows],
            "ingest_status": [r.status for r in rows],
            "ingest_warnings": [r.warnings for r in rows],
        }
        for i, name in enumerate(self.extra_names):
            columns[name] = [r.record.extra[i] for r in rows]
        arrays = [_column(columns[f.name], f.type) for f in self.schema]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def clear(self) -> None:
        """Forget the queued rows (after they were appended)."""
        self.rows = []
        self.bytes = 0


class _Run:
    """The state of one ingest run: known ids, the pending batch, the report and progress."""

    def __init__(self, table: Table, source: Source, opts: IngestOptions, progress: Progress | None) -> None:
        self.table = table
        self.opts = opts
        self.progress = progress
        self.known = existing_ids(table)
        self.stored = len(self.known)  # ids before this run: tell "already stored" from twins in this run
        self.new_ids: set[str] = set()
        self.batch = _Batch(source.extra_fields)
        self.report = IngestReport(
            ignored=sum(source.ignored.values()), ignored_extensions=Counter(source.ignored), table=table.path
        )
        self._unreported = 0
        self._unreported_errors = 0

    def take(self, row: _Row) -> None:
        """Count one prepared row in one bucket and queue it for appending unless its id is present."""
        report = self.report
        report.seen += 1
        report.bytes_read += (row.file_size or 0) if row.read else 0
        self._unreported += 1
        known = row.id in self.known or row.id in self.new_ids
        if row.status != "ok":
            report.errors += 1
            report.reasons[reason_key(row.status)] += 1
            self._unreported_errors += 1
        elif known:
            report.duplicates += 1
            report.already_in_table += row.id in self.known
        if not known:
            self.new_ids.add(row.id)
            self.batch.add(row)
        if len(self.batch.rows) >= self.opts.batch_rows or self.batch.bytes >= self.opts.batch_bytes:
            self.flush()
        elif not self.batch.rows and self._unreported >= self.opts.batch_rows:
            self._advance()  # a long run of duplicates: nothing to commit, but the bar should move

    def flush(self) -> None:
        """Append the pending rows whose id is still new (a concurrent run may have stored some meanwhile)
        and report progress. Images and error rows are inserted apart, so the counts stay exact."""
        images = [r for r in self.batch.rows if r.status == "ok"]
        if images:
            added = self.table.insert_new(self.batch.to_arrow(images))
            self.report.added += added
            self.report.duplicates += len(images) - added  # stored by a concurrent run
            self.report.already_in_table += len(images) - added
        errors = [r for r in self.batch.rows if r.status != "ok"]
        if errors:
            self.table.insert_new(self.batch.to_arrow(errors))  # counted as errors either way
        self.batch.clear()
        self._advance()

    def _advance(self) -> None:
        if self.progress is not None and self._unreported:
            self.progress.advance(self._unreported, self._unreported_errors)
        self._unreported = self._unreported_errors = 0


# --- the public entry points ------------------------------------------------------------------


def existing_ids(table: Table) -> set[str]:
    """Every id already in the table (reads only the `id` column)."""
    ids: set[str] = set()
    for batch in table.scan(["id"], batch_size=65536):
        ids.update(batch.column(0).to_pylist())
    return ids


def _check_table_path(path: str) -> None:
    """Refuse to create a table inside a file or a folder that already holds other things."""
    local = local_path(path)  # a file:// URI names a folder too; object storage has no folder to check
    if local is None or table_exists(path) or not os.path.exists(local):
        return
    if os.path.isdir(local):
        with os.scandir(local) as entries:
            if next(entries, None) is None:
                return
    raise UsageError(
        f"TABLE {path!r} exists and is not a vl table; pass a new path, e.g. {os.path.basename(path)}.lance"
    )


def _open_table(table: str | os.PathLike[str] | Table, extra_fields: list[pa.Field]) -> Table:
    if isinstance(table, Table):
        tbl = table
        tbl.refresh()  # ids written since this handle was opened must count as present
    else:
        _check_table_path(os.fspath(table))
        tbl = Table.open_or_create(table, ingest_schema(extra_fields))
    schema = tbl.schema
    for f in extra_fields:
        if f.name in schema.names and schema.field(f.name).type != f.type:
            raise UsageError(
                f"--keep-columns: column {f.name!r} is {schema.field(f.name).type} in the table "
                f"but {f.type} in the source"
            )
    if any(f.name not in schema.names for f in ingest_schema(extra_fields)):
        tbl.ensure_columns(ingest_schema(extra_fields))
    tbl.declare_id_key()  # a table made by an older vl: concurrent ingests must not store an id twice
    return tbl


def ingest(
    src: str | os.PathLike[str],
    table: str | os.PathLike[str] | Table,
    options: IngestOptions | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Add every image of `src` to `table` (created when missing); items already there are skipped."""
    opts = options or IngestOptions()
    source = open_source(
        src,
        dataset=opts.dataset,
        split=opts.split,
        image_column=opts.image_column,
        keep_columns=opts.keep_columns,
        allow_external_paths=opts.allow_external_paths,
    )
    return ingest_source(source, table, opts, progress)


def ingest_source(
    source: Source,
    table: str | os.PathLike[str] | Table,
    options: IngestOptions | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest from an already opened Source (custom sources, or a hub reader pointed at a local folder)."""
    opts = options or IngestOptions()
    started = time.perf_counter()
    tune_allocator()
    run = _Run(_open_table(table, source.extra_fields), source, opts, progress)
    run.report.temp_files_removed = run.table.remove_orphan_files()[0]
    if progress is not None:
        progress.start("ingest", source.total)
    pool = ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="vl-ingest")
    try:
        for row in _prepared_rows(source.records(), pool, opts):
            run.take(row)
        run.flush()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if progress is not None:
            progress.finish()
    run.report.seconds = time.perf_counter() - started
    _finish(run.table, source, opts, run.report)
    return run.report


def _finish(table: Table, source: Source, opts: IngestOptions, report: IngestReport) -> None:
    summary = {
        "source": source.location,
        "kind": source.kind,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "vl_version": __version__,
        "options": {k: v for k, v in asdict(opts).items() if k not in ("workers",)},
        **{k: getattr(report, k) for k in ("seen", "added", "duplicates", "errors", "ignored", "bytes_read")},
        "reasons": dict(report.reasons.most_common(20)),
        "seconds": round(report.seconds, 3),
    }
    table.set_metadata("ingest.last", summary)
    table.tag("ingest")
    table.cleanup()
