"""Files that are valid but unusual, or hostile in their headers: motion photos, huge-but-allowed pixel
counts, corrupt EXIF blocks."""

from __future__ import annotations

import io
import struct
import threading
import warnings
import zlib
from pathlib import Path

import pytest
from conftest import jpeg_bytes
from PIL import Image

from vlcli.images import ImageProblem, decode, probe
from vlcli.ingestion.ingest import IngestOptions, ingest
from vlcli.table.storage import Table


def jpeg(size: tuple[int, int] = (320, 240), **params: object) -> bytes:
    """A noisy JPEG (noise so its scans hold every byte value, markers' look-alikes included)."""
    img = Image.effect_noise(size, 60).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **params)
    return buf.getvalue()


def fake_mp4(n: int = 4000) -> bytes:
    """What a motion photo appends after its JPEG: an MP4 whose bytes include JPEG marker look-alikes."""
    noise = bytes((i * 7 + 3) % 256 for i in range(n))
    body = noise + b"\xff\xd9\x00" + noise + b"\xff\xda\x00\x0c" + noise  # a start-of-scan after the last EOI
    return struct.pack(">I", 24) + b"ftypmp42" + b"\x00" * 12 + body


# --- 19: data after the end-of-image marker ------------------------------------------------------


@pytest.mark.parametrize("progressive", [False, True])
def test_a_motion_photo_is_a_valid_jpeg(progressive: bool) -> None:
    still = jpeg(progressive=progressive)
    info = probe(still + fake_mp4())
    assert (info.width, info.height, info.format) == (320, 240, "JPEG")
    assert decode(still + fake_mp4()).tobytes() == decode(still).tobytes()


def test_a_jpeg_followed_by_another_jpeg_is_valid() -> None:
    assert probe(jpeg() + jpeg((64, 48))).width == 320


@pytest.mark.parametrize("cut", [0.3, 0.7, 0.99])
@pytest.mark.parametrize("progressive", [False, True])
def test_a_truncated_jpeg_is_still_truncated_with_or_without_trailing_data(
    cut: float, progressive: bool
) -> None:
    still = jpeg(progressive=progressive)
    part = still[: int(len(still) * cut)]
    with pytest.raises(ImageProblem, match="truncated JPEG file"):
        probe(part)
    # with more data after the cut, the decoder reads it as the scan's rest: broken data or truncated
    with pytest.raises(ImageProblem, match=r"truncated JPEG file|cannot decode \(broken data stream"):
        probe(part + fake_mp4())


def test_a_jpeg_missing_only_its_end_marker_is_truncated() -> None:
    with pytest.raises(ImageProblem, match="truncated JPEG file"):
        probe(jpeg()[:-2])


def test_ingest_keeps_motion_photos(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        (folder / f"motion_{i}.jpg").write_bytes(jpeg_bytes(i, (160, 120)) + fake_mp4(1000 + i))
    report = ingest(folder, tmp_path / "t.lance")
    assert report.added == 5 and report.errors == 0


# --- 28: our --max-pixels is the only bound ----------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG claiming `width` x `height`: a few hundred bytes, any pixel count."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * (1 + (width + 7) // 8))  # one row; decoding would run out
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_max_pixels_above_pillows_own_limit_is_honoured() -> None:
    data = png_header(20_000, 20_000)  # 400 M pixels: Pillow alone refuses anything over ~179 M
    before = Image.MAX_IMAGE_PIXELS
    info = probe(data, max_pixels=400_000_000)
    assert (info.width, info.height) == (20_000, 20_000)
    assert before == Image.MAX_IMAGE_PIXELS  # Pillow's setting is left as it was


def test_the_reason_quotes_our_bound_not_pillows() -> None:
    data = png_header(20_000, 20_000)
    with pytest.raises(ImageProblem) as caught:
        probe(data, max_pixels=300_000_000)
    assert str(caught.value) == "too many pixels: 20000x20000 = 400,000,000 > max_pixels 300,000,000"


def test_ingest_honours_max_pixels_above_pillows_limit(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "huge.png").write_bytes(png_header(20_000, 20_000))
    ingest(folder, tmp_path / "a.lance", IngestOptions(max_pixels=400_000_000))
    ingest(folder, tmp_path / "b.lance")
    [allowed] = Table.open(tmp_path / "a.lance").to_arrow(["width", "ingest_status"]).to_pylist()
    [refused] = Table.open(tmp_path / "b.lance").to_arrow(["ingest_status"]).to_pylist()
    assert allowed == {"width": 20_000, "ingest_status": "ok"}
    assert refused["ingest_status"] == (
        "error: too many pixels: 20000x20000 = 400,000,000 > max_pixels 100,000,000"
    )


def test_concurrent_probes_each_get_their_own_bound() -> None:
    big = png_header(15_000, 15_000)  # 225 M pixels
    outcomes: dict[int, list[str]] = {}

    def run(limit: int) -> None:
        got = []
        for _ in range(200):
            try:
                got.append(f"ok {probe(big, max_pixels=limit).width}")
            except ImageProblem as exc:
                got.append(str(exc))
        outcomes[limit] = got

    threads = [threading.Thread(target=run, args=(limit,)) for limit in (300_000_000, 200_000_000) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(outcomes[300_000_000]) == {"ok 15000"}
    assert set(outcomes[200_000_000]) == {
        "too many pixels: 15000x15000 = 225,000,000 > max_pixels 200,000,000"
    }
    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3  # Pillow's default, restored


# --- 30: corrupt EXIF warnings go on the row, never on the terminal -------------------------------


def corrupt_exif_jpeg(seed: int = 0) -> bytes:
    """A JPEG whose EXIF description tag claims 5000 bytes of a 40-byte block (Pillow warns and skips it)."""
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x010E] = "a description"
    raw = bytearray(exif.tobytes())
    at = raw.find(struct.pack(">H", 0x010E))
    raw[at + 4 : at + 8] = struct.pack(">I", 5000)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (seed, 100, 30)).save(buf, "JPEG", exif=bytes(raw))
    return buf.getvalue()


def test_probe_records_exif_warnings_instead_of_printing_them() -> None:
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        info = probe(corrupt_exif_jpeg())
        img = decode(corrupt_exif_jpeg())
    assert leaked == []
    assert info.warnings == ("Tag data larger than file. Skipping tag 270",)
    assert img.size == (64, 48)
    assert probe(jpeg_bytes(1)).warnings == ()


def test_warnings_of_concurrent_probes_stay_with_their_own_image() -> None:
    results: list[tuple[str, ...]] = []

    def run(data: bytes) -> None:
        for _ in range(100):
            results.append(probe(data).warnings)

    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=run, args=(d,)) for d in [corrupt_exif_jpeg(), jpeg_bytes(1)] * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert leaked == []
    assert sorted(set(results)) == [(), ("Tag data larger than file. Skipping tag 270",)]
    assert results.count(()) == 200


def test_ingest_stores_the_warnings_on_the_row(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "bad_exif.jpg").write_bytes(corrupt_exif_jpeg())
    (folder / "fine.jpg").write_bytes(jpeg_bytes(2))
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        ingest(folder, tmp_path / "t.lance")
    assert leaked == []
    rows = (
        Table.open(tmp_path / "t.lance").to_arrow(["source", "ingest_status", "ingest_warnings"]).to_pylist()
    )
    by_name = {Path(r["source"]).name: r for r in rows}
    assert by_name["bad_exif.jpg"]["ingest_status"] == "ok"
    assert by_name["bad_exif.jpg"]["ingest_warnings"] == "Tag data larger than file. Skipping tag 270"
    assert by_name["fine.jpg"]["ingest_warnings"] is None


# --- ultralytics replaces PIL's Image.open process-wide ------------------------------------------


def test_random_bytes_are_not_an_image_after_ultralytics_patched_pillow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Image, "open", Image.open)  # undo ultralytics' patch when the test ends
    import ultralytics.utils.patches  # noqa: F401  (importing it replaces Image.open)

    assert Image.open.__module__.startswith("ultralytics")
    with pytest.raises(ImageProblem, match="not an image"):
        probe(bytes(range(256)) * 16)
