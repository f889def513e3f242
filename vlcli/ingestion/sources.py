"""Ingest sources: image folders, path lists, Parquet, saved and hub Hugging Face datasets, as records."""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from vlcli.errors import SourceError, UsageError
from vlcli.table.schema import INGEST_COLUMNS
from vlcli.text import first_line

IMAGE_EXTENSIONS = frozenset(
    [
        ".jpg",
        ".jpeg",
        ".png",
        ".gif",
        ".bmp",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".ico",
        ".jfif",
        ".avif",
        ".heic",
        ".heif",
    ]
)
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
PREFERRED_IMAGE_NAMES = ("image", "img", "picture")
SOURCE_HELP = (
    "pass a folder of images, a text file of paths (.txt), a Parquet file or folder, "
    "a saved Hugging Face dataset folder, or a hub dataset id like owner/name"
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ARROW_BATCH_ROWS = 64  # image rows per Arrow batch read from Parquet / datasets: bounds memory


@dataclass(frozen=True)
class Record:
    """One item to ingest: where it came from, and its bytes or the path to read them from."""

    source: str
    dataset: str
    path: str | None = None  # read by the ingest workers when `data` is None
    data: bytes | None = None
    error: str | None = None  # the item has no bytes at all (e.g. a NULL image cell)
    size: int = 0  # expected bytes, to bound how much is read ahead
    extra: tuple[Any, ...] = ()  # values of the carried columns, in `Source.extra_fields` order


class Source(ABC):
    """A stream of records plus what is known up front: kind, total, carried columns, ignored files."""

    kind: ClassVar[str] = "source"
    label: ClassVar[str] = "source"  # for messages

    def __init__(self, location: str, dataset: str) -> None:
        self.location = location
        self.dataset = dataset
        self.total: int | None = None
        self.extra_fields: list[pa.Field] = []
        self.ignored: Counter[str] = Counter()  # file extension -> files skipped for it

    @abstractmethod
    def records(self) -> Iterator[Record]:
        """Yield every record, in a deterministic order."""

    def describe(self) -> str:
        """A short human description, e.g. "folder /data/cats"."""
        return f"{self.label} {self.location}"


# --- dataset naming --------------------------------------------------------------------------


def layout_dataset(path: str) -> str | None:
    """The `<dataset>` of a file under `data/<dataset>/train/`, else None."""
    parts = Path(path).parent.parts
    for i in range(len(parts) - 1, 1, -1):
        if parts[i] == "train" and parts[i - 2] == "data":
            return parts[i - 1]
    return None


def _name_of(path: str) -> str:
    p = Path(path)
    return (p.stem if p.is_file() else p.name) or "dataset"


# --- files: folders, path lists, single images ----------------------------------------------


def walk_files(root: str, unreadable: list[tuple[str, str]] | None = None) -> Iterator[str]:
    """Every non-hidden entry under `root` that is not a folder (files, links of any kind, FIFOs, devices),
    recursively, sorted; links to folders are yielded, not followed. A subfolder that cannot be listed is
    appended to `unreadable` as (path, reason) and the walk goes on; an unlistable `root` is a SourceError."""
    yield from _walk(root, [] if unreadable is None else unreadable, top=True)


def _walk(folder: str, unreadable: list[tuple[str, str]], top: bool) -> Iterator[str]:
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        if top:
            raise SourceError(f"cannot list folder {folder!r}: {exc.strerror or exc}") from exc
        unreadable.append((folder, f"cannot list folder ({exc.strerror or exc})"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if _is_folder(entry):
            yield from _walk(entry.path, unreadable, top=False)
        else:
            yield entry.path  # whatever it is, it gets a row (an error row if unusable) or a count


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:  # could not even tell: yield it, so reading it reports why
        return False


def is_image_name(path: str) -> bool:
    """Whether the file name has an image extension."""
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class _FileSource(Source):
    """Records for local files, read later by the ingest workers."""

    def __init__(self, location: str, dataset: str, override: bool) -> None:
        super().__init__(location, dataset)
        self._override = override

    def _record(self, path: str) -> Record:
        dataset = self.dataset if self._override else (layout_dataset(path) or self.dataset)
        return Record(source=path, dataset=dataset, path=path, size=_file_size(path))

    @abstractmethod
    def paths(self) -> Iterator[str]:
        """Absolute paths of the files to ingest."""

    def records(self) -> Iterator[Record]:
        """One record per path."""
        return (self._record(p) for p in self.paths())


@dataclass
class Survey:
    """What a folder holds: how many image files, which Parquet files, the other files by extension, and
    the subfolders that could not be listed (with why)."""

    images: int = 0
    parquet: list[str] = field(default_factory=list)
    others: Counter[str] = field(default_factory=Counter)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def survey(root: str) -> Survey:
    """Walk `root` once and sort its files into images, Parquet files and others."""
    found = Survey()
    for path in walk_files(root, found.unreadable):
        ext = os.path.splitext(path)[1].lower()
        if ext in IMAGE_EXTENSIONS:
            found.images += 1
        else:
            found.others[ext or "(no extension)"] += 1
            if ext == ".parquet" and os.path.isfile(path):  # a FIFO named .parquet is not read
                found.parquet.append(path)
    return found


class FolderSource(_FileSource):
    """A folder of images, walked recursively; files without an image extension are counted, not read."""

    kind = "folder"
    label = "folder"

    def __init__(self, root: str, dataset: str | None = None, found: Survey | None = None) -> None:
        root = os.path.abspath(root)
        super().__init__(root, dataset or _name_of(root), override=dataset is not None)
        found = found or survey(root)
        self.total = found.images + len(found.unreadable)
        self.ignored = Counter(found.others)

    def paths(self) -> Iterator[str]:
        """Image files under the folder, sorted."""
        return (p for p in walk_files(self.location) if is_image_name(p))

    def records(self) -> Iterator[Record]:
        """One record per image file, then an error record per subfolder that could not be listed."""
        unreadable: list[tuple[str, str]] = []
        for path in walk_files(self.location, unreadable):
            if is_image_name(path):
                yield self._record(path)
        for folder, reason in unreadable:
            dataset = self.dataset if self._override else (layout_dataset(folder) or self.dataset)
            yield Record(source=folder, dataset=dataset, error=reason)


class ListSource(_FileSource):
    """A text file with one path per line (relative to its folder); blank lines and # comments skipped."""

    kind = "list"
    label = "list of paths"

    def __init__(self, path: str, dataset: str | None = None) -> None:
        path = os.path.abspath(path)
        super().__init__(path, dataset or _name_of(path), override=dataset is not None)
        self.total = sum(1 for _ in self._lines())
        if self.total == 0:
            raise SourceError(f"{path!r} lists no paths (one path per line; # starts a comment)")

    def _lines(self) -> Iterator[str]:
        try:
            with open(self.location, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        yield line
        except UnicodeDecodeError as exc:
            raise SourceError(f"{self.location!r} is not a UTF-8 text file of paths ({SOURCE_HELP})") from exc

    def paths(self) -> Iterator[str]:
        """Listed paths made absolute against the list file's folder."""
        base = os.path.dirname(self.location)
        return (os.path.abspath(os.path.join(base, os.path.expanduser(line))) for line in self._lines())


class SingleFileSource(_FileSource):
    """One image file."""

    kind = "file"
    label = "image file"

    def __init__(self, path: str, dataset: str | None = None) -> None:
        path = os.path.abspath(path)
        super().__init__(
            path, dataset or os.path.basename(os.path.dirname(path)), override=dataset is not None
        )
        self.total = 1

    def paths(self) -> Iterator[str]:
        """The file itself."""
        return iter([self.location])


# --- tables: Parquet and Hugging Face datasets ----------------------------------------------


def hf_image_columns(schema: pa.Schema) -> list[str]:
    """Columns whose Hugging Face feature (from the schema metadata) is `Image`."""
    meta = (schema.metadata or {}).get(b"huggingface")
    if not meta:
        return []
    try:
        features = json.loads(meta).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return []
    if not isinstance(features, dict):
        return []
    return [n for n, f in features.items() if isinstance(f, dict) and f.get("_type") == "Image"]


def _is_binary(t: pa.DataType) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t))


def _is_bytes_struct(t: pa.DataType) -> bool:
    if not pa.types.is_struct(t):
        return False
    index = t.get_field_index("bytes")
    return index >= 0 and _is_binary(t.field(index).type)


def _describe_columns(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} ({f.type})" for f in schema) or "none"


def find_image_column(schema: pa.Schema, override: str | None, where: str) -> str:
    """The image column: `override`, else an HF Image feature, a {bytes} struct, or a binary column."""
    if override is not None:
        if override not in schema.names:
            raise UsageError(
                f"--image-column: no column {override!r} in {where}; columns: {_describe_columns(schema)}"
            )
        t = schema.field(override).type
        if not (_is_binary(t) or _is_bytes_struct(t)):
            raise UsageError(
                f"--image-column: {override!r} is {t}, not image bytes (binary or a struct with bytes)"
            )
        return override
    hf = set(hf_image_columns(schema))
    tiers = (
        [f.name for f in schema if f.name in hf and _is_bytes_struct(f.type)],
        [f.name for f in schema if _is_bytes_struct(f.type)],
        [f.name for f in schema if _is_binary(f.type)],
    )
    for names in tiers:
        if names:
            preferred = [n for n in names if n.lower() in PREFERRED_IMAGE_NAMES]
            return str((preferred or names)[0])
    raise SourceError(
        f"no image column in {where} (columns: {_describe_columns(schema)}); pass --image-column NAME"
    )


def carried_fields(schema: pa.Schema, keep: Iterable[str], image_column: str, where: str) -> list[pa.Field]:
    """Fields for the `--keep-columns`, with their source Arrow types; clear errors for bad names."""
    reserved = {c.name for c in INGEST_COLUMNS}
    fields: list[pa.Field] = []
    for name in dict.fromkeys(keep):
        if name == image_column:
            raise UsageError(f"--keep-columns: {name!r} is the image column; its bytes are stored in `image`")
        if name in reserved or name.endswith("_status"):
            raise UsageError(
                f"--keep-columns: {name!r} is a vl column name; rename it in the source to carry it along"
            )
        if name not in schema.names:
            raise UsageError(
                f"--keep-columns: no column {name!r} in {where}; columns: {_describe_columns(schema)}"
            )
        fields.append(pa.field(name, schema.field(name).type))
    return fields


def _image_cells(column: pa.ChunkedArray | pa.Array) -> list[tuple[bytes | None, str | None]]:
    """(bytes, path) per row of an image column; HF stores images as {bytes, path} structs."""
    if _is_bytes_struct(column.type):
        cells = []
        for cell in column.to_pylist():
            cell = cell or {}
            cells.append((cell.get("bytes"), cell.get("path")))
        return cells
    return [(b, None) for b in column.to_pylist()]


def _inside(path: str, folder: str) -> bool:
    """Whether `path`, links resolved, lies under `folder`."""
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, base]) == base


class _ArrowSource(Source):
    """Sources read as Arrow batches: one image column, optional carried columns.

    An image cell may hold only a `path` (Hugging Face's Image by reference). It is read relative to
    `base`, the dataset's own folder, and only when it stays inside it: a dataset from elsewhere must not
    make ingest read /etc/passwd or ~/.ssh into the table. `allow_external_paths` lifts the restriction.
    """

    def __init__(
        self, location: str, dataset: str, base: str | None = None, allow_external_paths: bool = False
    ) -> None:
        super().__init__(location, dataset)
        self.image_column = ""
        self.keep: list[str] = []
        self.base = base
        self.allow_external_paths = allow_external_paths

    def _cell_record(
        self, source: str, dataset: str, data: bytes | None, path: str | None, extra: tuple[Any, ...]
    ) -> Record:
        if data is not None:
            return Record(source=source, dataset=dataset, data=data, size=len(data), extra=extra)
        if not path:
            return Record(source=source, dataset=dataset, error="no image in this row", extra=extra)
        full = os.path.join(self.base, path) if self.base else path  # an absolute path stays as it is
        if not self.allow_external_paths and (self.base is None or not _inside(full, self.base)):
            reason = (
                f"image path outside the dataset folder ({path!r}); pass --allow-external-paths to read it"
            )
            return Record(source=source, dataset=dataset, error=reason, extra=extra)
        if not os.path.lexists(full):
            reason = f"no image bytes (path {path!r} not found)"
            return Record(source=source, dataset=dataset, error=reason, extra=extra)
        full = os.path.abspath(full)
        return Record(source=source, dataset=dataset, path=full, size=_file_size(full), extra=extra)

    def _configure(self, schema: pa.Schema, image_column: str | None, keep: Iterable[str]) -> None:
        where = self.describe()
        self.image_column = find_image_column(schema, image_column, where)
        self.extra_fields = carried_fields(schema, keep, self.image_column, where)
        self.keep = [f.name for f in self.extra_fields]

    @property
    def columns(self) -> list[str]:
        """The columns read from the source."""
        return [self.image_column, *self.keep]

    def _batch_records(
        self, batch: pa.Table | pa.RecordBatch, start: int, prefix: str, dataset: str
    ) -> Iterator[Record]:
        cells = _image_cells(batch.column(self.image_column))
        extras = [batch.column(name).to_pylist() for name in self.keep]
        for i, (data, path) in enumerate(cells):
            extra = tuple(values[i] for values in extras)
            yield self._cell_record(f"{prefix}{start + i}", dataset, data, path, extra)


class ParquetSource(_ArrowSource):
    """One Parquet file or a folder of them (recursive, sorted)."""

    kind = "parquet"
    label = "Parquet"

    def __init__(
        self,
        location: str,
        files: list[str],
        dataset: str | None = None,
        image_column: str | None = None,
        keep: Iterable[str] = (),
        allow_external_paths: bool = False,
    ) -> None:
        import pyarrow.parquet as pq

        location = os.path.abspath(location)
        base = location if os.path.isdir(location) else os.path.dirname(location)
        super().__init__(location, dataset or _name_of(location), base, allow_external_paths)
        self._override = dataset is not None
        self.files = [os.path.abspath(f) for f in files]
        try:
            schema = pq.read_schema(self.files[0])
            self.total = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"cannot read Parquet {location!r}: {exc}") from exc
        self._configure(schema, image_column, keep)

    def records(self) -> Iterator[Record]:
        """Rows of every file in order; source is `<file>#<row>`."""
        import pyarrow.parquet as pq

        for path in self.files:
            dataset = self.dataset if self._override else (layout_dataset(path) or self.dataset)
            try:
                batches = pq.ParquetFile(path).iter_batches(
                    batch_size=_ARROW_BATCH_ROWS, columns=self.columns
                )
                start = 0
                for batch in batches:
                    yield from self._batch_records(batch, start, f"{path}#", dataset)
                    start += batch.num_rows
            except (OSError, pa.ArrowException) as exc:
                raise SourceError(f"cannot read Parquet file {path!r}: {exc}") from exc


class SavedDatasetSource(_ArrowSource):
    """A Hugging Face dataset written with `save_to_disk` (a Dataset, or a DatasetDict and a split)."""

    kind = "hf-disk"
    label = "saved dataset"

    def __init__(
        self,
        location: str,
        split: str = "train",
        dataset: str | None = None,
        image_column: str | None = None,
        keep: Iterable[str] = (),
        allow_external_paths: bool = False,
    ) -> None:
        import datasets

        location = os.path.abspath(location)
        super().__init__(location, dataset or _name_of(location), location, allow_external_paths)
        try:
            loaded = datasets.load_from_disk(location)
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot load the saved dataset {location!r}: {exc}") from exc
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise UsageError(f"--split: no split {split!r} in {location!r}; splits: {', '.join(loaded)}")
            loaded = loaded[split]
        self.split = str(loaded.split) if loaded.split is not None else split
        self._ds = loaded
        self.total = len(loaded)
        self._configure(loaded.data.schema, image_column, keep)

    def records(self) -> Iterator[Record]:
        """Rows in order; source is `<folder>#<split>/<index>`."""
        # Arrow format hands over the Image feature's storage: the original bytes, never decoded.
        table = self._ds.select_columns(self.columns).with_format("arrow")
        start = 0
        for batch in table.iter(batch_size=_ARROW_BATCH_ROWS):
            yield from self._batch_records(batch, start, f"{self.location}#{self.split}/", self.dataset)
            start += batch.num_rows


class HubSource(_ArrowSource):
    """A hub dataset (or anything `datasets.load_dataset` opens), streamed: no total, flat memory."""

    kind = "hub"

    def __init__(
        self,
        name: str,
        split: str = "train",
        dataset: str | None = None,
        image_column: str | None = None,
        keep: Iterable[str] = (),
        allow_external_paths: bool = False,
    ) -> None:
        local = os.path.abspath(name) if os.path.isdir(name) else None  # no folder of its own on the hub
        super().__init__(
            name, dataset or (_name_of(name) if os.path.exists(name) else name), local, allow_external_paths
        )
        self.split = split
        self._stream = self._guarded(self._open(name, split))
        first = next(self._stream, None)
        if first is None:
            raise SourceError(f"split {split!r} of {name!r} has no rows")
        self._first: pa.Table | None = first
        self._configure(first.schema, image_column, keep)

    def _open(self, name: str, split: str) -> Iterator[pa.Table]:
        import datasets

        ds = datasets.load_dataset(name, split=split, streaming=True)
        # Arrow format hands over the Image feature's storage ({bytes, path}): the original bytes,
        # never decoded, which is what casting to Image(decode=False) would give, minus the Python rows.
        yield from ds.with_format("arrow").iter(batch_size=_ARROW_BATCH_ROWS)

    def _guarded(self, stream: Iterator[pa.Table]) -> Iterator[pa.Table]:
        """Turn the errors `datasets` raises (when opening or mid-stream) into one-line vl errors."""
        rows = 0
        try:
            for batch in stream:
                rows += batch.num_rows
                yield batch
        except ValueError as exc:
            if "split" in str(exc).lower():
                raise UsageError(f"--split: {first_line(exc)}") from exc
            raise SourceError(f"cannot read hub dataset {self.location!r}: {first_line(exc)}") from exc
        except (OSError, ImportError) as exc:
            if rows:
                raise SourceError(
                    f"reading {self.location!r} failed after {rows} rows ({first_line(exc)}); "
                    "rerun to resume: rows already ingested are skipped"
                ) from exc
            raise SourceError(
                f"{self.location!r} is not a file or folder, and the hub dataset cannot be opened: "
                f"{first_line(exc)}"
            ) from exc

    def describe(self) -> str:
        """The hub id and split."""
        return f"hub dataset {self.location} (split {self.split})"

    def records(self) -> Iterator[Record]:
        """Rows in stream order; source is `hf://<id>/<split>#<index>`."""
        start = 0
        first, self._first = self._first, None
        stream = self._stream if first is None else _chain_first(first, self._stream)
        for batch in stream:
            batch = batch.select(self.columns)
            prefix = f"hf://{self.location}/{self.split}#"
            yield from self._batch_records(batch, start, prefix, self.dataset)
            start += batch.num_rows


def _chain_first(first: pa.Table, rest: Iterator[pa.Table]) -> Iterator[pa.Table]:
    yield first
    yield from rest


# --- choosing a source ------------------------------------------------------------------------


def _is_saved_dataset(folder: str) -> bool:
    def has(name: str) -> bool:
        return os.path.isfile(os.path.join(folder, name))

    return has("dataset_dict.json") or (has("state.json") and has("dataset_info.json"))


def _open_folder(
    folder: str,
    dataset: str | None,
    split: str,
    image_column: str | None,
    keep: tuple[str, ...],
    allow_external_paths: bool,
) -> Source:
    if _is_saved_dataset(folder):
        return SavedDatasetSource(folder, split, dataset, image_column, keep, allow_external_paths)
    if os.path.isdir(os.path.join(folder, "_versions")):
        raise SourceError(f"{folder!r} is a Lance table, not a source: the order is `vl ingest SRC TABLE`")
    found = survey(folder)
    if found.images == 0 and found.parquet:
        return ParquetSource(folder, found.parquet, dataset, image_column, keep, allow_external_paths)
    if found.images == 0:
        others = sum(found.others.values())
        what = f"only {others} files without an image extension" if others else "it is empty"
        raise SourceError(f"no image files in folder {folder!r} ({what}); {SOURCE_HELP}")
    _no_table_options("a folder of images", image_column, keep)
    return FolderSource(folder, dataset, found)


def _no_table_options(kind: str, image_column: str | None, keep: tuple[str, ...]) -> None:
    if keep:
        raise UsageError(f"--keep-columns applies to Parquet and Hugging Face datasets, not to {kind}")
    if image_column:
        raise UsageError(f"--image-column applies to Parquet and Hugging Face datasets, not to {kind}")


def _open_file(
    path: str,
    dataset: str | None,
    split: str,
    image_column: str | None,
    keep: tuple[str, ...],
    allow_external_paths: bool,
) -> Source:
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".parquet":
        return ParquetSource(path, [path], dataset, image_column, keep, allow_external_paths)
    if suffix in LIST_EXTENSIONS:
        _no_table_options("a list of paths", image_column, keep)
        return ListSource(path, dataset)
    if suffix in IMAGE_EXTENSIONS:
        _no_table_options("an image file", image_column, keep)
        return SingleFileSource(path, dataset)
    raise SourceError(f"unsupported source {path!r}: {SOURCE_HELP}")


def open_source(
    src: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    split: str = "train",
    image_column: str | None = None,
    keep_columns: tuple[str, ...] = (),
    allow_external_paths: bool = False,
) -> Source:
    """Recognise what `src` is and open it; a SourceError says what to pass instead when it is unusable.

    `allow_external_paths`: image cells holding only a path may point outside the dataset's folder."""
    location = os.fspath(src)
    args = (dataset, split, image_column, keep_columns, allow_external_paths)
    if os.path.isdir(location):
        return _open_folder(location, *args)
    if os.path.isfile(location):
        return _open_file(location, *args)
    if os.path.exists(location):
        raise SourceError(f"unsupported source {location!r} (not a regular file or folder): {SOURCE_HELP}")
    if _HUB_ID.match(location):
        return HubSource(location, split, dataset, image_column, keep_columns, allow_external_paths)
    raise SourceError(f"no such file or folder: {location!r}; {SOURCE_HELP}")
