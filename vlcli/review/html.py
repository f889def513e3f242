"""The review page's markup: server-rendered, every text escaped, CSS and JS inlined from package files, a
Content-Security-Policy that lets only the page's own script run and nothing load from the network."""

from __future__ import annotations

import base64
import hashlib
import html
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from vlcli import __version__
from vlcli.review.cards import Card, ReviewReport, Summary, Thumb
from vlcli.steps.base import reason_key
from vlcli.steps.synth.qa import LETTERS
from vlcli.text import one_line

# Untrusted texts are cut so one runaway OCR result or model reply cannot bloat the page.
TEXT_CHARS = 2000
CAPTION_CHARS = 600
SOURCE_CHARS = 200
PREVIEW_CHARS = 90
SHORT_ID = 12
REASON_CHARS = 80
STEP_ORDER = ("ingest", "filter", "crop", "bin", "synth", "validate")
VALIDITY = (
    ("valid", "has valid Q/A"),
    ("invalid", "has invalid Q/A"),
    ("unvalidated", "not validated"),
    ("noqa", "no Q/A"),
)


def esc(value: object) -> str:
    """Text escaped for HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def cut(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def _asset(name: str) -> str:
    return resources.files("vlcli.review").joinpath(name).read_text(encoding="utf-8")


class Reasons:
    """Reason labels ('filter: duplicate', 'crop: error: cannot decode') numbered for the page's filter."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.cards: Counter[str] = Counter()

    def tokens(self, labels: Iterable[str]) -> str:
        """The space-separated numbers of `labels`, registering new ones."""
        numbers = []
        for label in dict.fromkeys(labels):
            self.cards[label] += 1
            numbers.append(str(self.index.setdefault(label, len(self.index))))
        return " ".join(numbers)


def render_page(
    table_path: str,
    summary: Summary,
    cards: list[Card],
    report: ReviewReport,
    *,
    limit: int | None,
    thumb_size: int,
) -> str:
    """The whole page as one string: header counts, filter controls, the grid of cards, the script."""
    reasons = Reasons()
    on_page = {c.row["id"] for c in cards}
    grid = "".join(_grid(cards, reasons, on_page, thumb_size))  # first: it fills the reason list
    script = _asset("review.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
        "base-uri 'none'; form-action 'none'"
    )
    title = f"vl review: {table_path}"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_asset('review.css')}</style></head>\n<body>"
        f"{_header(table_path, summary, report, reasons, limit)}"
        f"{_controls(cards, reasons)}"
        f'<main id="grid">{grid}</main>'
        f"<script>{script}</script></body></html>\n"
    )


# --- header --------------------------------------------------------------------------------------


def _header(
    table_path: str, summary: Summary, report: ReviewReport, reasons: Reasons, limit: int | None
) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    selection = f"rows matching <code>{esc(report.where)}</code>" if report.where else "rows selected (all)"
    capped = f" (--limit {limit:,})" if limit is not None and report.selected > report.cards else ""
    context = f", {report.context:,} kept twins added beside their duplicates" if report.context else ""
    parts = [
        f'<header><h1>{esc(table_path)}</h1><p class="meta">{summary.rows:,} rows in the table · '
        f"{report.selected:,} {selection} · {report.cards:,} cards{capped}{context} · written {when} by vl "
        f"{esc(__version__)}; counts below cover the whole table</p>",
        '<div class="counts">',
    ]
    steps = sorted(summary.steps, key=lambda s: STEP_ORDER.index(s) if s in STEP_ORDER else len(STEP_ORDER))
    for step in steps:
        parts.append(_count_box(step, [(k, n, f"{step}: {k}") for k, n in summary.steps[step]], reasons))
    if summary.decisions is not None:
        parts.append(
            _count_box("filter verdicts", [(k, n, f"filter: {k}") for k, n in summary.decisions], reasons)
        )
    if summary.bins is not None:
        rows = [(f"{b}" + (f" ({s:,} selected)" if s else ""), n, "") for b, n, s in summary.bins]
        parts.append(_count_box("bins", rows, reasons))
    if summary.qa is not None:
        qa = summary.qa
        rows = [("rows with Q/A", qa.rows, ""), ("items", qa.items, ""), ("validated", qa.validated, "")]
        rows += [("valid", qa.valid, ""), ("invalid", qa.invalid, "")]
        rows += [(reason, n, f"validate: {reason}") for reason, n in qa.reasons]
        parts.append(_count_box("Q/A", rows, reasons))
    parts.append("</div></header>")
    return "".join(parts)


def _count_box(title: str, rows: list[tuple[str, int, str]], reasons: Reasons) -> str:
    """A titled list of counts; a count whose label cards carry sets the reason filter when clicked."""
    items = []
    for label, n, key in rows:
        css = "ok" if label in ("ok", "kept", "valid") else "bad" if label.startswith("error") else ""
        target = (
            f' data-reason="{reasons.index[key]}" title="show these cards"' if key in reasons.index else ""
        )
        items.append(f'<li class="{css}"{target}><span>{esc(label)}</span><b>{n:,}</b></li>')
    return f'<section class="box"><h2>{esc(title)}</h2><ul>{"".join(items)}</ul></section>'


def _controls(cards: list[Card], reasons: Reasons) -> str:
    bins = Counter(str(c.row.get("bin") or "none") for c in cards)
    bin_buttons = [_button("bin", "", "all")] + [
        _button("bin", b, f"{b} ({n:,})")
        for b, n in sorted(bins.items(), key=lambda kv: (kv[0] == "none", kv[0]))
    ]
    validity = Counter(v for c in cards for v in validity_tokens(c.row))
    valid_buttons = [_button("validity", "", "all")] + [
        _button("validity", key, f"{label} ({validity[key]:,})") for key, label in VALIDITY if validity[key]
    ]
    options = ['<option value="">every reason</option>'] + [
        f'<option value="{i}">{esc(label)} ({reasons.cards[label]:,})</option>'
        for label, i in sorted(reasons.index.items())
    ]
    return (
        '<nav class="filters" aria-label="filters">'
        f'<span class="group" role="group" aria-label="bin">bin: {"".join(bin_buttons)}</span>'
        f'<label>reason: <select id="reason">{"".join(options)}</select></label>'
        f'<span class="group" role="group" aria-label="validity">Q/A: {"".join(valid_buttons)}</span>'
        f'<output id="shown">{len(cards):,} of {len(cards):,} cards shown</output></nav>'
    )


def _button(kind: str, value: str, label: str) -> str:
    pressed = "true" if value == "" else "false"
    return (
        f'<button type="button" data-filter="{kind}" data-value="{esc(value)}" aria-pressed="{pressed}">'
        f"{esc(label)}</button>"
    )


# --- cards ---------------------------------------------------------------------------------------


def _grid(cards: list[Card], reasons: Reasons, on_page: set[str], thumb_size: int) -> Iterator[str]:
    """Cards in order; a near-duplicate group is boxed together, its kept row first."""
    i = 0
    while i < len(cards):
        group = cards[i].group
        j = i + 1
        while group is not None and j < len(cards) and cards[j].group == group:
            j += 1
        inner = "".join(card_html(c, reasons, on_page, thumb_size) for c in cards[i:j])
        if group is None:
            yield inner
        else:
            kept = sum(1 for c in cards[i:j] if c.row.get("dup_of") is None)
            yield (
                f'<section class="dupgroup"><h3>near-duplicates: {kept} kept, {j - i - kept} rejected</h3>'
                f'<div class="members">{inner}</div></section>'
            )
        i = j


def reason_labels(row: dict[str, Any]) -> list[str]:
    """The reasons a card can be filtered by: its filter verdict, every step that is not ok, and why its
    Q/A items are invalid."""
    labels = []
    if row.get("filter_keep") is not None:
        labels.append(
            "filter: kept" if row["filter_keep"] else f"filter: {row.get('filter_reason') or 'rejected'}"
        )
    for name, value in row.items():
        if name.endswith("_status") and value != "ok":
            labels.append(f"{name[: -len('_status')]}: {'pending' if value is None else reason_key(value)}")
    for result in row.get("validate_results") or []:
        if result and result.get("valid") is False:
            labels += [f"validate: {one_line(r, REASON_CHARS)}" for r in result.get("reasons") or []]
    return labels


def validity_tokens(row: dict[str, Any]) -> list[str]:
    """Which Q/A filters match the row: valid / invalid items, items not validated, or no Q/A at all."""
    items = row.get("synth_qa") or []
    if not items:
        return ["noqa"]
    results = row.get("validate_results") or []
    verdicts = [r.get("valid") if r else None for r in results] + [None] * (len(items) - len(results))
    tokens = []
    if True in verdicts:
        tokens.append("valid")
    if False in verdicts:
        tokens.append("invalid")
    if None in verdicts:
        tokens.append("unvalidated")
    return tokens


def card_html(card: Card, reasons: Reasons, on_page: set[str], thumb_size: int) -> str:
    """One card: the thumbnail with its crop box, then one line per thing the table knows about the row."""
    row = card.row
    verdict = row.get("filter_keep")
    css = "card" + (" rejected" if verdict is False else "") + (" context" if card.context else "")
    attrs = (
        f'class="{css}" id="c-{esc(row["id"])}" data-bin="{esc(row.get("bin") or "none")}" '
        f'data-r="{reasons.tokens(reason_labels(row))}" data-v="{" ".join(validity_tokens(row))}"'
    )
    body = [
        _identity(row),
        _filter_line(row, on_page),
        _crop_line(row),
        _statuses(row),
        _bin_line(row),
        _ocr(row),
        _objects(row),
        _caption(row),
        _qa(row),
    ]
    note = '<p class="note">kept twin, outside --where</p>' if card.context else ""
    picture = _picture(card.thumb, thumb_size, card.row.get("crop_box"))
    if card.match is not None:  # side by side: this row and the evaluation image it matched
        half = thumb_size // 2
        picture = (
            f'<div class="pair">{_picture(card.thumb, half, card.row.get("crop_box"))}{_picture(card.match, half)}'
            f'</div><p class="note">right: evaluation image {esc(row.get("contam_of"))}</p>'
        )
    return f"<article {attrs}>{picture}{note}{''.join(body)}</article>"


def _picture(thumb: Thumb, size: int, box: Any = None) -> str:
    if thumb.url is None:
        return f'<div class="thumb missing" style="height:{size // 2}px">{esc(thumb.problem or "no image")}</div>'
    scale = size / max(thumb.width, thumb.height)
    width, height = max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))
    crop = ""
    if box is not None and len(box) == 4:
        left, top, right, bottom = (float(v) for v in box)
        x, y = _pct(left, thumb.width), _pct(top, thumb.height)
        w, h = _pct(right, thumb.width) - x, _pct(bottom, thumb.height) - y
        crop = (
            f'<div class="crop" style="left:{x:.2f}%;top:{y:.2f}%;width:{w:.2f}%;height:{h:.2f}%" '
            f'title="crop_box {int(left)}, {int(top)}, {int(right)}, {int(bottom)}"></div>'
        )
    return (
        f'<div class="thumb" style="height:{size}px"><div class="frame" style="width:{width}px;height:{height}px">'
        f'<img src="{thumb.url}" alt="" decoding="async">{crop}</div></div>'
    )


def _pct(value: float, total: int) -> float:
    return min(100.0, max(0.0, 100.0 * value / total))


def _identity(row: dict[str, Any]) -> str:
    size = f"{row['width']}×{row['height']}" if row.get("width") and row.get("height") else ""
    facts = " · ".join(esc(v) for v in (row.get("dataset"), size, row.get("format")) if v)
    source = row.get("source")
    src = f'<p class="src" title="{esc(source)}">{esc(cut(str(source), SOURCE_CHARS))}</p>' if source else ""
    return f'<p class="id"><code title="{esc(row["id"])}">{esc(str(row["id"])[:SHORT_ID])}</code> {facts}</p>{src}'


def _filter_line(row: dict[str, Any], on_page: set[str]) -> str:
    keep = row.get("filter_keep")
    if keep is None:
        return ""
    nsfw = f" · nsfw {row['nsfw_score']:.2f}" if row.get("nsfw_score") is not None else ""
    if keep:
        return f'<p class="verdict kept">kept{nsfw}</p>'
    twin = row.get("dup_of")
    of = ""
    if row.get("contam_of"):
        distance = row.get("contam_distance")
        how = f"pHash distance {distance}" if distance is not None else "embedding"
        of = f" of <code>{esc(row['contam_of'])}</code> ({how})"
    elif twin:
        short = esc(str(twin)[:SHORT_ID])
        of = f' of <a href="#c-{esc(twin)}">{short}</a>' if twin in on_page else f" of <code>{short}</code>"
    return f'<p class="verdict rejected">rejected: {esc(row.get("filter_reason") or "?")}{of}{nsfw}</p>'


def _crop_line(row: dict[str, Any]) -> str:
    box, score = row.get("crop_box"), row.get("crop_score")
    if box is None and score is None:
        return ""
    parts = ["crop"]
    if box is not None:
        parts.append(", ".join(str(int(v)) for v in box))
    if score is not None:
        parts.append(f"score {score:.3f}")
    return f'<p class="crop-line">{esc(" · ".join(parts))}</p>'


def _statuses(row: dict[str, Any]) -> str:
    """Steps that are not ok for this row, each with its full status."""
    lines = [
        f'<li class="{"bad" if str(v).startswith("error") else ""}">{esc(n[: -len("_status")])}: '
        f"{esc('pending' if v is None else cut(str(v), SOURCE_CHARS))}</li>"
        for n, v in row.items()
        if n.endswith("_status") and v != "ok"
    ]
    return f'<ul class="statuses">{"".join(lines)}</ul>' if lines else ""


def _bin_line(row: dict[str, Any]) -> str:
    if "bin" not in row:
        return ""
    value = row.get("bin")
    selected = " · selected" if row.get("bin_selected") else ""
    return f'<p>bin <span class="bin">{esc(value or "none")}</span>{selected}</p>'


def _ocr(row: dict[str, Any]) -> str:
    text = row.get("ocr_text")
    if not text:
        return ""
    flat = " ".join(str(text).split())
    if len(flat) <= PREVIEW_CHARS and "\n" not in text:
        return f'<p class="ocr">OCR: <q>{esc(flat)}</q></p>'
    preview = flat[:PREVIEW_CHARS] + "…"
    return f'<details class="ocr"><summary>OCR: <q>{esc(preview)}</q></summary><pre>{esc(cut(str(text), TEXT_CHARS))}</pre></details>'


def _objects(row: dict[str, Any]) -> str:
    objects = row.get("objects")
    if objects is None:
        return ""
    labels = Counter(str(o.get("label") or "?") for o in objects if o)
    if not labels:
        return '<p class="objects">objects: none</p>'
    shown = ", ".join(f"{esc(label)}{f' ×{n}' if n > 1 else ''}" for label, n in labels.most_common())
    return f'<p class="objects">objects: {shown}</p>'


def _caption(row: dict[str, Any]) -> str:
    caption = row.get("caption")
    if caption is None:
        return ""
    clip = (
        f' <span class="score">CLIP {row["clip_score"]:.3f}</span>'
        if row.get("clip_score") is not None
        else ""
    )
    return f'<p class="caption"><q>{esc(cut(str(caption), CAPTION_CHARS))}</q>{clip}</p>'


def _qa(row: dict[str, Any]) -> str:
    items = row.get("synth_qa")
    if not items:
        return ""
    results = row.get("validate_results") or []
    parts = []
    for n, item in enumerate(items):
        result = results[n] if n < len(results) else None
        parts.append(_qa_item(item or {}, result))
    return f'<ol class="qa">{"".join(parts)}</ol>'


def _qa_item(item: dict[str, Any], result: dict[str, Any] | None) -> str:
    answer = str(item.get("answer") or "")
    letter = answer.strip().upper()
    correct = LETTERS.index(letter) if len(letter) == 1 and letter in LETTERS else -1
    options = [str(o) for o in item.get("options") or []]
    marks = ['<li class="answer">' if i == correct else "<li>" for i in range(len(options))]
    opts = "".join(f"{mark}{esc(cut(o, CAPTION_CHARS))}</li>" for mark, o in zip(marks, options))
    verdict = result.get("valid") if result else None
    if verdict is None:
        status, css = "not validated", "unvalidated"
    elif verdict:
        status, css = "✓ valid", "valid"
    else:
        why = "; ".join(str(r) for r in (result or {}).get("reasons") or [])
        status, css = "✗ invalid" + (f": {cut(why, CAPTION_CHARS)}" if why else ""), "invalid"
    reasoning = str(item.get("reasoning") or "")
    return (
        f'<li class="{css}"><p class="q">{esc(cut(str(item.get("question") or ""), TEXT_CHARS))}</p>'
        + (f'<ol class="options" type="A">{opts}</ol>' if opts else "")
        + f'<p class="a">answer: <b>{esc(cut(answer, CAPTION_CHARS))}</b></p>'
        + (
            f"<details><summary>reasoning</summary><p>{esc(cut(reasoning, TEXT_CHARS))}</p></details>"
            if reasoning
            else ""
        )
        + f'<p class="v">{esc(status)}</p></li>'
    )
