"""Every column `vl` writes, declared once: name, Arrow type, the step that writes it and a one-line meaning.

Steps build their Arrow fields from these declarations and refer to columns by the constants here;
`python -m vlcli.table.schema > docs/columns.md` renders the reference (a test keeps it current).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    """One column of the table."""

    name: str
    type: pa.DataType
    doc: str
    step: str = ""  # the step that writes it ("" for a plugin's own columns, known to its step)

    def field(self) -> pa.Field:
        """The Arrow field, nullable, with the meaning kept as field metadata."""
        return pa.field(self.name, self.type, nullable=True, metadata={"doc": self.doc})


def status_column(step: str) -> Column:
    """The `<step>_status` column every step owns."""
    return Column(
        f"{step}_status", pa.string(), f"NULL = not done, ok, skipped: <why> or error: <why> ({step})", step
    )


# ingest
ID = Column(
    "id",
    pa.string(),
    "stable row key: content hash of the bytes (or of the source for unreadable files)",
    "ingest",
)
SOURCE = Column(
    "source", pa.string(), "where the image came from: a path or hf://dataset/split#index", "ingest"
)
DATASET = Column("dataset", pa.string(), "dataset name, from data/<dataset>/train/* or --dataset", "ingest")
IMAGE = Column("image", pa.large_binary(), "the original file bytes, exactly as ingested", "ingest")
WIDTH = Column("width", pa.int32(), "width in pixels, after EXIF orientation", "ingest")
HEIGHT = Column("height", pa.int32(), "height in pixels, after EXIF orientation", "ingest")
FORMAT = Column("format", pa.string(), "image format as PIL names it (JPEG, PNG, ...)", "ingest")
FILE_SIZE = Column("file_size", pa.int64(), "size of the original bytes", "ingest")
INGEST_STATUS = Column(
    "ingest_status", pa.string(), "ok, or error: <why> for a file that is not a usable image", "ingest"
)
INGEST_WARNINGS = Column(
    "ingest_warnings",
    pa.string(),
    "what the image library warned about while reading the file (e.g. a corrupt EXIF block), '; '-separated",
    "ingest",
)

# filter: a per-row part (phash, nsfw_score) and a global part (dup_of, filter_keep, filter_reason)
PHASH = Column(
    "phash",
    pa.int64(),
    "64-bit perceptual hash of the original image (imagehash bit order, as int64)",
    "filter",
)
NSFW_SCORE = Column("nsfw_score", pa.float32(), "P(nsfw) from the NSFW backend, 0-1", "filter")
DUP_OF = Column(
    "dup_of", pa.string(), "id of the kept near-duplicate twin; NULL for kept or unique rows", "filter"
)
FILTER_KEEP = Column("filter_keep", pa.bool_(), "whether the row passes every filter", "filter")
FILTER_REASON = Column(
    "filter_reason", pa.string(), "why a row is rejected: too_small, too_large, bad_aspect, ...", "filter"
)
FILTER_STATUS = status_column("filter")
CONTAM_OF = Column(
    "contam_of",
    pa.string(),
    "the evaluation image this row matches, as <reference name>:<id> (vl filter --against); NULL if none",
    "filter",
)
CONTAM_DISTANCE = Column(
    "contam_distance",
    pa.int32(),
    "pHash Hamming distance to the contam_of image's closest crop-grid hash; NULL for an embedding match",
    "filter",
)

# reference: the rows of a reference table (an evaluation set ingested by vl filter --against)
REF_HASHES = Column(
    "ref_hashes",
    pa.list_(pa.int64()),
    "pHashes of the whole image and of its crop grid (scales 0.8-0.95, centre and corners), int64",
    "reference",
)
REFERENCE_STATUS = status_column("reference")

# crop
BOX_TYPE = pa.list_(pa.int32(), 4)  # left, top, right, bottom
CROP_BOX = Column("crop_box", BOX_TYPE, "chosen crop: left, top, right, bottom in original pixels", "crop")
CROP_SCORE = Column(
    "crop_score", pa.float32(), "cosine similarity of the chosen crop's embedding to the full image's", "crop"
)
# Its length is the crop model's embedding size: a table stores it as a fixed-size list (embedding_column).
EMBEDDING = Column(
    "embedding",
    pa.list_(pa.float32()),
    "the full image's embedding (crop model, CLS token), L2-normalized",
    "crop",
)
CROP_STATUS = status_column("crop")


def embedding_column(dim: int) -> Column:
    """The full image's embedding, `dim` float32 values."""
    return replace(EMBEDDING, type=pa.list_(pa.float32(), dim))


# bin: per-row features, then the global bin assignment
OCR_BOXES = Column(
    "ocr_boxes",
    pa.list_(pa.struct([("box", BOX_TYPE), ("text", pa.string()), ("score", pa.float32())])),
    "text lines: box (left, top, right, bottom in the view's original pixels), text, confidence",
    "bin",
)
OCR_TEXT = Column("ocr_text", pa.string(), "the text lines joined with newlines, top to bottom", "bin")
NUM_TEXT_BOXES = Column("num_text_boxes", pa.int32(), "how many text lines OCR found", "bin")
TEXT_AREA = Column("text_area_ratio", pa.float32(), "area of the union of the text boxes / image area", "bin")
OBJECTS = Column(
    "objects",
    pa.list_(pa.struct([("box", BOX_TYPE), ("label", pa.string()), ("score", pa.float32())])),
    "detections: box (in the view's original pixels), class name, confidence",
    "bin",
)
NUM_OBJECTS = Column("num_objects", pa.int32(), "how many objects were detected", "bin")
NUM_CLASSES = Column("num_classes", pa.int32(), "how many distinct classes were detected", "bin")
DISPERSION = Column(
    "dispersion", pa.float32(), "area of the bounding box of the object centres / image area", "bin"
)
CAPTION = Column("caption", pa.string(), "a caption of the view", "bin")
CLIP_SCORE = Column("clip_score", pa.float32(), "cosine similarity of the caption and the view (CLIP)", "bin")
# what `vl bin` computes per row (its global part assigns BIN and BIN_SELECTED from them)
BIN_FEATURES: tuple[Column, ...] = (
    OCR_BOXES,
    OCR_TEXT,
    NUM_TEXT_BOXES,
    TEXT_AREA,
    OBJECTS,
    NUM_OBJECTS,
    NUM_CLASSES,
    DISPERSION,
    CAPTION,
    CLIP_SCORE,
)
BIN = Column("bin", pa.string(), "A (text), B (objects), C (commonsense), or NULL when unassigned", "bin")
BIN_SELECTED = Column("bin_selected", pa.bool_(), "inside its bin's quota", "bin")
BIN_STATUS = status_column("bin")

# synth
QA_ITEM_TYPE = pa.struct(
    [
        pa.field("question", pa.string()),
        pa.field("options", pa.list_(pa.string())),  # empty for open questions (--mode qa)
        pa.field("answer", pa.string()),  # the letter (A-D) for MCQ, the answer text otherwise
        pa.field("reasoning", pa.string()),
    ]
)
SYNTH_QA = Column(
    "synth_qa", pa.list_(QA_ITEM_TYPE), "generated items: question, options, answer, reasoning", "synth"
)
SYNTH_RAW = Column("synth_raw", pa.string(), "the model's raw reply (kept to re-parse or debug)", "synth")
SYNTH_MODEL = Column("synth_model", pa.string(), "backend and model that wrote the items", "synth")
SYNTH_DESCRIPTION = Column(
    "synth_description", pa.string(), "structured description of the image from a VLM (--describe)", "synth"
)
SYNTH_STATUS = status_column("synth")

# validate: per-row model checks, then the rules over every item
VALIDATION_TYPE = pa.struct([pa.field("valid", pa.bool_()), pa.field("reasons", pa.list_(pa.string()))])
VISUAL_TYPE = pa.struct(
    [
        pa.field("rotations", pa.int32()),
        pa.field("correct_with_image", pa.int32()),
        pa.field("correct_without_image", pa.int32()),
    ]
)
VALIDATE_JUDGE = Column(
    "validate_judge",
    pa.list_(pa.int32()),
    "judge score 1-5 per item of synth_qa (--judge); NULL: no score",
    "validate",
)
VALIDATE_VISUAL = Column(
    "validate_visual",
    pa.list_(VISUAL_TYPE),
    "per MCQ item: option orders asked, right answers with and without the image (--visual-dependency)",
    "validate",
)
VALIDATE_QA_DIGEST = Column(
    "validate_qa_digest",
    pa.string(),
    "digest of the synth_qa the model checks saw (a new one redoes them)",
    "validate",
)
VALIDATE_RESULTS = Column(
    "validate_results",
    pa.list_(VALIDATION_TYPE),
    "per item of synth_qa, in order: valid and why not",
    "validate",
)
VALID_COUNT = Column(
    "valid_count", pa.int32(), "number of items of synth_qa that passed validation", "validate"
)
VALIDATE_STATUS = status_column("validate")

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

# Every column, grouped by the step that writes it, in pipeline order.
COLUMNS: tuple[Column, ...] = (
    *INGEST_COLUMNS,
    PHASH,
    NSFW_SCORE,
    DUP_OF,
    FILTER_KEEP,
    FILTER_REASON,
    FILTER_STATUS,
    CONTAM_OF,
    CONTAM_DISTANCE,
    REF_HASHES,
    REFERENCE_STATUS,
    CROP_BOX,
    CROP_SCORE,
    EMBEDDING,
    CROP_STATUS,
    *BIN_FEATURES,
    BIN,
    BIN_SELECTED,
    BIN_STATUS,
    SYNTH_QA,
    SYNTH_RAW,
    SYNTH_MODEL,
    SYNTH_DESCRIPTION,
    SYNTH_STATUS,
    VALIDATE_JUDGE,
    VALIDATE_VISUAL,
    VALIDATE_QA_DIGEST,
    VALIDATE_RESULTS,
    VALID_COUNT,
    VALIDATE_STATUS,
)
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}


def ingest_schema(extra: list[pa.Field] | None = None) -> pa.Schema:
    """The schema a new table starts with, plus any carried-over source columns."""
    return pa.schema([c.field() for c in INGEST_COLUMNS] + list(extra or []))


def schema_of(*names: str) -> pa.Schema:
    """The Arrow schema of the named declared columns, in that order (for rows built outside a step)."""
    return pa.schema([BY_NAME[n].field() for n in names])


def step_names(schema: pa.Schema) -> list[str]:
    """Steps that have a status column in this schema, in column order."""
    return [n[: -len("_status")] for n in schema.names if n.endswith("_status")]


def reference() -> str:
    """docs/columns.md: every column, by the step that writes it."""
    lines = [
        "# Columns",
        "",
        "Generated by `python -m vlcli.table.schema > docs/columns.md`; a test keeps it current.",
        "One row per source image; a step adds its columns the first time it runs.",
    ]
    for step in dict.fromkeys(c.step for c in COLUMNS):
        lines += ["", f"## {step}", "", "| column | type | meaning |", "|---|---|---|"]
        lines += [
            f"| `{c.name}` | `{c.type}` | {c.doc.replace('|', '/')} |" for c in COLUMNS if c.step == step
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
