"""The only module that talks to Lance: create, add columns, pending scans, write-back, versions.

A table is any Lance URI (a local folder, `file://`, `s3://`, `gs://`, `az://`), kept as a plain string
(`Path("s3://b/t")` would collapse the `//`), with storage options passed to every Lance call."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlparse

import lance
import lance.optimize
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from vlcli.errors import (
    DuplicateIdsError,
    QueryError,
    TableExistsError,
    TableNotFoundError,
    TableWriteError,
    UsageError,
    VlError,
)
from vlcli.text import first_line

# Lance raises plain OSError/RuntimeError for commit conflicts; these words identify them.
_CONFLICT_WORDS = ("conflict", "retryable", "concurrent")
_META_PREFIX = "vl."
# Rows per commit of write_back. A merge-insert joins its rows against every id in the table, so each commit
# costs time proportional to the table (0.1 s per 1M rows) and then to its rows (1 s per 1M): few large
# commits. Bounded so a commit's memory stays under ~0.7 GB (benchmarks/write_back.py).
WRITE_BACK_ROWS = 4_194_304
# Rows per batch when reading whole columns: few Python round trips per million rows.
READ_ROWS = 65_536
_NO_COMPRESSION = {b"lance-encoding:compression": b"none"}
# With `id` declared the primary key, two merge-inserts of one new id conflict (Lance compares the keys
# each inserted) and the later one is retried against the winner's rows: concurrent ingests store an id once.
_PRIMARY_KEY = b"lance-schema:unenforced-primary-key"
# Lance writes each new file under a `.tmp*` name and renames it when complete; a killed writer leaves it.
_TEMP_PREFIX = ".tmp"
# A writer appends to its temporary file continuously (data is encoded in memory and streamed out), so a
# file untouched this long has no writer left. Younger ones may belong to a concurrent run: keep them.
ORPHAN_AGE = timedelta(minutes=10)
_NOT_WRITABLE = ("permission denied", "not permitted", "read-only file system", "os error 13", "os error 30")
_RUST_LOCATION = re.compile(r",?\s*\S+\.rs:\d+:\d+")
# Cleaning a version deletes data files only it referenced, and a reader pinned to it (a long export, a
# review page, a worker's snapshot, another step) then fails with `Not found`. Steps and ingest clean only
# versions older than this window, which outlasts any run; `vl optimize --older-than` cleans sooner on demand.
KEEP_VERSIONS = timedelta(days=7)
KEEP_VERSIONS_ENV = "VL_KEEP_VERSIONS"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Set once by the CLI from `--storage-option KEY=VALUE`: every table opened without its own options uses them.
_default_storage_options: dict[str, str] = {}


def set_default_storage_options(options: Mapping[str, str]) -> None:
    """Storage options for every table this process opens without options of its own."""
    _default_storage_options.clear()
    _default_storage_options.update(options)


def parse_storage_option(text: str) -> tuple[str, str]:
    """`KEY=VALUE` as (key, value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--storage-option expects KEY=VALUE (e.g. region=us-east-1), got {text!r}")
    return key.strip(), value


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """`90s`, `30m`, `2h`, `7d` or `1w` as a timedelta."""
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"{what} expects a number and a unit (s, m, h, d, w), e.g. 2h or 7d; got {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def keep_versions() -> timedelta:
    """The retention window: versions younger than this are never cleaned by a step ($VL_KEEP_VERSIONS)."""
    text = os.environ.get(KEEP_VERSIONS_ENV)
    return KEEP_VERSIONS if not text else parse_duration(text, KEEP_VERSIONS_ENV)


def local_path(uri: str | os.PathLike[str]) -> str | None:
    """The local folder a table URI names (a plain path or `file://`), or None for object storage."""
    text = os.fspath(uri)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if len(parsed.scheme) <= 1:  # no scheme (or a Windows drive letter)
        return text
    return None


@dataclass
class Cleanup:
    """What cleaning old versions removed."""

    versions: int
    bytes: int


@dataclass
class CompactionPlan:
    """What compacting would rewrite: fragments with many deleted rows, and runs of small fragments."""

    fragments: int
    rows: int
    bytes: int
    image_bytes: int  # bytes of the data files that hold binary columns (the images)
    target_rows: int
    plan: Any = None  # Lance's plan, executed as planned


def _is_conflict(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in _CONFLICT_WORDS)


def _retry(action: Any, attempts: int = 8) -> Any:
    """Run `action()`, retrying commit conflicts with a short backoff."""
    for attempt in range(attempts):
        try:
            return action()
        except (OSError, RuntimeError, ValueError) as exc:
            if not _is_conflict(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def table_exists(path: str | os.PathLike[str], storage_options: Mapping[str, str] | None = None) -> bool:
    """Whether `path` (a folder or a Lance URI) holds a Lance dataset."""
    local = local_path(path)
    if local is not None:
        return os.path.isdir(os.path.join(local, "_versions"))
    try:
        _open_dataset(os.fspath(path), _options(storage_options))
    except TableNotFoundError:
        return False
    return True


def _options(storage_options: Mapping[str, str] | None) -> dict[str, str]:
    return dict(_default_storage_options if storage_options is None else storage_options)


def _open_dataset(uri: str, options: dict[str, str], version: int | None = None) -> lance.LanceDataset:
    """`lance.dataset` with one-line errors naming `uri`: not found, or why it cannot be read."""
    try:
        return lance.dataset(uri, version=version, storage_options=options or None)
    except (ValueError, OSError, RuntimeError) as exc:
        reason = _RUST_LOCATION.sub("", first_line(exc))
        if "not found" in reason.lower() and "error performing" not in reason.lower():
            raise TableNotFoundError(
                f"no vl table at {uri!r} (create one with `vl ingest SRC TABLE`)"
            ) from exc
        reason = re.sub(r"^LanceError\(\w+\):\s*", "", reason).strip()
        raise TableNotFoundError(
            f"cannot open table {uri!r}: {reason} (check the URI and --storage-option)"
        ) from exc


class Table:
    """One Lance dataset: the system of record, one row per image."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        dataset: lance.LanceDataset,
        storage_options: Mapping[str, str] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.storage_options = _options(storage_options)
        self._ds = dataset

    def __getstate__(self) -> dict[str, Any]:
        """The URI, options and version: another process (a worker, a Ray actor) reopens the same snapshot."""
        return {"path": self.path, "storage_options": self.storage_options, "version": self.version}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Reopen the table pickled by `__getstate__`."""
        self.path, self.storage_options = state["path"], state["storage_options"]
        self._ds = _open_dataset(self.path, self.storage_options, state["version"])

    @property
    def local_path(self) -> str | None:
        """The table's local folder, or None when it lives on object storage."""
        return local_path(self.path)

    # --- lifecycle -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], storage_options: Mapping[str, str] | None = None) -> Table:
        """Open an existing table (a folder or a Lance URI)."""
        uri, options = os.fspath(path), _options(storage_options)
        if local_path(uri) is not None and not table_exists(uri):
            raise TableNotFoundError(f"no vl table at {uri!r} (create one with `vl ingest SRC TABLE`)")
        return cls(uri, _open_dataset(uri, options), options)

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], schema: pa.Schema, storage_options: Mapping[str, str] | None = None
    ) -> Table:
        """Create an empty table with `schema` (`id`, when present, as its primary key)."""
        uri, options = os.fspath(path), _options(storage_options)
        if table_exists(uri, options):
            raise TableExistsError(f"a table already exists at {uri!r}")
        try:
            ds = lance.write_dataset(
                _storage_schema(schema).empty_table(), uri, mode="create", storage_options=options or None
            )
        except OSError as exc:
            if table_exists(uri, options):
                raise TableExistsError(f"a table already exists at {uri!r}") from exc
            raise _write_error(uri, exc, creating=True) from exc
        return cls(uri, ds, options)

    @classmethod
    def open_or_create(
        cls, path: str | os.PathLike[str], schema: pa.Schema, storage_options: Mapping[str, str] | None = None
    ) -> Table:
        """Open the table at `path`, creating it with `schema` when absent."""
        if table_exists(path, storage_options):
            return cls.open(path, storage_options)
        try:
            return cls.create(path, schema, storage_options)
        except TableExistsError:
            return cls.open(path, storage_options)  # another process created it a moment ago

    def snapshot(self) -> Table:
        """A handle pinned to the current version: reads stay consistent while others commit."""
        return Table(self.path, self._ds, self.storage_options)

    def refresh(self) -> None:
        """Move to the latest committed version (other processes may have written)."""
        self._ds = _open_dataset(self.path, self.storage_options)

    # --- reading ---------------------------------------------------------------------------
    @property
    def schema(self) -> pa.Schema:
        """The current Arrow schema."""
        return self._ds.schema

    @property
    def version(self) -> int:
        """The version this handle reads."""
        return int(self._ds.version)

    def count(self, where: str | None = None) -> int:
        """Number of rows, optionally matching a SQL predicate."""
        try:
            return int(self._ds.count_rows(where))
        except (ValueError, OSError, RuntimeError) as exc:
            raise QueryError(f"bad predicate {where!r}: {first_line(exc)}") from exc

    def scan(
        self,
        columns: Iterable[str],
        where: str | None = None,
        *,
        batch_size: int = 1024,
        limit: int | None = None,
        fragment_ids: Iterable[int] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream rows matching `where`, reading only `columns`."""
        fragments = None
        if fragment_ids is not None:
            wanted = set(fragment_ids)
            fragments = [f for f in self._ds.get_fragments() if f.fragment_id in wanted]
        try:
            scanner = self._ds.scanner(
                columns=list(columns), filter=where, batch_size=batch_size, limit=limit, fragments=fragments
            )
            yield from scanner.to_batches()
        except (ValueError, OSError, RuntimeError) as exc:
            if isinstance(exc, VlError):
                raise
            raise QueryError(f"cannot scan {where!r}: {first_line(exc)}") from exc

    def to_arrow(self, columns: Iterable[str], where: str | None = None) -> pa.Table:
        """Read `columns` of the rows matching `where` into memory."""
        return pa.Table.from_batches(
            list(self.scan(columns, where, batch_size=READ_ROWS)), schema=self._project(columns)
        )

    def _project(self, columns: Iterable[str]) -> pa.Schema:
        return pa.schema([self.schema.field(c) for c in columns])

    def lazy(self) -> pl.LazyFrame:
        """A polars LazyFrame over the table; only the columns a query names are read."""
        return pl.scan_lance(self._ds)

    def fragment_ids(self) -> list[int]:
        """Ids of the table's fragments, in order."""
        return [f.fragment_id for f in self._ds.get_fragments()]

    def bytes_read(self) -> int:
        """Bytes this handle has read since the last call (for tests and benchmarks)."""
        return int(self._ds.io_stats_incremental().read_bytes)

    def nearest(
        self, column: str, vector: Iterable[float], k: int, columns: Iterable[str], where: str | None = None
    ) -> pa.Table:
        """The `k` rows whose `column` vector is closest to `vector` by cosine distance (`_distance`)."""
        query: dict[str, Any] = {"column": column, "q": list(vector), "k": k, "metric": "cosine"}
        if self.vector_indices(column):
            query["refine_factor"] = 10  # re-rank the index's candidates by exact distance
        try:
            return self._ds.to_table(
                columns=[*columns, "_distance"], nearest=query, filter=where, prefilter=where is not None
            )
        except (ValueError, OSError, RuntimeError) as exc:
            raise QueryError(f"nearest-neighbour search on {column!r} failed: {first_line(exc)}") from exc

    def vector_indices(self, column: str) -> list[str]:
        """Names of the vector indices on `column`."""
        if hasattr(self._ds, "describe_indices"):
            return [i.name for i in self._ds.describe_indices() if column in i.field_names]
        return [i["name"] for i in self._ds.list_indices() if column in i["fields"]]  # older pylance

    def build_vector_index(self, column: str, dim: int) -> str:
        """Build (or rebuild) an IVF-PQ cosine index on `column`; return its name."""
        rows = self.count(f"{column} IS NOT NULL")
        if rows < 256:
            raise VlError(
                f"{rows} vectors are too few for an index (need 256); exact search is fast at this size"
            )
        sub_vectors = next(n for n in (dim // 16, dim // 8, dim // 4, dim // 2, 1) if n >= 1 and dim % n == 0)
        self._ds.create_index(
            column,
            index_type="IVF_PQ",
            metric="cosine",
            replace=True,
            num_partitions=max(1, int(rows**0.5) // 4),
            num_sub_vectors=sub_vectors,
        )
        self.refresh()
        return self.vector_indices(column)[0]

    # --- writing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn Lance's write failures into one-line errors that say what is wrong with the table."""
        if self.local_path is not None and not table_exists(self.path):
            raise _write_error(self.path, None)
        try:
            yield
        except OSError as exc:
            raise _write_error(self.path, exc) from exc

    def _conform(self, rows: pa.Table) -> pa.Table:
        """`rows` in the table's schema: columns cast, the ones the rows lack filled with NULL."""
        schema = self.schema
        missing = [n for n in rows.column_names if n not in schema.names]
        if missing:
            raise VlError(f"append has columns the table lacks: {missing}")
        arrays = [
            rows.column(f.name).cast(f.type)
            if f.name in rows.column_names
            else pa.nulls(rows.num_rows, f.type)
            for f in schema
        ]
        return pa.Table.from_arrays(arrays, schema=schema)

    def append(self, rows: pa.Table) -> None:
        """Append new rows; columns the rows lack are written as NULL."""
        if rows.num_rows == 0:
            return
        data = self._conform(rows)
        with self._writing():
            self._ds = _retry(
                lambda: lance.write_dataset(
                    data, self.path, mode="append", storage_options=self.storage_options or None
                )
            )

    def insert_new(self, rows: pa.Table) -> int:
        """Append the rows whose `id` the table lacks (even if another process adds it meanwhile); return
        how many were inserted."""
        if rows.num_rows == 0:
            return 0
        data = self._conform(rows)

        def merge() -> int:
            stats = self._ds.merge_insert("id").when_not_matched_insert_all().execute(data)
            return int(stats["num_inserted_rows"])

        with self._writing():
            inserted: int = _retry(merge)
            self.refresh()
        return inserted

    def declare_id_key(self) -> None:
        """Make `id` the table's primary key (tables made before vl did this at creation), so concurrent
        `insert_new` calls cannot store one id twice."""

        def declare() -> None:
            self.refresh()
            field = self.schema.field("id")
            if (field.metadata or {}).get(_PRIMARY_KEY) == b"true":
                return
            if field.nullable:
                self._ds.alter_columns({"path": "id", "nullable": False})  # type: ignore[dict-item]
            self._ds.update_field_metadata({"id": {_PRIMARY_KEY.decode(): "true"}})
            self.refresh()

        with self._writing():
            _retry(declare)

    def duplicate_ids(self) -> list[str]:
        """Ids stored in more than one row (two ingests that ran at once before ids were a key)."""
        ids = self.to_arrow(["id"])
        counts = ids.group_by("id").aggregate([("id", "count")])
        return [str(i) for i in counts.filter(pc.greater(counts["id_count"], 1))["id"].to_pylist()]

    def remove_duplicate_ids(self, chunk: int = 1000) -> int:
        """Delete all but one row of every id stored more than once; return how many rows were deleted.

        The copy kept is the one with the most columns filled (the most step work), then the first stored.
        """
        duplicated = self.duplicate_ids()
        names = [f.name for f in self.schema if not _is_bytes(f.type)]  # never read image bytes
        removed = 0
        for start in range(0, len(duplicated), chunk):
            listed = ", ".join(_quote(i) for i in duplicated[start : start + chunk])
            rows = self._ds.to_table(columns=names, filter=f"id IN ({listed})", with_row_address=True)
            filled = [sum(rows[n][i].is_valid for n in names) for i in range(rows.num_rows)]
            order = sorted(
                range(rows.num_rows),
                key=lambda i: (rows["id"][i].as_py(), -filled[i], rows["_rowaddr"][i].as_py()),
            )
            seen: set[str] = set()
            drop = []
            for i in order:
                if rows["id"][i].as_py() in seen:
                    drop.append(rows["_rowaddr"][i].as_py())
                seen.add(rows["id"][i].as_py())
            predicate = f"_rowaddr IN ({', '.join(map(str, drop))})"
            with self._writing():
                _retry(lambda predicate=predicate: self._ds.delete(predicate))
            removed += len(drop)
        self.refresh()
        return removed

    def remove_orphan_files(self, older_than: timedelta = ORPHAN_AGE) -> tuple[int, int]:
        """Delete the temporary files interrupted writes left in the table's folders, when untouched for
        `older_than`; return (files, bytes) removed. Files that cannot be removed are left alone.
        A table on object storage has no such files (an upload is invisible until complete): (0, 0)."""
        cutoff = time.time() - older_than.total_seconds()
        files = size = 0
        for root, _dirs, names in os.walk(self.local_path or ""):
            for name in names:
                if not name.startswith(_TEMP_PREFIX):
                    continue
                path = os.path.join(root, name)
                try:
                    info = os.lstat(path)
                    if info.st_mtime > cutoff:
                        continue
                    os.unlink(path)
                except OSError:  # removed by someone else, or a read-only table: not ours to insist on
                    continue
                files, size = files + 1, size + info.st_size
        return files, size

    def ensure_columns(self, fields: Iterable[pa.Field]) -> list[str]:
        """Add the fields the table lacks as all-NULL columns (metadata only); return their names."""
        wanted = list(fields)

        def add() -> list[str]:
            self.refresh()
            missing = [f for f in wanted if f.name not in self.schema.names]
            if missing:
                self._ds.add_columns(missing)
                self.refresh()
            return [f.name for f in missing]

        with self._writing():
            added: list[str] = _retry(add)
        for f in wanted:
            have = self.schema.field(f.name).type
            if have != f.type:
                raise VlError(f"column {f.name!r} is {have} in the table but the step writes {f.type}")
        return added

    def write_back(self, rows: pa.Table) -> None:
        """Fill columns of existing rows keyed on `id`, rewriting only those columns (ids the table lacks
        are ignored); one commit per WRITE_BACK_ROWS rows."""
        if rows.num_rows == 0:
            return
        schema = self.schema
        data = rows.cast(pa.schema([schema.field(n) for n in rows.column_names]))
        for start in range(0, data.num_rows, WRITE_BACK_ROWS):
            self._merge(data.slice(start, WRITE_BACK_ROWS))

    def _merge(self, data: pa.Table) -> None:
        def merge() -> None:
            self._ds.merge_insert("id").when_matched_update_all().write_mode("rewrite_columns").execute(data)

        with self._writing():
            _retry(merge)
            self.refresh()

    # --- versions and metadata -------------------------------------------------------------
    def tag(self, name: str) -> str:
        """Tag the current version as `name-v<version>` and return the tag."""
        self.refresh()
        tag = f"{name}-v{self.version}"
        if tag not in self._ds.tags.list():
            with self._writing():
                self._ds.tags.create(tag, self.version)
        return tag

    def tags(self) -> dict[str, int]:
        """Tag name to version number."""
        return {name: int(info["version"]) for name, info in self._ds.tags.list().items()}

    def versions(self) -> int:
        """How many versions are kept on disk."""
        return len(self._ds.versions())

    def cleanup(self, older_than: timedelta | None = None) -> Cleanup:
        """Delete the files of versions older than `older_than` (default: the retention window,
        `keep_versions()`), except tagged ones; return what was removed."""
        window = keep_versions() if older_than is None else older_than
        with self._writing():
            stats = self._ds.cleanup_old_versions(older_than=window, error_if_tagged_old_versions=False)
        return Cleanup(versions=int(stats.old_versions), bytes=int(stats.bytes_removed))

    def plan_compaction(self, target_rows: int | None = None) -> CompactionPlan:
        """What compaction would rewrite, up to `target_rows` rows a fragment (default: the largest
        fragment's, so full fragments, the units `--shard` splits, are left as they are)."""
        fragments = [f.metadata for f in self._ds.get_fragments()]
        target = target_rows or max((f.physical_rows for f in fragments), default=1)
        options = lance.optimize.CompactionOptions(target_rows_per_fragment=target)
        plan = lance.optimize.Compaction.plan(self._ds, options)
        binary = {
            f.id() for f in self._ds.lance_schema.fields() if _is_bytes(self.schema.field(f.name()).type)
        }
        planned = [frag for task in plan.tasks for frag in task.fragments]
        files = [file for frag in planned for file in frag.files]
        return CompactionPlan(
            fragments=len(planned),
            rows=sum(frag.num_rows for frag in planned),
            bytes=sum(f.file_size_bytes or 0 for f in files),
            image_bytes=sum(f.file_size_bytes or 0 for f in files if binary & set(f.fields)),
            target_rows=target,
            plan=plan,
        )

    def compact(self, plan: CompactionPlan) -> int:
        """Run a compaction plan (image bytes of its fragments are rewritten); return fragments removed."""
        if not plan.plan.tasks:
            return 0
        with self._writing():
            rewrites = [task.execute(self._ds) for task in plan.plan.tasks]
            metrics = lance.optimize.Compaction.commit(self._ds, rewrites)
            self.refresh()
        return int(metrics.fragments_removed) - int(metrics.fragments_added)

    def size_on_disk(self) -> int:
        """Bytes the table's folder takes on disk (on object storage: the current version's data files)."""
        if self.local_path is None:
            return sum(
                f.file_size_bytes or 0 for frag in self._ds.get_fragments() for f in frag.metadata.files
            )
        total = 0
        for root, _dirs, files in os.walk(self.local_path):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.path.getsize(os.path.join(root, f))
        return total

    def set_metadata(self, key: str, value: Any) -> None:
        """Store a JSON value in the table's config under `vl.<key>`."""
        text = json.dumps(value, sort_keys=True, default=str)
        with self._writing():
            _retry(lambda: self._ds.update_config({_META_PREFIX + key: text}))
            self.refresh()

    def metadata(self) -> dict[str, Any]:
        """Every `vl.` metadata value stored on the table."""
        config = self._ds.config()
        return {
            k[len(_META_PREFIX) :]: json.loads(v) for k, v in config.items() if k.startswith(_META_PREFIX)
        }


def _storage_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with binary columns stored uncompressed: image bytes are already compressed, and Lance's
    default compression burnt ~1.3 s of CPU per GB ingested for nothing. The encoding chosen at creation
    applies to every later append. `id`, when present, is the primary key (see `_PRIMARY_KEY`)."""

    def stored(f: pa.Field) -> pa.Field:
        if pa.types.is_large_binary(f.type):
            return f.with_metadata({**(f.metadata or {}), **_NO_COMPRESSION})
        if f.name == "id":
            return f.with_nullable(False).with_metadata({**(f.metadata or {}), _PRIMARY_KEY: b"true"})
        return f

    return pa.schema([stored(f) for f in schema], metadata=schema.metadata)


def _is_bytes(t: pa.DataType) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t))


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _write_error(path: str, exc: BaseException | None, creating: bool = False) -> VlError:
    """A one-line error for a failed write to the table at `path`: which table, what is wrong, what to do."""
    if exc is None or (not creating and local_path(path) is not None and not table_exists(path)):
        return TableWriteError(
            f"table {path!r} was deleted or moved during the run; nothing more was written to it"
        )
    reason = _RUST_LOCATION.sub("", first_line(exc))
    reason = re.sub(r"^(LanceError\(\w+\)|Invalid user input):\s*", "", reason).strip()
    lowered = reason.lower()
    if "ambiguous merge insert" in lowered:
        return DuplicateIdsError(
            f"table {path!r} holds several rows with the same id (two ingests ran at once); "
            f"run `vl repair {path}` to remove the extra copies"
        )
    if any(word in lowered for word in _NOT_WRITABLE):
        why = reason.split(" (os error")[0]
        return TableWriteError(
            f"table {path!r} is not writable ({why}); make its folder writable, or use another table path"
        )
    if "no space left" in lowered:
        return TableWriteError(f"no space left for table {path!r}; free some disk space and rerun to resume")
    action = "create" if creating else "write to"
    return TableWriteError(f"cannot {action} table {path!r}: {reason}")
