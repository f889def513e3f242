"""`vl show`: the review page's builder without a browser (escaping, missing columns, limit, where,
duplicate groups, counts), then the page itself in a real headless Chromium (no console errors, the
expected elements, the filters driven by real clicks, 500 cards opening fast) with a screenshot kept."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from chromium import Chromium, find_chromium
from PIL import Image
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.errors import QueryError, UsageError
from vlcli.review.page import card_columns, summarize, thumbnail, write_review
from vlcli.table.schema import ID, VALIDATE_STATUS, embedding_column, schema_of
from vlcli.table.storage import Table

ROOT = Path(__file__).resolve().parent.parent
XSS_CAPTION = "<script>window.pwned = 1; document.title = 'pwned'</script>a cat & a \"dog\""
XSS_OCR = '<img src=x onerror="window.pwned = 2">\nline two'
XSS_QUESTION = '"><svg onload="window.pwned = 3"></svg>Which colour?'
STEP_FIELDS = [
    *schema_of(
        "filter_keep", "filter_reason", "dup_of", "nsfw_score", "filter_status", "crop_box", "crop_score"
    ),
    embedding_column(8).field(),
    *schema_of("crop_status", "ocr_text", "objects", "num_objects", "caption", "clip_score", "bin"),
    *schema_of("bin_selected", "bin_status", "synth_qa", "synth_status", "validate_results", "valid_count"),
    VALIDATE_STATUS.field(),
]


def step_values(i: int, row_id: str, first_id: str, width: int, height: int) -> dict[str, Any]:
    """Every step's columns for row `i`: a near-duplicate of row 0 every 7 rows, a too-small reject, a crop
    error, bins A/B/C/none, Q/A valid, invalid, unvalidated or absent, and untrusted text in row 1."""
    duplicate, small = i % 7 == 3, i % 7 == 5
    items = [
        {
            "question": XSS_QUESTION if i == 1 else f"What is shown in image {i}?",
            "options": ["a cat", "a dog", "a car", "a tree"],
            "answer": "ABCD"[i % 4],
            "reasoning": "The picture shows it. " * 5,
        }
    ] * (1 + i % 2)
    has_qa, validated = i % 5 != 4, i % 6 != 5
    results = [
        {"valid": (i + k) % 3 != 0, "reasons": [] if (i + k) % 3 else ["answer not supported"]}
        for k in range(len(items))
    ]
    return {
        "id": row_id,
        "filter_keep": not (duplicate or small),
        "filter_reason": "duplicate" if duplicate else "too_small" if small else None,
        "dup_of": first_id if duplicate else None,
        "nsfw_score": 0.01 * (i % 10),
        "filter_status": "ok",
        "crop_box": [width // 10, height // 7, width * 8 // 10, height * 9 // 10],
        "crop_score": 0.9,
        "embedding": [0.5] * 8,
        "crop_status": "error: cannot decode (broken)" if i == 2 else "ok",
        "ocr_text": XSS_OCR if i == 1 else ("STOP " * 40 if i % 4 == 0 else None),
        "objects": [{"box": [1, 2, 30, 40], "label": "person", "score": 0.9}] * (i % 3)
        + [{"box": [5, 5, 9, 9], "label": "car", "score": 0.5}],
        "num_objects": i % 3 + 1,
        "caption": XSS_CAPTION if i == 1 else f"a picture number {i}",
        "clip_score": 0.3,
        "bin": ["A", "B", "C", None][i % 4],
        "bin_selected": i % 3 != 0,
        "bin_status": "ok",
        "synth_qa": items if has_qa else None,
        "synth_status": "ok" if has_qa else "skipped: no text",
        "validate_results": results if has_qa and validated else None,
        "valid_count": sum(r["valid"] for r in results) if has_qa and validated else None,
        "validate_status": ("ok" if validated else None) if has_qa else "skipped: no Q/A",
    }


def add_steps(table: Table) -> Table:
    """Fill every step's columns of an ingest-only table."""
    rows = table.to_arrow(["id", "width", "height"]).to_pylist()
    first = rows[0]["id"]
    table.ensure_columns(STEP_FIELDS)
    values = [step_values(i, r["id"], first, r["width"], r["height"]) for i, r in enumerate(rows)]
    table.write_back(pa.Table.from_pylist(values, schema=pa.schema([ID.field(), *STEP_FIELDS])))
    return table


@pytest.fixture
def reviewed(make_table: Callable[..., Table]) -> Callable[..., Table]:
    """A table of `n` rows with every step's columns filled."""

    def build(n: int = 14, size: tuple[int, int] = (160, 120), name: str = "r.lance") -> Table:
        return add_steps(make_table(n, name=name, size=size))

    return build


def cards(page: str) -> list[str]:
    """The ids of the page's cards, in order."""
    return re.findall(r'<article class="card[^"]*" id="c-([0-9a-z-]+)"', page)


# --- the builder, no browser ---------------------------------------------------------------------


def test_untrusted_text_is_escaped(reviewed: Callable[..., Table], tmp_path: Path) -> None:
    write_review(reviewed(), tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert page.count("<script") == 1  # the page's own script only
    assert "&lt;script&gt;window.pwned = 1" in page and "&amp; a &quot;dog&quot;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=&quot;window.pwned = 2&quot;&gt;" in page
    assert "<svg" not in page and "&quot;&gt;&lt;svg onload=" in page
    assert "script-src 'sha256-" in page and "default-src 'none'" in page  # nothing else may run or load


def test_every_column_is_optional(make_table: Callable[..., Table], tmp_path: Path) -> None:
    report = write_review(make_table(5), tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert report.cards == 5 and len(cards(page)) == 5
    assert "<h2>ingest</h2>" in page and "Q/A</h2>" not in page and 'class="crop"' not in page


def test_limit_caps_cards_while_header_counts_cover_the_table(
    reviewed: Callable[..., Table], tmp_path: Path
) -> None:
    report = write_review(reviewed(20), tmp_path / "r.html", limit=4)
    page = (tmp_path / "r.html").read_text()
    assert report.cards == 4 and len(cards(page)) == 4 and report.rows == 20
    assert "20 rows in the table" in page and "(--limit 4)" in page
    assert "<span>ok</span><b>20</b>" in page  # filter ok over all 20 rows, not the 4 shown
    assert write_review(reviewed(3, name="z.lance"), tmp_path / "z.html", limit=0).cards == 0


def test_where_selects_rows_and_a_bad_one_names_the_option(
    reviewed: Callable[..., Table], tmp_path: Path
) -> None:
    table = reviewed(16)
    report = write_review(table, tmp_path / "r.html", where="bin = 'A'")
    assert report.selected == report.cards == 4
    page = (tmp_path / "r.html").read_text()
    assert set(re.findall(r'data-bin="([^"]*)"', page)) == {"A"}
    with pytest.raises(QueryError, match="--where"):
        write_review(table, tmp_path / "bad.html", where="no_such_column = 1")
    assert not (tmp_path / "bad.html").exists()
    with pytest.raises(UsageError, match="--thumb-size"):
        write_review(table, tmp_path / "bad.html", thumb_size=8)


def test_duplicates_sit_beside_their_kept_twin(reviewed: Callable[..., Table], tmp_path: Path) -> None:
    table = reviewed(14)
    first = table.to_arrow(["id", "dup_of"], "dup_of IS NOT NULL")["dup_of"][0].as_py()
    page_path = tmp_path / "r.html"
    write_review(table, page_path)
    order = cards(page_path.read_text())
    assert order[:3] == [first, *(r for r in order[1:3])] and len(order) == 14
    group = re.search(r'<section class="dupgroup">(.*?)</section>', page_path.read_text(), re.S)
    assert group is not None and len(cards(group.group(1))) == 3  # row 0 and its duplicates 3 and 10
    # Reviewing only the duplicates still shows the kept twin beside them, marked as outside --where.
    report = write_review(table, page_path, where="filter_reason = 'duplicate'")
    page = page_path.read_text()
    assert report.selected == 2 and report.context == 1 and cards(page)[0] == first
    assert "kept twin, outside --where" in page and f'href="#c-{first}"' in page


def test_reads_only_the_shown_columns(reviewed: Callable[..., Table]) -> None:
    names = card_columns(reviewed(2).schema)
    assert "embedding" not in names and "image" in names and "validate_status" in names


def test_header_counts(reviewed: Callable[..., Table]) -> None:
    summary = summarize(reviewed(14))
    assert summary.rows == 14 and dict(summary.steps["crop"]) == {"ok": 13, "error: cannot decode": 1}
    # rows 5 and 11 have Q/A but no verdict; the filter rejected row 5 (too small), so validate never takes it
    validate = dict(summary.steps["validate"])
    assert validate["pending"] == 1 and validate["blocked"] == 1
    assert dict(summary.decisions or []) == {"kept": 10, "duplicate": 2, "too_small": 2}
    assert [b for b, _, _ in summary.bins or []] == ["A", "B", "C", "none"]
    qa = summary.qa
    assert qa is not None and qa.rows == 12 and qa.items == 18 and qa.valid + qa.invalid == qa.validated
    assert qa.reasons and qa.reasons[0][0] == "answer not supported"


def test_cards_say_blocked_where_the_header_does(reviewed: Callable[..., Table], tmp_path: Path) -> None:
    table = reviewed(14)
    write_review(table, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    header = {step: dict(counts) for step, counts in summarize(table).steps.items()}
    options = dict(re.findall(r'<option value="\d+">([^<]*) \((\d+)\)</option>', page))
    for step, counts in header.items():
        for state in ("pending", "blocked"):
            # every row is on the page: the reason filter counts the same rows as the header
            assert int(options.get(f"{step}: {state}", 0)) == counts.get(state, 0), (step, state)
    assert header["validate"]["blocked"] == 1 and '<li class="">validate: blocked</li>' in page


def test_thumbnails_are_small_upright_and_never_raise() -> None:
    import base64

    big = Image.new("RGB", (2000, 1000), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: displayed upright as 1000 x 2000
    buf = io.BytesIO()
    big.save(buf, "JPEG", exif=exif)
    thumb = thumbnail(buf.getvalue(), 256)
    assert (thumb.width, thumb.height) == (1000, 2000) and thumb.url is not None
    decoded = Image.open(io.BytesIO(base64.b64decode(thumb.url.split(",", 1)[1])))
    assert decoded.size == (128, 256) and len(thumb.url) < 20_000
    assert thumbnail(b"not an image").problem and thumbnail(None).problem == "no image bytes"


def test_cli_writes_the_page_and_prints_its_path(reviewed: Callable[..., Table], tmp_path: Path) -> None:
    table = reviewed(6)
    out = tmp_path / "sub" / "review.html"
    result = CliRunner().invoke(app, ["show", table.path, "--out", str(out), "--limit", "3", "-q"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out.resolve()) and len(cards(out.read_text())) == 3
    bad = CliRunner().invoke(app, ["show", table.path, "--out", str(out), "--where", "nope ="])
    assert bad.exit_code == 1 and len(bad.stderr.strip().splitlines()) == 1 and "--where" in bad.stderr


# --- in a real browser ---------------------------------------------------------------------------

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium binary (install Debian's `chromium`, as .ci/run does, or set VL_CHROMIUM)",
)


def artifacts() -> Path:
    """Where the screenshot and timings are kept for CI: $VL_ARTIFACTS or .ci/artifacts."""
    folder = Path(os.environ.get("VL_ARTIFACTS") or ROOT / ".ci" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    """One headless Chromium for the module's tests."""
    assert CHROMIUM is not None
    with Chromium(CHROMIUM) as chromium:
        yield chromium


def shown(browser: Chromium) -> tuple[int, str]:
    """Visible cards and the page's own count line."""
    count = browser.evaluate("document.querySelectorAll('article.card:not([hidden])').length")
    return count, browser.evaluate("document.getElementById('shown').textContent")


@needs_chromium
def test_page_in_chromium(reviewed: Callable[..., Table], tmp_path: Path, browser: Chromium) -> None:
    page = tmp_path / "review.html"
    write_review(reviewed(14), page)
    browser.events.clear()
    browser.open(page.as_uri())
    assert browser.errors() == []
    assert shown(browser) == (14, "14 of 14 cards shown")
    assert browser.evaluate("document.querySelectorAll('.frame .crop').length") == 14
    assert browser.evaluate("document.querySelectorAll('ol.qa > li').length") == 18
    assert browser.evaluate("document.querySelectorAll('section.dupgroup article.card').length") == 3
    assert "duplicate" in browser.evaluate("document.querySelector('header .counts').textContent")
    # Untrusted text shows as text and runs nothing.
    assert browser.evaluate("window.pwned === undefined && document.title.startsWith('vl review')")
    assert XSS_CAPTION in browser.evaluate("document.body.textContent")
    # A crop box is drawn inside its thumbnail, scaled to it.
    box = browser.evaluate(
        "(() => { const c = document.querySelector('.frame .crop').getBoundingClientRect();"
        " const f = document.querySelector('.frame').getBoundingClientRect();"
        " return [(c.left - f.left) / f.width, (c.right - f.left) / f.width]; })()"
    )
    assert box == pytest.approx([0.1, 0.8], abs=0.02)
    browser.screenshot(artifacts() / "review.png")

    # Filters, driven by real mouse clicks: bin A, then invalid Q/A within it, then back to all.
    browser.click('button[data-filter="bin"][data-value="A"]')
    assert shown(browser) == (4, "4 of 14 cards shown")
    browser.click('button[data-filter="validity"][data-value="invalid"]')
    count, text = shown(browser)
    assert 0 < count < 4 and text == f"{count} of 14 cards shown"
    browser.click('button[data-filter="validity"][data-value=""]')
    browser.click('button[data-filter="bin"][data-value=""]')
    assert shown(browser)[0] == 14
    # A header count selects its reason: the crop error has one card; the duplicate group box stays shown.
    browser.click("li[data-reason]:not(.ok)")
    assert shown(browser)[0] == 1
    browser.evaluate(
        "(() => { const s = document.getElementById('reason');"
        " s.value = [...s.options].find(o => o.text.startsWith('filter: duplicate')).value;"
        " s.dispatchEvent(new Event('change')); })()"
    )
    assert shown(browser)[0] == 2
    assert browser.evaluate("document.querySelectorAll('section.dupgroup:not([hidden])').length") == 1
    assert browser.errors() == []


@needs_chromium
def test_500_cards_open_fast(reviewed: Callable[..., Table], tmp_path: Path, browser: Chromium) -> None:
    page = tmp_path / "review.html"
    report = write_review(reviewed(500, size=(320, 240)), page)
    browser.events.clear()
    seconds = browser.open(page.as_uri())
    timing = browser.evaluate(
        "(() => { const t = performance.getEntriesByType('navigation')[0];"
        " return [t.domContentLoadedEventEnd, t.loadEventEnd]; })()"
    )
    assert browser.errors() == [] and shown(browser)[0] == 500
    numbers = {
        "cards": report.cards,
        "html_bytes": report.bytes_written,
        "write_seconds": round(report.seconds, 2),
        "load_seconds": round(seconds, 3),
        "dom_content_loaded_ms": round(timing[0]),
        "load_event_ms": round(timing[1]),
    }
    (artifacts() / "review-500.json").write_text(json.dumps(numbers, indent=2) + "\n")
    print(numbers)
    assert report.bytes_written < 8_000_000 and seconds < 10


def test_a_query_polars_panics_on_is_a_query_error(reviewed: Callable[..., Table]) -> None:
    from vlcli.table.query import query

    # unnest() of a list of structs panicked inside polars 1.x on Lance scans; either way, no traceback
    try:
        frame = query(reviewed(14), "SELECT id, unnest(validate_results) FROM images")
    except QueryError as exc:
        assert "polars failed" in str(exc) or "bad query" in str(exc)
    else:
        assert frame.height > 0
