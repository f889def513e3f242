"""docs/design.md keeps its layer picture and its "where each behaviour lives" table current."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

import vlcli

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(vlcli.__file__).parent
DESIGN = (ROOT / "docs" / "design.md").read_text()


def _section(title: str) -> str:
    return DESIGN.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_behaviour_table_names_every_module() -> None:
    table = _section("Where each behaviour lives")
    named = set(re.findall(r"`([\w/]+\.(?:py|css|js))`", table))
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")} | {
        "review/review.css",
        "review/review.js",
    }
    assert sorted(modules - named) == [], "add them to docs/design.md's table"
    assert sorted(named - modules) == [], "docs/design.md names modules that are gone"


def test_the_layer_picture_follows_the_import_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    picture = _section("Layers").split("```")[1]
    drawn = [line.split("  ")[0].strip() for line in picture.splitlines() if line.startswith("vlcli.")]
    assert drawn == [layer.strip() for layer in contract["layers"]]
