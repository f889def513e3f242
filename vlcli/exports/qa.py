"""Q/A exports: a JSONL (DCVLR's shape), LLaVA or ShareGPT file with the images written beside it, and
the `--hf` dataset with one row per Q/A item. Rows and items are chosen here; records are shaped by
`vlcli.exports.records`; files, views and folders are handled by `vlcli.exports.export`."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

import pyarrow as pa
import pyarrow.compute as pc

from vlcli.errors import ExportError, UsageError
from vlcli.exports import files as ex
from vlcli.exports.records import (
    ImageRow,
    QAOptions,
    dcvlr_record,
    llava_samples,
    row_fields,
    selected_items,
    sharegpt_samples,
)
from vlcli.exports.views import CROP_BOX, View, ViewOptions, boxes, column, map_rows
from vlcli.images import file_extension
from vlcli.steps.base import Progress
from vlcli.table.predicate import Predicate, conjoin, parse_where
from vlcli.table.schema import (
    BIN,
    CAPTION,
    DATASET,
    FILTER_KEEP,
    ID,
    IMAGE,
    OBJECTS,
    OCR_TEXT,
    SOURCE,
    SYNTH_DESCRIPTION,
    SYNTH_QA,
    VALIDATE_RESULTS,
)
from vlcli.table.storage import Table

QAFormat = Literal["jsonl", "llava", "sharegpt"]
# Row columns a DCVLR record carries (those the table has).
RECORD_COLUMNS = tuple(c.name for c in (SOURCE, DATASET, BIN, OCR_TEXT, OBJECTS, CAPTION, SYNTH_DESCRIPTION))
# The per-Q/A `--hf` rows: these columns, then the image, then any --columns.
QA_ROW_FIELDS = (
    pa.field("id", pa.string()),
    pa.field("image_id", pa.string()),
    pa.field("qa_index", pa.int32()),
    pa.field("question", pa.string()),
    pa.field("options", pa.list_(pa.string())),
    pa.field("answer", pa.string()),
    pa.field("reasoning", pa.string()),
    pa.field(BIN.name, BIN.type),  # no doc metadata in exported files, as before
)
QA_ROW_NAMES = [f.name for f in QA_ROW_FIELDS]


def has_qa(schema: pa.Schema) -> bool:
    """Whether the table holds generated Q/A (`vl synth` has added its column)."""
    return SYNTH_QA.name in schema.names


def uses_validation(schema: pa.Schema, options: QAOptions) -> bool:
    """Whether only valid items are exported: `vl validate` has run and --all-items is off."""
    return VALIDATE_RESULTS.name in schema.names and not options.all_items


def qa_predicate(
    schema: pa.Schema, where: str | Predicate | None, options: QAOptions, *, all_rows: bool = False
) -> str:
    """The rows a Q/A export reads: ingested, kept by the filter (kept or not filtered yet) unless `where`
    replaces that, with Q/A, validated when only valid items are exported."""
    if not has_qa(schema):
        raise ExportError("the table has no Q/A (no synth_qa column): run `vl synth` first")
    condition = parse_where(where)
    parts: list[str | Predicate] = [] if all_rows else [ex.DEFAULT_WHERE]
    if condition is not None:
        parts.append(condition)
    elif FILTER_KEEP.name in schema.names:
        parts.append("filter_keep IS NULL OR filter_keep = true")
    parts.append(f"{SYNTH_QA.name} IS NOT NULL")
    if uses_validation(schema, options):
        parts.append(f"{VALIDATE_RESULTS.name} IS NOT NULL")
    return conjoin(*parts) or ""


def selection_note(schema: pa.Schema, options: QAOptions) -> str:
    """One line saying which items the export takes."""
    if options.all_items:
        return "every Q/A item, valid or not (--all-items)"
    if VALIDATE_RESULTS.name not in schema.names:
        return "every Q/A item: `vl validate` has not run on this table"
    return "only Q/A items that passed `vl validate` (--all-items takes every item)"


def _items_of(batch: pa.RecordBatch, validated: bool) -> list[tuple[list[Any], int]]:
    """Per row of `batch`: its selected (index, item) pairs and how many items were left out."""
    results = column(batch, VALIDATE_RESULTS.name)
    return [
        selected_items(qa, res, validated=validated) for qa, res in zip(column(batch, SYNTH_QA.name), results)
    ]


def _rows_with_items(
    batches: Iterable[pa.RecordBatch], validated: bool, report: ex.ExportReport, progress: Progress | None
) -> Iterator[pa.RecordBatch]:
    """Each batch narrowed to rows with at least one item to export (so only their images are read and
    rendered); the items left out are counted."""
    for batch in batches:
        chosen = _items_of(batch, validated)
        report.skipped_items += sum(left for _, left in chosen)
        keep = [i for i, (items, _) in enumerate(chosen) if items]
        if progress is not None and len(keep) < batch.num_rows:
            progress.advance(batch.num_rows - len(keep), 0)
        if keep:
            yield batch.take(pa.array(keep, pa.int64()))


# --- JSONL / LLaVA / ShareGPT files ----------------------------------------------------------


class RecordSink:
    """Streams records to a JSON Lines file, or to a JSON list one record per line (flat memory)."""

    def __init__(self, out: TextIO, *, as_list: bool) -> None:
        self.out = out
        self.as_list = as_list
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        text = json.dumps(record, ensure_ascii=False)
        if self.as_list:
            self.out.write(("[\n" if self.count == 0 else ",\n") + text)
        else:
            self.out.write(text + "\n")
        self.count += 1

    def close(self) -> None:
        """End the list (a JSON Lines file needs nothing)."""
        if self.as_list:
            self.out.write("[]\n" if self.count == 0 else "\n]\n")


def check_file_target(path: Path, images: Path | None, table: Table, overwrite: bool) -> None:
    """Refuse a file target that exists (unless `overwrite`), is a folder, lies inside the image folder or
    the table, or whose folder cannot be made (a missing folder is made when the export writes)."""
    resolved = path.resolve()
    flag = f"{str(path)!r}"
    local = table.local_path  # a file:// URI names a folder too; object storage cannot hold the file
    if local is not None and resolved.is_relative_to(Path(local).resolve()):
        raise ExportError(f"{flag} is inside the table {table.path!r}: pick another file")
    if images is not None and resolved.is_relative_to(images.resolve()):
        raise UsageError(
            f"{flag} is inside the --images folder: write it beside that folder, e.g. out/train.json with "
            "--images out/images"
        )
    if resolved.is_dir():
        raise ExportError(f"{flag} is a folder: give a file name")
    existing = next(p for p in resolved.parents if p.exists())
    if not existing.is_dir():
        raise ExportError(f"{str(existing)!r} is a file, so {flag} cannot be written: pick another path")
    if resolved.exists() and not overwrite:
        raise ExportError(f"{flag} exists: pass --overwrite to replace it")


def qa_file_writer(
    table: Table,
    predicate: str,
    fmt: QAFormat,
    path: Path,
    images: Path | None,
    view: ViewOptions,
    workers: int,
    options: QAOptions,
    report: ex.ExportReport,
) -> ex.Writer:
    """The `--jsonl`/`--llava`/`--sharegpt` export: records streamed to `path` (through a temporary file
    renamed into place), each row's view written into `images` first when given."""
    schema = table.schema
    validated = uses_validation(schema, options)
    reads = [ID.name, SYNTH_QA.name] + [c for c in RECORD_COLUMNS if c in schema.names]
    reads += [VALIDATE_RESULTS.name] if validated else []
    if images is not None:
        report.by_dataset = len(ex.datasets_of(table, predicate)) > 1
        reads += [IMAGE.name] + ([CROP_BOX] if view.crop and CROP_BOX in schema.names else [])
    reads = list(dict.fromkeys(reads))
    shape = _shaper(fmt, options)
    base = path.resolve().parent

    def write(progress: Progress | None) -> list[str]:
        if images is not None:
            ex.write_marker(images, table, report, view)
        batches = _rows_with_items(ex.scan_rows(table, reads, predicate), validated, report, progress)
        part = path.with_name(f".{path.name}.part")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with _new_text_file(part) as out:
                sink = RecordSink(out, as_list=fmt != "jsonl")
                for batch, files in _with_image_files(batches, images, view, workers, report, progress):
                    for row, items, file in zip(batch.to_pylist(), _items_of(batch, validated), files):
                        if file is None:
                            continue  # its image could not be written: no record points at a missing file
                        image = Path(os.path.relpath(file, base)).as_posix() if images is not None else None
                        record_row = ImageRow(row[ID.name], image, row_fields(row))
                        report.items += len(items[0])
                        for record in shape(record_row, items[0]):
                            sink.write(record)
                sink.close()
                report.samples = sink.count
            os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)
        return [path.name]

    return write


Shaper = Callable[[ImageRow, list[Any]], Iterable[dict[str, Any]]]


def _shaper(fmt: QAFormat, options: QAOptions) -> Shaper:
    if fmt == "llava":
        return functools.partial(llava_samples, options=options)
    if fmt == "sharegpt":
        return functools.partial(sharegpt_samples, options=options)
    return lambda row, items: (dcvlr_record(row, index, item) for index, item in items)


def _new_text_file(path: Path) -> TextIO:
    """A new file opened for writing, never through a link (O_EXCL | O_NOFOLLOW)."""
    path.unlink(missing_ok=True)  # a temporary file left by a killed export
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    return os.fdopen(fd, "w", encoding="utf-8")


def _with_image_files(
    batches: Iterable[pa.RecordBatch],
    images: Path | None,
    view: ViewOptions,
    workers: int,
    report: ex.ExportReport,
    progress: Progress | None,
) -> Iterator[tuple[pa.RecordBatch, list[Path | str | None]]]:
    """Each batch with the file each row's view was written to (None where it could not be), or with the
    row ids when no images are written."""
    if images is None:
        for batch in batches:
            report.rows += batch.num_rows
            if progress is not None:
                progress.advance(batch.num_rows, 0)
            yield batch, list(column(batch, ID.name))
        return

    def tasks(batch: pa.RecordBatch) -> list[Callable[[], tuple[View, int]]]:
        folders = [_folder(images, d, report.by_dataset) for d in column(batch, DATASET.name)]
        rows = zip(folders, column(batch, ID.name), column(batch, IMAGE.name), boxes(batch, view))
        return [functools.partial(ex.write_one, f, i, data, box, view) for f, i, data, box in rows]

    for batch, written in map_rows(batches, tasks, workers):
        views = [v for v, _ in written]
        ex.tally(report, views)
        report.bytes_written += sum(n for _, n in written)
        if progress is not None:
            progress.advance(batch.num_rows, sum(v.skipped is not None for v in views))
        folders = [_folder(images, d, report.by_dataset) for d in column(batch, DATASET.name)]
        files: list[Path | str | None] = [
            None if v.skipped is not None or v.format is None else folder / f"{i}.{file_extension(v.format)}"
            for v, folder, i in zip(views, folders, column(batch, ID.name))
        ]
        yield batch.drop_columns([IMAGE.name]), files


def _folder(images: Path, dataset: str | None, by_dataset: bool) -> Path:
    return images / ex.dataset_folder(dataset) if by_dataset else images


# --- the per-Q/A `--hf` dataset --------------------------------------------------------------


def qa_extra_columns(schema: pa.Schema, columns: Sequence[str] | None) -> list[str]:
    """Row columns added to each Q/A row by --columns (none by default)."""
    wanted = [c.strip() for c in columns or [] if c.strip()]
    unknown = [c for c in wanted if c not in schema.names]
    if unknown:
        listed = ", ".join(map(repr, unknown))
        raise UsageError(f"--columns: unknown column {listed} (the table has: {', '.join(schema.names)})")
    taken = {*QA_ROW_NAMES, IMAGE.name}
    return [c for c in dict.fromkeys(wanted) if c not in taken]


def qa_hf_schema(table_schema: pa.Schema, extras: Sequence[str], image: bool) -> pa.Schema:
    """The per-Q/A rows' Arrow schema with Hugging Face features (`image` an Image feature)."""
    fields = [*QA_ROW_FIELDS, *(table_schema.field(c) for c in extras)]
    if image:
        fields.insert(3, pa.field(IMAGE.name, pa.large_binary()))
    plain = pa.schema(fields)
    return ex.hf_schema(plain, plain.names)


def qa_hf_writer(
    table: Table,
    predicate: str,
    target: Path,
    shard_rows: int,
    view: ViewOptions,
    workers: int,
    options: QAOptions,
    extras: list[str],
    image: bool,
    report: ex.ExportReport,
) -> ex.Writer:
    """The `--hf` export of a table with Q/A: one row per exported item, its image the row's view."""
    schema_in = table.schema
    validated = uses_validation(schema_in, options)
    schema = qa_hf_schema(schema_in, extras, image)
    reads = [ID.name, SYNTH_QA.name, *([VALIDATE_RESULTS.name] if validated else [])]
    reads += [BIN.name] if BIN.name in schema_in.names else []
    reads += extras + ([IMAGE.name] if image else [])
    reads = list(dict.fromkeys(reads))
    crops = image and view.crop and CROP_BOX in schema_in.names
    scan = list(dict.fromkeys([*reads, CROP_BOX])) if crops else reads
    report.columns = list(schema.names)

    def write(progress: Progress | None) -> list[str]:
        rows = _rows_with_items(ex.scan_rows(table, scan, predicate), validated, report, progress)
        if image:
            rows = ex.viewed_rows(rows, reads, view, workers, report, progress)
        else:
            rows = _counted(rows, report, progress)
        items = (part for batch in rows for part in _explode(batch, validated, extras, report))
        return ex.write_hf(items, target, schema, shard_rows)

    return write


def _counted(
    batches: Iterable[pa.RecordBatch], report: ex.ExportReport, progress: Progress | None
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        report.rows += batch.num_rows
        if progress is not None:
            progress.advance(batch.num_rows, 0)
        yield batch


def _explode(
    batch: pa.RecordBatch, validated: bool, extras: list[str], report: ex.ExportReport
) -> Iterator[pa.RecordBatch]:
    """One row per selected item of each row of `batch`, images repeated, in slices of bounded bytes."""
    take: list[int] = []
    values: dict[str, list[Any]] = {
        n: [] for n in ("id", "qa_index", "question", "options", "answer", "reasoning")
    }
    for r, (row_id, (items, _)) in enumerate(zip(column(batch, ID.name), _items_of(batch, validated))):
        for index, item in items:
            take.append(r)
            values["id"].append(f"{row_id}-{index}")
            values["qa_index"].append(index)
            values["question"].append(item.question)
            values["options"].append(list(item.options))
            values["answer"].append(item.answer)
            values["reasoning"].append(item.reasoning)
    report.items += len(take)
    rows = pa.array(take, pa.int64())
    arrays: dict[str, pa.Array] = {
        "id": pa.array(values["id"], pa.string()),
        "image_id": batch.column(ID.name).take(rows),
        "qa_index": pa.array(values["qa_index"], pa.int32()),
        "question": pa.array(values["question"], pa.string()),
        "options": pa.array(values["options"], pa.list_(pa.string())),
        "answer": pa.array(values["answer"], pa.string()),
        "reasoning": pa.array(values["reasoning"], pa.string()),
        BIN.name: batch.column(BIN.name).take(rows)
        if BIN.name in batch.schema.names
        else pa.nulls(len(take), pa.string()),
    }
    for name in [IMAGE.name, *extras]:
        if name in batch.schema.names:
            arrays[name] = batch.column(name).take(rows)
    out = pa.RecordBatch.from_pydict(arrays)
    yield from _byte_bounded(out)


def _byte_bounded(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """`batch` in slices whose image bytes stay under MAX_CHUNK_BYTES (Arrow `binary` offsets are 32-bit)."""
    if IMAGE.name not in batch.schema.names or batch.num_rows == 0:
        yield batch
        return
    images = batch.column(IMAGE.name)
    data = images.field("bytes") if pa.types.is_struct(images.type) else images
    sizes = pc.fill_null(pc.binary_length(data), 0).to_pylist()
    start, size = 0, 0
    for end, n in enumerate(sizes):
        if end > start and size + n > ex.MAX_CHUNK_BYTES:
            yield batch.slice(start, end - start)
            start, size = end, 0
        size += n
    yield batch.slice(start)
