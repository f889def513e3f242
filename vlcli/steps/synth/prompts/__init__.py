"""Prompt templates for `vl synth` (package data: *.txt beside this file) and the facts that fill them.

A template is plain text with `{{placeholder}}` slots (single braces are left alone, so JSON examples
need no escaping). The facts come from earlier steps' columns, but a prompt never names a column: the
model reads "Text read in the image", not the name of the column that holds it.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from vlcli.errors import UsageError

PLACEHOLDERS: dict[str, str] = {
    "evidence": "every fact below that is known, as labelled sections (the usual choice)",
    "text": "the text read in the image by OCR, line by line",
    "objects": "the detected objects: how many of each kind and where (left, top right, ...)",
    "caption": "a short caption of the image",
    "description": "the detailed description written by --describe",
    "count": "how many questions to write (--per-image)",
    "width": "the width of the image (its crop when cropped) in pixels",
    "height": "the height of the image (its crop when cropped) in pixels",
}
BUILTIN = ("mcq", "qa_A", "qa_B", "qa_C", "describe")
MAX_TEXT_CHARS = 3000  # OCR text beyond this is cut: pages of small print would crowd out the task
MAX_KINDS = 20  # object kinds listed (most frequent first)
MAX_PLACES = 8  # positions listed per kind
_SLOT = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Template:
    """A prompt template: its text, where it came from, and a short hash for provenance."""

    name: str
    text: str

    @property
    def digest(self) -> str:
        """First 12 hex digits of the text's SHA-256: a changed template shows as a changed setting."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:12]

    def fill(self, values: dict[str, str]) -> str:
        """The template with every placeholder replaced."""
        return _SLOT.sub(lambda m: values[m.group(1)], self.text)


def builtin(name: str) -> Template:
    """A template shipped with vl: mcq, qa_A, qa_B, qa_C or describe."""
    return Template(name, (files(__package__) / f"{name}.txt").read_text(encoding="utf-8"))


def load(path: str | Path, option: str = "--prompt") -> Template:
    """A user's template file, its placeholders checked (an unknown one is a usage error)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option} {p}: cannot read it ({type(exc).__name__})") from None
    check(text, f"{option} {p}")
    return Template(p.name, text)


def check(text: str, where: str) -> None:
    """Raise a usage error naming the first unknown placeholder and the known ones."""
    for match in _SLOT.finditer(text):
        if match.group(1) not in PLACEHOLDERS:
            known = ", ".join("{{" + k + "}}" for k in PLACEHOLDERS)
            raise UsageError(f"{where}: unknown placeholder {match.group(0)} (known: {known})")


@dataclass(frozen=True)
class Facts:
    """What earlier steps know about one image's view, in the words a prompt uses."""

    text: str = ""
    objects: list[tuple[str, tuple[float, float, float, float]]] = field(default_factory=list)
    caption: str = ""
    description: str = ""
    width: int = 0
    height: int = 0

    @property
    def empty(self) -> bool:
        """Nothing to ask about without looking at the image."""
        return not (self.text or self.objects or self.caption or self.description)

    def values(self, count: int) -> dict[str, str]:
        """Every placeholder's text."""
        return {
            "evidence": self.evidence(),
            "text": self.text or "(no text was read)",
            "objects": self.object_lines() or "(no objects were detected)",
            "caption": self.caption or "(no caption)",
            "description": self.description or "(no description)",
            "count": str(count),
            "width": str(self.width),
            "height": str(self.height),
        }

    def evidence(self) -> str:
        """The known facts as labelled sections; a line saying nothing is known when that is so."""
        sections = []
        if self.text:
            sections.append(f'Text read in the image (may contain reading errors):\n"""\n{self.text}\n"""')
        if self.objects:
            sections.append(f"Objects detected (how many, where):\n{self.object_lines()}")
        if self.caption:
            sections.append(f"Short caption: {self.caption}")
        if self.description:
            sections.append(f"Detailed description:\n{self.description}")
        if self.width and self.height:
            sections.append(f"Image size: {self.width} x {self.height} pixels")
        if not (self.text or self.objects or self.caption or self.description):
            sections.insert(0, "(nothing is known about the image's content yet)")
        return "\n\n".join(sections)

    def object_lines(self) -> str:
        """One line per kind, most frequent first: '- person x 3: left, center, top right'."""
        places: dict[str, list[str]] = defaultdict(list)
        for label, box in self.objects:
            places[label].append(self._place(box))
        kinds = sorted(places.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        lines = []
        for label, where in kinds[:MAX_KINDS]:
            shown = ", ".join(where[:MAX_PLACES]) + (", ..." if len(where) > MAX_PLACES else "")
            lines.append(f"- {label} x {len(where)}: {shown}")
        if len(kinds) > MAX_KINDS:
            lines.append(f"- and {len(kinds) - MAX_KINDS} more kinds")
        return "\n".join(lines)

    def _place(self, box: tuple[float, float, float, float]) -> str:
        """Where a box's centre falls on a 3 x 3 grid of the view, plus 'large' for big boxes."""
        w, h = self.width or 1, self.height or 1
        left, top, right, bottom = box
        cx, cy = (left + right) / 2 / w, (top + bottom) / 2 / h
        row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
        col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
        place = f"{row} {col}".strip() or "center"
        if (right - left) * (bottom - top) > 0.25 * w * h:
            place = f"{place} (large)"
        return place


def facts(row: dict[str, Any]) -> Facts:
    """The facts of a table row (any of the bin step's columns and the description may be missing)."""
    width, height = row.get("width") or 0, row.get("height") or 0
    box = row.get("crop_box")
    if box is not None:
        left, top, right, bottom = box
        width, height = max(1, right - left), max(1, bottom - top)
    text = (row.get("ocr_text") or "").strip()
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS].rstrip() + "\n[...]"
    objects = [
        (str(o["label"]), tuple(float(v) for v in o["box"]))
        for o in row.get("objects") or []
        if o and o.get("label") and o.get("box") is not None and len(o["box"]) == 4
    ]
    return Facts(
        text=text,
        objects=objects,  # type: ignore[arg-type]
        caption=(row.get("caption") or "").strip(),
        description=(row.get("synth_description") or "").strip(),
        width=int(width),
        height=int(height),
    )
