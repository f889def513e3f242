"""Export rows to Hugging Face `datasets`, sharded Parquet or one image file per row, and Q/A items to
JSONL (DCVLR's shape), LLaVA or ShareGPT files (`vlcli.exports.qa`); rows with a `crop_box` export their
crop view unless cropping is turned off."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from vlcli.errors import ExportError, QueryError, UsageError
from vlcli.exports import qa as qx
from vlcli.exports.files import (
    DEFAULT_SHARD_ROWS,
    DEFAULT_WHERE,
    IMAGE_FILE,
    MARKER,
    QA_FILE_FORMATS,
    TMP_DIR,
    ExportReport,
    Format,
    Writer,
    counted_rows,
    datasets_of,
    hf_schema,
    is_export_file,
    scan_rows,
    viewed_rows,
    write_hf,
    write_image_files,
    write_marker,
    write_parquet_shards,
)
from vlcli.exports.records import QAOptions
from vlcli.exports.views import CROP_BOX, ViewOptions, default_workers
from vlcli.hub import check_repo_id, hub_token, push_dataset
from vlcli.images import image_extensions
from vlcli.steps.base import Progress
from vlcli.table.predicate import Predicate, conjoin, parse_where
from vlcli.table.schema import CONTAM_OF, DATASET, ID, IMAGE
from vlcli.table.storage import Table


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
    if not all_rows and CONTAM_OF.name in table.schema.names:  # evaluation images never leave, --where or not
        predicate = conjoin(predicate, f"{CONTAM_OF.name} IS NULL")
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
        report.by_dataset = len(datasets_of(table, predicate)) > 1
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
        batches = scan_rows(table, reads, predicate)
        if IMAGE.name in names:
            rows = viewed_rows(batches, names, view, workers, report, progress)
        else:
            rows = counted_rows(batches, report, progress)
        if kind == "parquet":
            return write_parquet_shards(rows, target, schema, shard_rows)
        return write_hf(rows, target, schema, shard_rows)

    return write


def _images_writer(
    table: Table, predicate: str | None, target: Path, view: ViewOptions, workers: int, report: ExportReport
) -> Writer:
    """The `--images` export: one file per row, in dataset folders when the rows span several datasets."""
    reads = [ID.name, IMAGE.name]
    reads += [CROP_BOX] if _crops(table, view) else []
    reads += [DATASET.name] if report.by_dataset else []

    def write(progress: Progress | None) -> list[str]:
        write_marker(target, table, report, view)
        batches = scan_rows(table, reads, predicate)
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
    local = table.local_path  # a file:// URI names a folder too; object storage cannot overlap a folder
    table_dir = Path(local).resolve() if local is not None else None
    if table_dir is not None and (resolved.is_relative_to(table_dir) or table_dir.is_relative_to(resolved)):
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


def _written_by_export(path: Path, marked: bool) -> bool:
    """Whether an export wrote `path`; image files and dataset folders count only beside a MARKER."""
    if is_export_file(path.name):
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


# Names callers import from here, some defined in export_files.
__all__ = [
    "DEFAULT_SHARD_ROWS",
    "MARKER",
    "ExportReport",
    "export",
    "row_filter",
    "select_columns",
    "write_parquet_shards",
]
