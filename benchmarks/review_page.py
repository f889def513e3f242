"""`vl show` with 500 images: the page's size, the time to write it and the time Chromium takes to open it.

    python benchmarks/review_page.py [--n 500] [--sizes 256,192] [--workers N]

The images are the generated sample set (photo-like scenes with noise, charts, documents, receipts, at
their sample sizes, plus the set's broken files and near-duplicates), ingested with `vl ingest`; every
step's columns are then filled with plausible values (crop boxes, filter verdicts with duplicates, OCR text,
objects, captions, two Q/A items with validation), so every card shows everything. For each thumbnail size
it prints the HTML size, the share taken by thumbnails, the seconds to write the page, and the seconds from
navigation to the load event in headless Chromium (`chromium` on PATH or $VL_CHROMIUM), with
DOMContentLoaded and the load event from the page's own navigation timing. Target: opens in about a second.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from vlcli.demo.samples import write_samples
from vlcli.ingestion.ingest import ingest
from vlcli.review.page import write_review
from vlcli.table.schema import ID, schema_of
from vlcli.table.storage import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from chromium import Chromium, find_chromium

READABLE = "ingest_status = 'ok'"
FIELDS = list(
    schema_of(
        "filter_keep",
        "filter_reason",
        "dup_of",
        "filter_status",
        "crop_box",
        "crop_score",
        "crop_status",
        "ocr_text",
        "objects",
        "caption",
        "clip_score",
        "bin",
        "bin_selected",
        "bin_status",
        "synth_qa",
        "synth_status",
        "validate_results",
        "valid_count",
        "validate_status",
    )
)


def fill(table: Table) -> None:
    """Plausible values for every step's columns on the readable rows."""
    rows = table.to_arrow(["id", "width", "height"], READABLE).to_pylist()
    table.ensure_columns(FIELDS)
    values: list[dict[str, Any]] = []
    for i, r in enumerate(rows):
        w, h = r["width"], r["height"]
        dup = i % 11 == 5
        item = {
            "question": f"How many objects of the most common kind are visible in picture {i}?",
            "options": ["one", "two", "three", "four"],
            "answer": "ABCD"[i % 4],
            "reasoning": "Counting the objects left to right gives the answer; the others are partly hidden. "
            * 3,
        }
        values.append(
            {
                "id": r["id"],
                "filter_keep": not dup,
                "filter_reason": "duplicate" if dup else None,
                "dup_of": rows[i - 1]["id"] if dup else None,
                "filter_status": "ok",
                "crop_box": [w // 12, h // 10, w - w // 9, h - h // 14],
                "crop_score": 0.93,
                "crop_status": "ok",
                "ocr_text": "\n".join(f"line {k}: TOTAL 12.50 EUR paid by card" for k in range(i % 8))
                or None,
                "objects": [
                    {"box": [10, 10, 50, 50], "label": ["person", "car", "tree"][k % 3], "score": 0.8}
                    for k in range(i % 5)
                ],
                "caption": "a photo of houses and trees under a blue sky with a few clouds",
                "clip_score": 0.31,
                "bin": "ABC"[i % 3],
                "bin_selected": i % 4 != 0,
                "bin_status": "ok",
                "synth_qa": [item, item],
                "synth_status": "ok",
                "validate_results": [
                    {"valid": True, "reasons": []},
                    {"valid": i % 3 != 0, "reasons": ["too vague"]},
                ],
                "valid_count": 1 + (i % 3 != 0),
                "validate_status": "ok",
            }
        )
    table.write_back(pa.Table.from_pylist(values, schema=pa.schema([ID.field(), *FIELDS])))


def main() -> None:
    """Build the table once, then write and open the page at each thumbnail size."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--sizes", default="256,192", help="thumbnail long sides to compare")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    binary = find_chromium()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        write_samples(Path(tmp) / "src", n=args.n)
        ingest(Path(tmp) / "src", Path(tmp) / "t.lance")
        table = Table.open(Path(tmp) / "t.lance")
        fill(table)
        print(
            f"{table.count():,} rows ({table.count(READABLE):,} readable), built in "
            f"{time.perf_counter() - started:.1f}s"
        )
        for size in (int(s) for s in args.sizes.split(",")):
            page = Path(tmp) / f"review-{size}.html"
            report = write_review(table, page, limit=args.n, thumb_size=size, workers=args.workers)
            text = page.read_text()
            thumbs = sum(len(m) for m in re.findall(r"data:image/jpeg;base64,[A-Za-z0-9+/=]+", text))
            line = (
                f"thumb {size}px: {report.cards} cards, {report.bytes_written / 1e6:.2f} MB "
                f"({100 * thumbs / report.bytes_written:.0f}% thumbnails, {report.bytes_written / report.cards / 1e3:.1f} KB/card), "
                f"written in {report.seconds:.2f}s"
            )
            if binary is not None:
                with Chromium(binary) as browser:
                    seconds = browser.open(page.as_uri())
                    dcl, load = browser.evaluate(
                        "(() => { const t = performance.getEntriesByType('navigation')[0];"
                        " return [t.domContentLoadedEventEnd, t.loadEventEnd]; })()"
                    )
                    errors = browser.errors()
                line += f"; Chromium: load {seconds:.2f}s (DOMContentLoaded {dcl:.0f} ms, load event {load:.0f} ms), {len(errors)} console errors"
            print(line)


if __name__ == "__main__":
    main()
