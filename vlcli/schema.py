"""Every column `vl` writes: name, Arrow type and a one-line meaning."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    """One column of the table."""

    name: str
    type: pa.DataType
    doc: str

    def field(self) -> pa.Field:
        """The Arrow field, nullable, with the meaning kept as field metadata."""
        return pa.field(self.name, self.type, nullable=True, metadata={"doc": self.doc})


ID = Column(
    "id", pa.string(), "stable row key: content hash of the bytes (or of the source for unreadable files)"
)
SOURCE = Column("source", pa.string(), "where the image came from: a path or hf://dataset/split#index")
DATASET = Column("dataset", pa.string(), "dataset name, from data/<dataset>/train/* or --dataset")
IMAGE = Column("image", pa.large_binary(), "the original file bytes, exactly as ingested")
WIDTH = Column("width", pa.int32(), "width in pixels, after EXIF orientation")
HEIGHT = Column("height", pa.int32(), "height in pixels, after EXIF orientation")
FORMAT = Column("format", pa.string(), "image format as PIL names it (JPEG, PNG, ...)")
FILE_SIZE = Column("file_size", pa.int64(), "size of the original bytes")
INGEST_STATUS = Column(
    "ingest_status", pa.string(), "ok, or error: <why> for a file that is not a usable image"
)

INGEST_WARNINGS = Column(
    "ingest_warnings",
    pa.string(),
    "what the image library warned about while reading the file (e.g. a corrupt EXIF block), '; '-separated",
)

INGEST_COLUMNS: tuple[Column, ...] = (
    ID,
    SOURCE,
    DATASET,
    IMAGE,
    WIDTH,
    HEIGHT,
    FORMAT,
    FILE_SIZE,
    INGEST_STATUS,
    INGEST_WARNINGS,
)


def ingest_schema(extra: list[pa.Field] | None = None) -> pa.Schema:
    """The schema a new table starts with, plus any carried-over source columns."""
    return pa.schema([c.field() for c in INGEST_COLUMNS] + list(extra or []))


def status_column(step: str) -> Column:
    """The `<step>_status` column every step owns."""
    return Column(
        f"{step}_status", pa.string(), f"NULL = not done, ok, skipped: <why> or error: <why> ({step})"
    )


def step_names(schema: pa.Schema) -> list[str]:
    """Steps that have a status column in this schema, in column order."""
    return [n[: -len("_status")] for n in schema.names if n.endswith("_status")]
