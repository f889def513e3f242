"""Ingest of a generated corpus of awkward and broken files: each gets a defined outcome, none is lost."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from conftest import jpeg_bytes
from PIL import Image

from vlcli.images import source_id
from vlcli.ingestion.ingest import IngestOptions, IngestReport, ingest
from vlcli.table.storage import Table


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    """`img` saved to bytes in `fmt`."""
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(width: int = 200_000, height: int = 200_000) -> bytes:
    """A tiny, valid-looking PNG whose header claims `width` x `height` pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def palette_png() -> bytes:
    """A palette PNG with a transparent index."""
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 10, 200, 10] + [0, 0, 0] * 254)
    img.putpixel((0, 0), 0)
    return encode(img, "PNG", transparency=0)


def animated_gif() -> bytes:
    """A three-frame looping GIF."""
    frames = [Image.new("RGB", (10, 10), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)


def rotated_jpeg() -> bytes:
    """A 40x20 JPEG tagged EXIF orientation 6 (shown rotated: 20 wide, 40 high)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.new("RGB", (40, 20), (1, 100, 200)), "JPEG", exif=exif.tobytes())


GOOD_JPEG = jpeg_bytes(7, (120, 90))
GOOD_PNG = encode(Image.new("RGB", (60, 60), (5, 6, 7)), "PNG")

# file name -> (bytes, expected status or reason prefix, (width, height, format) for ok rows)
CORPUS: dict[str, tuple[bytes, str, tuple[int, int, str] | None]] = {
    "empty.jpg": (b"", "error: empty file", None),
    "truncated.jpg": (GOOD_JPEG[: len(GOOD_JPEG) // 2], "error: truncated JPEG file", None),
    "truncated.png": (GOOD_PNG[: len(GOOD_PNG) - 30], "error: truncated PNG file", None),
    "random.jpg": (random.Random(0).randbytes(4096), "error: not an image", None),
    "text.jpg": (b"this is a text file wearing a .jpg extension\n" * 20, "error: not an image", None),
    "huge.png": (huge_png(), "error: too many pixels", None),
    "cmyk.jpg": (encode(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG"), "ok", (20, 10, "JPEG")),
    "gray16.png": (encode(Image.new("I;16", (8, 3), 40000), "PNG"), "ok", (8, 3, "PNG")),
    "palette.png": (palette_png(), "ok", (4, 4, "PNG")),
    "animated.gif": (animated_gif(), "ok", (10, 10, "GIF")),
    "rotated.jpg": (rotated_jpeg(), "ok", (20, 40, "JPEG")),
    "mislabelled.png": (GOOD_JPEG, "ok", (120, 90, "JPEG")),  # the header, not the name, decides
    "SHOUTING.JPEG": (jpeg_bytes(8), "ok", (64, 48, "JPEG")),
}


def write_corpus(folder: Path) -> Path:
    """The CORPUS written to `folder`."""
    folder.mkdir()
    for name, (data, _, _) in CORPUS.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    """The CORPUS in a fresh folder."""
    return write_corpus(tmp_path / "bad")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[IngestReport, dict[str, dict[str, Any]]]:
    """The corpus ingested once for the module: the report, and the rows by file name."""
    tmp = tmp_path_factory.mktemp("bad")
    report = ingest(write_corpus(tmp / "bad"), tmp / "t.lance")
    rows = Table.open(tmp / "t.lance").to_arrow(
        ["id", "source", "image", "width", "height", "format", "file_size", "ingest_status"]
    )
    return report, {Path(r["source"]).name: r for r in rows.to_pylist()}


def test_every_file_gets_exactly_one_row(ingested: tuple[IngestReport, dict[str, dict[str, Any]]]) -> None:
    report, rows = ingested
    assert sorted(rows) == sorted(CORPUS)
    errors = sum(1 for _, status, _ in CORPUS.values() if status != "ok")
    assert (report.seen, report.added, report.errors) == (len(CORPUS), len(CORPUS) - errors, errors)


@pytest.mark.parametrize("name", [n for n, (_, status, _) in CORPUS.items() if status == "ok"])
def test_readable_files_are_stored_untouched_with_header_facts(
    name: str, ingested: tuple[IngestReport, dict[str, dict[str, Any]]]
) -> None:
    data, _, facts = CORPUS[name]
    row = ingested[1][name]
    assert row["ingest_status"] == "ok"
    assert row["image"] == data
    assert (row["width"], row["height"], row["format"]) == facts
    assert row["file_size"] == len(data)


@pytest.mark.parametrize("name", [n for n, (_, status, _) in CORPUS.items() if status != "ok"])
def test_unusable_files_get_an_error_row_with_a_reason(
    name: str, ingested: tuple[IngestReport, dict[str, dict[str, Any]]]
) -> None:
    data, reason, _ = CORPUS[name]
    row = ingested[1][name]
    assert row["ingest_status"].startswith(reason)
    assert row["image"] is None and row["width"] is None and row["format"] is None
    assert row["id"] == source_id(row["source"])
    assert row["file_size"] == len(data)


def test_the_report_counts_errors_by_reason(ingested: tuple[IngestReport, dict[str, dict[str, Any]]]) -> None:
    report = ingested[0]
    assert report.reasons == {
        "error: empty file": 1,
        "error: truncated JPEG file": 1,
        "error: truncated PNG file": 1,
        "error: not an image": 2,
        "error: too many pixels": 1,
    }


def test_error_rows_are_idempotent_too(bad_folder: Path, tmp_path: Path) -> None:
    ingest(bad_folder, tmp_path / "t.lance")
    again = ingest(bad_folder, tmp_path / "t.lance")
    assert again.added == 0 and again.duplicates == len(CORPUS) - 6
    assert again.errors == 6  # still reported: the files are still bad
    assert Table.open(tmp_path / "t.lance").count() == len(CORPUS)


def test_max_pixels_turns_a_normal_image_into_an_error_row(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(1, (100, 100)))
    (folder / "b.jpg").write_bytes(jpeg_bytes(2, (10, 10)))
    report = ingest(folder, tmp_path / "t.lance", IngestOptions(max_pixels=5_000))
    assert (report.added, report.errors) == (1, 1)
    rows = Table.open(tmp_path / "t.lance").to_arrow(["source", "ingest_status"]).to_pylist()
    statuses = {r["source"]: r["ingest_status"] for r in rows}
    assert statuses[str(folder / "a.jpg")].startswith("error: too many pixels: 100x100")
    assert statuses[str(folder / "b.jpg")] == "ok"
