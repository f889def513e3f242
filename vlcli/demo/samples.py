"""A generated sample image folder: photo-like scenes, charts, documents, near-duplicates, one exact
duplicate and one corrupt file. Pure PIL/numpy drawing, no downloads, deterministic for a seed."""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from vlcli.images import encode

KINDS = ("scene", "chart", "document", "near_duplicate", "exact_duplicate", "corrupt")
MIN_IMAGES = 6  # one of each kind, with a scene to copy from

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class Sample:
    """One written file: its name, what it shows and, for copies, the file it copies."""

    name: str
    kind: str
    variant: str
    original: str | None = None


@dataclass(frozen=True)
class SampleSet:
    """The files `write_samples` wrote into `folder`."""

    folder: Path
    samples: tuple[Sample, ...]

    def paths(self, kind: str | None = None) -> list[Path]:
        """Paths of every file, or of one kind's files."""
        return [self.folder / s.name for s in self.samples if kind is None or s.kind == kind]

    def by_kind(self) -> dict[str, list[Path]]:
        """Paths grouped by kind, in KINDS order."""
        return {kind: self.paths(kind) for kind in KINDS}

    def bytes_written(self) -> int:
        """Total size of the files on disk."""
        return sum(p.stat().st_size for p in self.paths())


# --- shared drawing helpers ------------------------------------------------------------------


@lru_cache(maxsize=32)
def font(size: int) -> Font:
    """PIL's bundled font at `size` pixels (works offline with Pillow >= 10.1)."""
    return ImageFont.load_default(size=size)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def _jitter(rng: random.Random, color: RGB, amount: int = 18) -> RGB:
    r, g, b = (max(0, min(255, c + rng.randint(-amount, amount))) for c in color)
    return (r, g, b)


def _gradient(width: int, height: int, top: RGB, bottom: RGB) -> np.ndarray:
    """A vertical gradient as a float HxWx3 array."""
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    column = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return np.broadcast_to(column, (height, width, 3)).copy()


def add_noise(img: Image.Image, noise: np.random.Generator, sigma: float) -> Image.Image:
    """Sensor-like Gaussian noise, so flat drawings compress and look like photos."""
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + noise.normal(0.0, sigma, arr.shape).astype(np.float32)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _text_width(draw: ImageDraw.ImageDraw, text: str, fnt: Font) -> float:
    return draw.textlength(text, font=fnt)


def _centered(draw: ImageDraw.ImageDraw, cx: float, y: float, text: str, fnt: Font, fill: RGB) -> None:
    draw.text((cx - _text_width(draw, text, fnt) / 2, y), text, font=fnt, fill=fill)


# --- scenes -----------------------------------------------------------------------------------

_SKIES: tuple[tuple[RGB, RGB], ...] = (
    ((40, 100, 200), (170, 210, 240)),  # clear day
    ((60, 70, 140), (250, 170, 110)),  # dusk
    ((120, 130, 145), (200, 205, 210)),  # overcast
    ((20, 120, 220), (200, 230, 250)),  # bright summer
)
_GROUNDS: tuple[tuple[RGB, RGB], ...] = (
    ((90, 140, 60), (50, 100, 35)),  # meadow
    ((200, 180, 130), (170, 150, 100)),  # sand
    ((225, 230, 235), (190, 200, 210)),  # snow
    ((120, 130, 70), (80, 90, 45)),  # dry grass
)


def _hills(draw: ImageDraw.ImageDraw, rng: random.Random, w: int, horizon: int, color: RGB) -> None:
    peaks = [(0, horizon)]
    x = 0
    while x < w:
        x += rng.randint(w // 8, w // 3)
        peaks.append((min(x, w), horizon - rng.randint(horizon // 10, horizon // 2)))
        x += rng.randint(w // 10, w // 4)
        peaks.append((min(x, w), horizon - rng.randint(0, horizon // 8)))
    draw.polygon([*peaks, (w, horizon), (0, horizon)], fill=color)


def _sun(draw: ImageDraw.ImageDraw, rng: random.Random, w: int, horizon: int) -> None:
    cx, cy, r = rng.randint(w // 8, w - w // 8), rng.randint(horizon // 6, horizon // 2), rng.randint(18, 34)
    draw.ellipse((cx - r * 1.6, cy - r * 1.6, cx + r * 1.6, cy + r * 1.6), fill=(255, 235, 180))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 250, 215))


def _clouds(img: Image.Image, rng: random.Random, horizon: int) -> Image.Image:
    layer = Image.new("L", img.size, 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.randint(1, 4)):
        cx, cy = rng.randint(0, img.width), rng.randint(10, max(11, horizon // 2))
        for _ in range(rng.randint(3, 6)):
            dx, dy, r = rng.randint(-60, 60), rng.randint(-12, 12), rng.randint(16, 34)
            draw.ellipse((cx + dx - r * 1.5, cy + dy - r, cx + dx + r * 1.5, cy + dy + r), fill=210)
    mask = layer.filter(ImageFilter.GaussianBlur(6))
    return Image.composite(Image.new("RGB", img.size, (250, 250, 252)), img, mask)


def _tree(draw: ImageDraw.ImageDraw, rng: random.Random, x: int, y: int, s: float) -> None:
    trunk_w, trunk_h = 8 * s, 30 * s
    draw.rectangle((x - trunk_w / 2, y - trunk_h, x + trunk_w / 2, y), fill=_jitter(rng, (95, 65, 40)))
    green = _jitter(rng, (40, 110, 45), 25)
    if rng.random() < 0.5:  # pine
        for i in range(3):
            top, base = y - trunk_h - (70 - i * 18) * s, y - trunk_h * 0.6 - i * 18 * s
            half = (28 - i * 5) * s
            draw.polygon([(x, top), (x - half, base), (x + half, base)], fill=_mix(green, (0, 0, 0), i * 0.1))
    else:  # leafy
        r = 30 * s
        for dx, dy in ((-0.6, 0.1), (0.6, 0.1), (0.0, -0.5), (0.0, 0.2)):
            cx, cy = x + dx * r, y - trunk_h - r * 0.6 + dy * r
            draw.ellipse((cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8), fill=green)


def _house(draw: ImageDraw.ImageDraw, rng: random.Random, x: int, y: int, s: float) -> None:
    w, h = 90 * s, 60 * s
    wall = _jitter(rng, rng.choice([(220, 200, 170), (190, 90, 70), (235, 235, 225), (170, 180, 200)]))
    roof = _jitter(rng, rng.choice([(140, 50, 40), (70, 70, 80), (110, 80, 60)]))
    draw.rectangle((x - w / 2, y - h, x + w / 2, y), fill=wall, outline=_mix(wall, (0, 0, 0), 0.4))
    draw.polygon([(x - w / 2 - 8 * s, y - h), (x, y - h - 40 * s), (x + w / 2 + 8 * s, y - h)], fill=roof)
    draw.rectangle((x - 8 * s, y - 32 * s, x + 8 * s, y), fill=(90, 60, 40))
    for wx in (x - 30 * s, x + 18 * s):
        draw.rectangle((wx, y - 45 * s, wx + 14 * s, y - 30 * s), fill=(170, 210, 235), outline=(60, 60, 60))


def _car(draw: ImageDraw.ImageDraw, rng: random.Random, x: int, y: int, s: float) -> None:
    body = _jitter(
        rng, rng.choice([(200, 30, 30), (30, 60, 160), (230, 230, 230), (40, 40, 40), (240, 200, 40)])
    )
    draw.rounded_rectangle((x - 45 * s, y - 28 * s, x + 45 * s, y - 8 * s), radius=6 * s, fill=body)
    draw.rounded_rectangle((x - 25 * s, y - 44 * s, x + 22 * s, y - 26 * s), radius=6 * s, fill=body)
    draw.rectangle((x - 20 * s, y - 40 * s, x + 17 * s, y - 29 * s), fill=(160, 200, 225))
    for wx in (x - 27 * s, x + 27 * s):
        draw.ellipse((wx - 10 * s, y - 18 * s, wx + 10 * s, y + 2 * s), fill=(25, 25, 25))


def _ball(draw: ImageDraw.ImageDraw, rng: random.Random, x: int, y: int, s: float) -> None:
    r = 14 * s
    color = _jitter(rng, rng.choice([(230, 60, 40), (250, 250, 250), (60, 120, 220)]))
    draw.ellipse((x - r, y - 2 * r, x + r, y), fill=color, outline=_mix(color, (0, 0, 0), 0.5))


_SCENE_OBJECTS: tuple[Callable[[ImageDraw.ImageDraw, random.Random, int, int, float], None], ...] = (
    _tree,
    _tree,
    _house,
    _car,
    _ball,
)


def draw_scene(
    rng: random.Random, noise: np.random.Generator, size: tuple[int, int] = (640, 480)
) -> Image.Image:
    """A photo-like outdoor scene: sky, sun, clouds, hills, ground, trees, houses, cars, balls."""
    w, h = size
    horizon = int(h * rng.uniform(0.45, 0.65))
    sky, ground = rng.choice(_SKIES), rng.choice(_GROUNDS)
    arr = _gradient(w, h, sky[0], sky[1])
    arr[horizon:] = _gradient(w, h - horizon, ground[0], ground[1])
    img = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.7:
        _sun(draw, rng, w, horizon)
    img = _clouds(img, rng, horizon)
    draw = ImageDraw.Draw(img)
    _hills(draw, rng, w, horizon, _mix(sky[1], (60, 80, 90), rng.uniform(0.3, 0.6)))
    _hills(draw, rng, w, horizon, _mix(ground[0], (30, 50, 30), rng.uniform(0.2, 0.5)))
    placed = sorted((rng.randint(horizon + 10, h - 5), rng.randint(0, w)) for _ in range(rng.randint(3, 9)))
    for y, x in placed:  # far to near, so near objects cover far ones
        scale = 0.35 + 1.4 * (y - horizon) / (h - horizon)
        rng.choice(_SCENE_OBJECTS)(draw, rng, x, y, scale)
    img = img.filter(ImageFilter.GaussianBlur(0.7))
    return add_noise(img, noise, sigma=rng.uniform(3.0, 6.0))


# --- charts -----------------------------------------------------------------------------------

_PALETTE: tuple[RGB, ...] = (
    (66, 133, 244),
    (234, 67, 53),
    (251, 188, 5),
    (52, 168, 83),
    (155, 89, 182),
    (255, 112, 67),
    (0, 172, 193),
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PRODUCTS = ("Apples", "Pears", "Plums", "Grapes", "Cherries", "Lemons", "Melons")
_REGIONS = ("North", "South", "East", "West", "Central")
_METRICS = (
    ("Sales", "Units sold"),
    ("Revenue", "Revenue (k$)"),
    ("Visitors", "Visitors"),
    ("Rainfall", "mm"),
)


def _nice_step(top: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) covering `top` in about `ticks` steps."""
    raw = max(top, 1e-9) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _axes(img: Image.Image, box: tuple[int, int, int, int], top: float, x_label: str, y_label: str) -> float:
    """Draw y grid lines with numbers and axis labels inside `box`; return the y-axis maximum."""
    draw = ImageDraw.Draw(img)
    left, upper, right, lower = box
    step = _nice_step(top)
    y_max = step * math.ceil(top / step)
    small = font(13)
    for i in range(round(y_max / step) + 1):
        value = i * step
        y = lower - (lower - upper) * value / y_max
        draw.line((left, y, right, y), fill=(225, 225, 225))
        text = f"{value:g}"
        draw.text((left - 8 - _text_width(draw, text, small), y - 7), text, font=small, fill=(60, 60, 60))
    draw.line((left, upper, left, lower), fill=(40, 40, 40), width=2)
    draw.line((left, lower, right, lower), fill=(40, 40, 40), width=2)
    _centered(draw, (left + right) / 2, lower + 28, x_label, font(15), (40, 40, 40))
    label = Image.new("RGBA", (int(_text_width(draw, y_label, font(15))) + 4, 20), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((2, 0), y_label, font=font(15), fill=(40, 40, 40))
    rotated = label.rotate(90, expand=True)
    img.paste(rotated, (8, int((upper + lower) / 2 - rotated.height / 2)), rotated)
    return y_max


def _chart_canvas(
    rng: random.Random, size: tuple[int, int], title: str
) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", size, rng.choice([(255, 255, 255), (250, 250, 246), (246, 248, 252)]))
    draw = ImageDraw.Draw(img)
    _centered(draw, size[0] / 2, 14, title, font(22), (20, 20, 20))
    return img, draw


def draw_bar_chart(rng: random.Random, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A bar chart with a title, axis labels, tick numbers and a value on each bar."""
    metric, unit = rng.choice(_METRICS)
    labels = rng.choice([_MONTHS[: rng.randint(4, 8)], _PRODUCTS[: rng.randint(3, 6)], _REGIONS])
    scale = rng.choice([1, 1, 10])
    values = [rng.randint(8, 120) * scale for _ in labels]
    img, draw = _chart_canvas(rng, size, f"{metric} by {'month' if labels[0] in _MONTHS else 'category'}")
    box = (80, 60, size[0] - 30, size[1] - 70)
    y_max = _axes(img, box, max(values), "Month" if labels[0] in _MONTHS else "Category", unit)
    slot = (box[2] - box[0]) / len(labels)
    color = rng.choice(_PALETTE)
    small = font(13)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x0, x1 = box[0] + slot * (i + 0.18), box[0] + slot * (i + 0.82)
        y = box[3] - (box[3] - box[1]) * value / y_max
        draw.rectangle((x0, y, x1, box[3] - 1), fill=color)
        _centered(draw, (x0 + x1) / 2, y - 17, str(value), small, (30, 30, 30))
        _centered(draw, (x0 + x1) / 2, box[3] + 6, label, small, (40, 40, 40))
    return img


def draw_line_chart(rng: random.Random, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A line chart of one to three series over years, with a legend and tick numbers."""
    metric, unit = rng.choice(_METRICS)
    start = rng.randint(2010, 2018)
    years = list(range(start, start + rng.randint(5, 8)))
    names = rng.sample(_REGIONS, rng.randint(1, 3))
    series = []
    for _ in names:
        value, points = rng.uniform(20, 80), []
        for _ in years:
            value = max(1.0, value + rng.uniform(-12, 16))
            points.append(round(value, 1))
        series.append(points)
    img, draw = _chart_canvas(rng, size, f"{metric} {years[0]}-{years[-1]}")
    box = (80, 60, size[0] - 120, size[1] - 70)
    y_max = _axes(img, box, max(max(s) for s in series), "Year", unit)
    small = font(13)
    step_x = (box[2] - box[0]) / (len(years) - 1)
    for i, year in enumerate(years):
        _centered(draw, box[0] + step_x * i, box[3] + 6, str(year), small, (40, 40, 40))
    for k, (name, points) in enumerate(zip(names, series, strict=True)):
        color = _PALETTE[k]
        xy = [(box[0] + step_x * i, box[3] - (box[3] - box[1]) * v / y_max) for i, v in enumerate(points)]
        draw.line(xy, fill=color, width=3)
        for x, y in xy:
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=color)
        ly = box[1] + 10 + k * 24
        draw.rectangle((box[2] + 16, ly + 3, box[2] + 30, ly + 15), fill=color)
        draw.text((box[2] + 36, ly), name, font=font(14), fill=(30, 30, 30))
    return img


def draw_pie_chart(rng: random.Random, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A pie chart with percentages on the slices and a legend."""
    labels = rng.sample(_PRODUCTS, rng.randint(3, 6))
    weights = [rng.randint(5, 40) for _ in labels]
    total = sum(weights)
    img, draw = _chart_canvas(rng, size, rng.choice(["Market share", "Share of sales", "Fruit basket"]))
    cx, cy, r = size[0] * 0.38, size[1] * 0.55, min(size) * 0.36
    angle = -90.0
    for k, (label, weight) in enumerate(zip(labels, weights, strict=True)):
        sweep = 360.0 * weight / total
        draw.pieslice(
            (cx - r, cy - r, cx + r, cy + r), angle, angle + sweep, fill=_PALETTE[k], outline="white"
        )
        mid = math.radians(angle + sweep / 2)
        pct = f"{100 * weight / total:.0f}%"
        _centered(
            draw, cx + math.cos(mid) * r * 0.65, cy + math.sin(mid) * r * 0.65 - 8, pct, font(15), (255,) * 3
        )
        ly = size[1] * 0.3 + k * 28
        draw.rectangle((size[0] * 0.72, ly + 2, size[0] * 0.72 + 16, ly + 18), fill=_PALETTE[k])
        draw.text((size[0] * 0.72 + 24, ly), f"{label} ({weight})", font=font(16), fill=(30, 30, 30))
        angle += sweep
    return img


CHARTS: dict[str, Callable[[random.Random, tuple[int, int]], Image.Image]] = {
    "bar": draw_bar_chart,
    "line": draw_line_chart,
    "pie": draw_pie_chart,
}


def draw_chart(rng: random.Random, size: tuple[int, int] = (640, 480)) -> tuple[str, Image.Image]:
    """A random bar, line or pie chart; returns its variant name and the image."""
    variant = rng.choice(sorted(CHARTS))
    return variant, CHARTS[variant](rng, size)


# --- documents --------------------------------------------------------------------------------

_STORES = ("GREEN GROCER", "CORNER MARKET", "CITY BAKERY", "RIVERSIDE CAFE", "HARDWARE HUB", "BOOK NOOK")
_ITEMS = (
    "Bread", "Milk 1L", "Eggs x12", "Coffee", "Apples 1kg", "Cheese", "Butter", "Tea box", "Tomatoes",
    "Rice 2kg", "Pasta", "Olive oil", "Screws M4", "Notebook", "Croissant", "Orange juice",
)  # fmt: skip
_WORDS = (
    "the", "report", "shows", "that", "our", "team", "improved", "delivery", "times", "across", "all",
    "regions", "during", "this", "quarter", "and", "customers", "noticed", "new", "store", "opened", "in",
    "March", "with", "strong", "sales", "we", "plan", "to", "expand", "next", "year", "budget", "review",
    "meeting", "notes", "project", "schedule", "is", "on", "track", "please", "send", "feedback", "by",
    "Friday", "costs", "were", "lower", "than", "expected",
)  # fmt: skip
_SIGNS = (
    ("EXIT 12", "Springfield 5 km"),
    ("MAIN ST", "Museum  Park"),
    ("OPEN", "Mon-Fri 9-18"),
    ("CITY HALL", "Parking 200 m"),
    ("NO PARKING", "Tow away zone"),
    ("CAFE", "Fresh coffee"),
)
_SIGN_COLORS: tuple[RGB, ...] = ((0, 110, 60), (20, 70, 160), (180, 30, 30), (40, 40, 40))


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 13))]
    return " ".join(words).capitalize() + "."


def _wrap(draw: ImageDraw.ImageDraw, text: str, fnt: Font, width: float) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and _text_width(draw, candidate, fnt) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return [*lines, line] if line else lines


def draw_receipt(
    rng: random.Random, noise: np.random.Generator, size: tuple[int, int] = (600, 800)
) -> Image.Image:
    """A photographed shop receipt: store, date, items with prices, total, on a table, slightly rotated."""
    paper = Image.new("RGB", (340, 620), (250, 248, 240))
    draw = ImageDraw.Draw(paper)
    body, head = font(16), font(22)
    _centered(draw, 170, 18, rng.choice(_STORES), head, (20, 20, 20))
    _centered(draw, 170, 48, f"{rng.randint(1, 250)} High Street", body, (40, 40, 40))
    day, month, hour = rng.randint(1, 28), rng.randint(1, 12), rng.randint(8, 20)
    _centered(
        draw, 170, 70, f"2024-{month:02d}-{day:02d}  {hour:02d}:{rng.randint(0, 59):02d}", body, (40, 40, 40)
    )
    y = 104
    draw.line((16, y, 324, y), fill=(90, 90, 90))
    total = 0.0
    for item in rng.sample(_ITEMS, rng.randint(4, 9)):
        qty, price = rng.randint(1, 3), rng.randint(49, 1299) / 100
        total += qty * price
        draw.text((18, y + 10), f"{qty} {item}", font=body, fill=(30, 30, 30))
        text = f"{qty * price:.2f}"
        draw.text((322 - _text_width(draw, text, body), y + 10), text, font=body, fill=(30, 30, 30))
        y += 26
    y += 14
    draw.line((16, y, 324, y), fill=(90, 90, 90))
    tax = total * 0.08
    for label, value, fnt in (("SUBTOTAL", total, body), ("TAX 8%", tax, body), ("TOTAL", total + tax, head)):
        y += 28
        draw.text((18, y), label, font=fnt, fill=(10, 10, 10))
        text = f"{value:.2f}"
        draw.text((322 - _text_width(draw, text, fnt), y), text, font=fnt, fill=(10, 10, 10))
    _centered(draw, 170, y + 50, "THANK YOU!", head, (20, 20, 20))
    for i in range(40):  # a barcode
        if rng.random() < 0.6:
            draw.rectangle((70 + i * 5, y + 90, 72 + i * 5 + rng.randint(0, 2), y + 130), fill=(0, 0, 0))
    paper = paper.crop((0, 0, 340, min(620, y + 150)))
    table = Image.fromarray(
        _gradient(*size, _jitter(rng, (120, 85, 55)), _jitter(rng, (90, 60, 40))).astype(np.uint8)
    )
    rotated = paper.convert("RGBA").rotate(rng.uniform(-6, 6), expand=True, resample=Image.Resampling.BICUBIC)
    table.paste(rotated, ((size[0] - rotated.width) // 2, (size[1] - rotated.height) // 2), rotated)
    return add_noise(table.filter(ImageFilter.GaussianBlur(0.5)), noise, sigma=4.0)


def draw_page(rng: random.Random, size: tuple[int, int] = (620, 800)) -> Image.Image:
    """A clean document page: title, date line, wrapped paragraphs and a page number."""
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    title = rng.choice(["Quarterly Report", "Meeting Notes", "Project Update", "Budget Review", "Memo"])
    draw.text((50, 50), title, font=font(30), fill=(15, 15, 15))
    draw.text(
        (50, 92),
        f"Date: 2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        font=font(16),
        fill=(80,) * 3,
    )
    draw.line((50, 118, size[0] - 50, 118), fill=(180, 180, 180), width=2)
    body, y = font(17), 136
    while y < size[1] - 110:
        paragraph = " ".join(_sentence(rng) for _ in range(rng.randint(2, 4)))
        for line in _wrap(draw, paragraph, body, size[0] - 100):
            if y > size[1] - 90:
                break
            draw.text((50, y), line, font=body, fill=(30, 30, 30))
            y += 24
        y += 16
    _centered(draw, size[0] / 2, size[1] - 50, f"Page {rng.randint(1, 9)}", font(14), (110, 110, 110))
    return img


def draw_sign(
    rng: random.Random, noise: np.random.Generator, size: tuple[int, int] = (640, 480)
) -> Image.Image:
    """A street sign with two lines of big text on a post, against the sky."""
    w, h = size
    sky = rng.choice(_SKIES)
    img = Image.fromarray(_gradient(w, h, sky[0], sky[1]).astype(np.uint8))
    img = _clouds(img, rng, h)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, int(h * 0.85), w, h), fill=_jitter(rng, (110, 110, 105)))
    big, small = font(56), font(30)
    first, second = rng.choice(_SIGNS)
    board_w = max(_text_width(draw, first, big), _text_width(draw, second, small)) + 70
    cx, top = w / 2 + rng.randint(-40, 40), h * 0.18 + rng.randint(-20, 20)
    draw.rectangle((cx - 9, top + 100, cx + 9, h * 0.9), fill=(130, 130, 135))
    color = rng.choice(_SIGN_COLORS)
    draw.rounded_rectangle((cx - board_w / 2, top, cx + board_w / 2, top + 150), radius=14, fill=color)
    draw.rounded_rectangle(
        (cx - board_w / 2 + 6, top + 6, cx + board_w / 2 - 6, top + 144), radius=10, outline="white", width=3
    )
    _centered(draw, cx, top + 22, first, big, (255, 255, 255))
    _centered(draw, cx, top + 92, second, small, (255, 255, 255))
    return add_noise(img.filter(ImageFilter.GaussianBlur(0.6)), noise, sigma=3.5)


# --- near-duplicates and the corrupt file -----------------------------------------------------


def near_duplicate(data: bytes, variant: str) -> bytes:
    """A near copy of JPEG bytes: recompressed ('q50'), resized ('small'), brightened ('bright') or
    slightly cropped ('crop')."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    if variant == "q50":
        return encode(img, "JPEG", quality=50)
    if variant == "small":
        return encode(
            img.resize((img.width * 3 // 5, img.height * 3 // 5), Image.Resampling.LANCZOS), "JPEG", 85
        )
    if variant == "bright":
        return encode(ImageEnhance.Brightness(img).enhance(1.06), "JPEG", 90)
    if variant == "crop":
        dx, dy = img.width // 40, img.height // 40
        return encode(img.crop((dx, dy, img.width - dx, img.height - dy)), "JPEG", 90)
    raise ValueError(f"unknown near-duplicate variant {variant!r}")


NEAR_VARIANTS = ("q50", "small", "bright", "crop")


def _crop_at(img: Image.Image, scale: float, ax: float, ay: float) -> Image.Image:
    w, h = round(img.width * scale), round(img.height * scale)
    left, top = round((img.width - w) * ax), round((img.height - h) * ay)
    return img.crop((left, top, left + w, top + h))


# How an evaluation image slips into a training set: `vl filter --against` is tested and measured on these.
EVAL_COPIES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "centred 90% crop": lambda im: _crop_at(im, 0.9, 0.5, 0.5),
    "90% crop at a corner": lambda im: _crop_at(im, 0.9, 1.0, 1.0),
    "85% crop at a corner": lambda im: _crop_at(im, 0.85, 0.0, 1.0),
    "87% crop off the grid": lambda im: _crop_at(im, 0.87, 0.3, 0.2),
    "75% centred crop": lambda im: _crop_at(im, 0.75, 0.5, 0.5),
    "half size": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "JPEG quality 60": lambda im: im,  # encoded at 60 by `eval_copy`
    "+8% brightness": lambda im: ImageEnhance.Brightness(im).enhance(1.08),
    "mirrored": ImageOps.mirror,
}


def eval_copy(img: Image.Image, variant: str) -> bytes:
    """A training-set copy of an evaluation image as JPEG bytes (quality 92, 60 for 'JPEG quality 60')."""
    return encode(EVAL_COPIES[variant](img), "JPEG", 60 if variant == "JPEG quality 60" else 92)


def truncated(data: bytes) -> bytes:
    """The first 40% of a file: a JPEG cut off mid-scan, as from an interrupted download."""
    return data[: max(1, len(data) * 2 // 5)]


# --- the folder -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    scenes: int
    charts: int
    documents: int
    near: int


def plan(n: int) -> _Plan:
    """How many of each kind `n` files hold (one exact duplicate and one corrupt file always)."""
    if n < MIN_IMAGES:
        raise ValueError(f"need at least {MIN_IMAGES} images for one of each kind, got {n}")
    near = max(1, n // 8)
    base = n - 2 - near
    charts = max(1, base * 3 // 10)
    documents = max(1, base * 3 // 10)
    return _Plan(scenes=base - charts - documents, charts=charts, documents=documents, near=near)


def _draw_document(rng: random.Random, noise: np.random.Generator) -> tuple[str, str, bytes]:
    variant = rng.choice(["receipt", "page", "sign"])
    if variant == "receipt":
        return variant, "jpg", encode(draw_receipt(rng, noise), "JPEG", 88)
    if variant == "sign":
        return variant, "jpg", encode(draw_sign(rng, noise), "JPEG", 88)
    return variant, "png", encode(draw_page(rng), "PNG")


def _rngs(seed: int, index: int) -> tuple[random.Random, np.random.Generator]:
    # One independent stream per file, so a file's pixels do not depend on how many files come before it.
    return random.Random(f"vl-samples:{seed}:{index}"), np.random.default_rng([seed, index])


def _size(rng: random.Random) -> tuple[int, int]:
    return rng.choice([(640, 480), (800, 600), (720, 480), (480, 640)])


def generate(n: int, seed: int = 0) -> list[tuple[Sample, bytes]]:
    """Every sample's description and bytes, without touching the disk."""
    counts = plan(n)
    out: list[tuple[Sample, bytes]] = []
    index = 0
    scenes: list[tuple[Sample, bytes]] = []
    for _ in range(counts.scenes):
        rng, noise = _rngs(seed, index)
        data = encode(draw_scene(rng, noise, _size(rng)), "JPEG", rng.choice([82, 88, 92]))
        scenes.append((Sample(f"scene_{index:03d}.jpg", "scene", "outdoor"), data))
        index += 1
    out += scenes
    for _ in range(counts.charts):
        rng, _noise = _rngs(seed, index)
        variant, img = draw_chart(rng)
        out.append((Sample(f"chart_{variant}_{index:03d}.png", "chart", variant), encode(img, "PNG")))
        index += 1
    for _ in range(counts.documents):
        rng, noise = _rngs(seed, index)
        variant, ext, data = _draw_document(rng, noise)
        out.append((Sample(f"{variant}_{index:03d}.{ext}", "document", variant), data))
        index += 1
    out += _copies(scenes, counts.near, seed, index)
    return out


def _copies(
    scenes: Sequence[tuple[Sample, bytes]], near: int, seed: int, index: int
) -> list[tuple[Sample, bytes]]:
    out: list[tuple[Sample, bytes]] = []
    for i in range(near):
        # Two variants per original, so some originals have a small cluster of near twins.
        original, data = scenes[(i // 2) % len(scenes)]
        variant = NEAR_VARIANTS[i % len(NEAR_VARIANTS)]
        stem = original.name.rsplit(".", 1)[0]
        out.append(
            (
                Sample(f"{stem}_{variant}.jpg", "near_duplicate", variant, original.name),
                near_duplicate(data, variant),
            )
        )
    original, data = scenes[-1]
    out.append(
        (
            Sample(f"{original.name.rsplit('.', 1)[0]}_copy.jpg", "exact_duplicate", "copy", original.name),
            data,
        )
    )
    rng, noise = _rngs(seed, index)
    broken = truncated(encode(draw_scene(rng, noise, (640, 480)), "JPEG", 88))
    out.append((Sample(f"broken_{index:03d}.jpg", "corrupt", "truncated"), broken))
    return out


def write_samples(folder: str | Path, n: int = 48, seed: int = 0) -> SampleSet:
    """Write `n` generated sample files into `folder` (created if needed) and describe them."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    samples = []
    for sample, data in generate(n, seed):
        (target / sample.name).write_bytes(data)
        samples.append(sample)
    return SampleSet(folder=target, samples=tuple(samples))
