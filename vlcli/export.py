"""Export rows to Hugging Face `datasets` or sharded Parquet, with the original image bytes untouched."""

from __future__ import annotations

import fnmatch
import math
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlcli.errors import ExportError, QueryError, UsageError
from vlcli.schema import ID, IMAGE, INGEST_STATUS
from vlcli.steps.base import Progress
from vlcli.storage import Table

DEFAULT_SHARD_ROWS = 1000
DEFAULT_WHERE = f"{INGEST_STATUS.name} = 'ok'"
# Image rows are big: small scan batches keep memory flat; metadata-only exports can take more.
IMAGE_BATCH_ROWS = 64
PLAIN_BATCH_ROWS = 8192
# Arrow `binary` (what the Hugging Face Image feature stores) caps one array at 2 GiB.
MAX_CHUNK_BYTES = 1 << 30
TMP_DIR = ".vl-export-tmp"
# Everything an export writes into its folder; --overwrite removes these and nothing else.
EXPORT_FILES = ("part-*.parquet", "data-*-of-*.arrow", "dataset_info.json", "state.json", TMP_DIR)

Format = Literal["hf", "parquet"]


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

    def load_hint(self) -> str:
        """Python that loads the export back."""
        if self.format == "hf":
            return f"datasets.load_from_disk({self.target!r})"
        files = str(Path(self.target) / "part-*.parquet")
        return f"datasets.load_dataset('parquet', data_files={files!r}, split='train')"


def export(
    table: Table,
    *,
    hf: str | Path | None = None,
    parquet: str | Path | None = None,
    where: str | None = None,
    columns: Sequence[str] | None = None,
    image: bool = True,
    all_rows: bool = False,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> ExportReport:
    """Write the rows matching `where` (and `ingest_status = 'ok'` unless `all_rows`) to `hf` or `parquet`."""
    started = time.perf_counter()
    kind, target = _pick_target(hf, parquet)
    if shard_rows < 1:
        raise UsageError("--shard-rows must be at least 1")
    names = select_columns(table.schema, columns, image=image)
    predicate = row_filter(where, all_rows=all_rows)
    try:
        total = table.count(predicate)
    except QueryError as exc:
        raise QueryError(f"--where {where!r}: {_reason(exc, predicate)}") from exc
    schema = hf_schema(table.schema, names)
    _prepare_target(target, table, overwrite)  # only once every option has been checked
    report = ExportReport(format=kind, target=str(target), columns=names, where=predicate)
    batches = _scan(table, names, predicate)
    if progress is not None:
        progress.start(f"export {kind}", total)
    try:
        counted = _counting(batches, report, progress)
        if kind == "parquet":
            report.files = write_parquet_shards(counted, target, schema, shard_rows)
        else:
            report.files = _write_hf(
                counted, target, schema, num_shards=max(1, math.ceil(total / shard_rows))
            )
    except BaseException:
        _remove_export_files(target)
        raise
    finally:
        if progress is not None:
            progress.finish()
    report.bytes_written = sum((target / f).stat().st_size for f in report.files)
    report.seconds = time.perf_counter() - started
    return report


# --- options ---------------------------------------------------------------------------------


def _pick_target(hf: str | Path | None, parquet: str | Path | None) -> tuple[Format, Path]:
    """Exactly one destination."""
    if (hf is None) == (parquet is None):
        raise UsageError("give exactly one of --hf DIR or --parquet DIR")
    if hf is not None:
        return "hf", Path(hf)
    assert parquet is not None
    return "parquet", Path(parquet)


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


def row_filter(where: str | None, *, all_rows: bool = False) -> str | None:
    """The Lance predicate for the exported rows: successfully ingested ones, narrowed by `where`."""
    parts = ([] if all_rows else [DEFAULT_WHERE]) + ([f"({where})"] if where and where.strip() else [])
    return " AND ".join(parts) or None


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
        foreign = [p.name for p in resolved.iterdir() if not _is_export_file(p.name)]
        if foreign:
            raise ExportError(
                f"{str(target)!r} holds files a vl export did not write ({foreign[0]!r}): "
                "--overwrite only replaces a previous export; pick an empty folder"
            )
        _remove_export_files(resolved)
    resolved.mkdir(parents=True, exist_ok=True)


def _is_export_file(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in EXPORT_FILES)


def _remove_export_files(folder: Path) -> None:
    """Delete what an export writes in `folder`, leaving anything else alone."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if not _is_export_file(path.name):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


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
    for batch in table.scan(names, predicate, batch_size=batch_rows):
        yield from _split_by_bytes(batch)


def _split_by_bytes(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """Halve a batch until its image bytes fit one Arrow `binary` array."""
    if IMAGE.name not in batch.schema.names or batch.num_rows <= 1:
        yield batch
        return
    size = pc.sum(pc.binary_length(batch.column(IMAGE.name))).as_py() or 0
    if size <= MAX_CHUNK_BYTES:
        yield batch
        return
    half = batch.num_rows // 2
    yield from _split_by_bytes(batch.slice(0, half))
    yield from _split_by_bytes(batch.slice(half))


def _counting(
    batches: Iterable[pa.RecordBatch], report: ExportReport, progress: Progress | None
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield batch
        report.rows += batch.num_rows
        if progress is not None:
            progress.advance(batch.num_rows, 0)


def to_hf_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Shape a scanned batch to the export schema: `image` becomes the `{bytes, path}` struct."""
    arrays = []
    for f in schema:
        column = batch.column(f.name)
        if f.name == IMAGE.name:
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
    """Write `part-00000.parquet`, ... of at most `shard_rows` rows each; return their names."""
    names: list[str] = []
    writer: pq.ParquetWriter | None = None
    in_shard = 0
    try:
        for batch in batches:
            out = to_hf_batch(batch, schema)
            while out.num_rows:
                if writer is None or in_shard == shard_rows:
                    if writer is not None:
                        writer.close()
                    names.append(f"part-{len(names):05d}.parquet")
                    writer = pq.ParquetWriter(folder / names[-1], schema)
                    in_shard = 0
                take = min(shard_rows - in_shard, out.num_rows)
                writer.write_batch(out.slice(0, take))
                in_shard += take
                out = out.slice(take)
        if writer is None:  # no rows: one empty shard still carries the schema and features
            names.append("part-00000.parquet")
            writer = pq.ParquetWriter(folder / names[-1], schema)
    finally:
        if writer is not None:
            writer.close()
    return names


def _write_hf(
    batches: Iterable[pa.RecordBatch], folder: Path, schema: pa.Schema, num_shards: int
) -> list[str]:
    """Stream rows to one Arrow file inside `folder`, then let `datasets` save it there in shards."""
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
        dataset.save_to_disk(str(folder), num_shards=min(num_shards, max(1, len(dataset))))
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
        del dataset
        shutil.rmtree(tmp)
    return sorted(p.name for p in folder.iterdir() if _is_export_file(p.name))
