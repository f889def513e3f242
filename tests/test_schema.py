"""Every column is declared once, in vlcli.table.schema: the steps write what it declares, docs/columns.md renders it."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
from conftest import jpeg_bytes, table_rows

from vlcli.steps import BUILT_IN, step_class
from vlcli.steps.bin.step import BinStep
from vlcli.steps.crop.step import CropSettings, CropStep
from vlcli.steps.filter.step import FilterStep
from vlcli.steps.synth.step import SynthSettings, SynthStep
from vlcli.steps.validate.step import ValidateStep
from vlcli.table import schema
from vlcli.table.schema import BY_NAME, COLUMNS, Column, embedding_column, ingest_schema

ROOT = Path(__file__).resolve().parent.parent


def test_columns_reference_is_current() -> None:
    docs = ROOT / "docs" / "columns.md"
    assert docs.read_text() == schema.reference(), "run: python -m vlcli.table.schema > docs/columns.md"


def test_every_column_is_declared_once_with_its_step_and_meaning() -> None:
    names = [c.name for c in COLUMNS]
    assert len(names) == len(set(names))
    steps = {"ingest", "filter", "crop", "bin", "synth", "validate"}
    # reference: the rows of a reference table (vl filter --against), never of the main table
    assert all(c.step in steps | {"reference"} and c.doc for c in COLUMNS)
    assert {f"{s}_status" for s in steps} <= set(names)


def test_every_column_a_step_writes_is_declared() -> None:
    steps = [
        FilterStep(),
        CropStep(CropSettings(keep_embedding=False)),
        BinStep(),
        SynthStep(SynthSettings(backend="stub", model="stub", describe=True)),
        ValidateStep(),
    ]
    written = [c for step in steps for c in step.columns()]
    assert {c.name for c in written} >= {
        "phash",
        "crop_box",
        "ocr_boxes",
        "synth_description",
        "validate_judge",
    }
    for column in written:
        assert column == BY_NAME[column.name], column.name
    # the embedding's length is the crop model's: only its type differs from the declaration
    assert embedding_column(384) == replace(BY_NAME["embedding"], type=pa.list_(pa.float32(), 384))


def test_no_module_declares_a_column_of_its_own() -> None:
    """A column's type lives only in vlcli.table.schema (a second declaration could drift from the table's)."""
    for path in (ROOT / "vlcli").rglob("*.py"):
        if path.name != "schema.py":
            assert not re.search(r"\bColumn\(", path.read_text()), path


def test_schema_of_builds_rows_with_the_declared_types() -> None:
    rows = pa.Table.from_pydict(
        {"id": ["a"], "crop_box": [[0, 0, 2, 2]]}, schema=schema.schema_of("id", "crop_box")
    )
    assert rows.schema.field("crop_box").type == pa.list_(pa.int32(), 4)
    assert isinstance(BY_NAME["crop_box"], Column)


def test_rows_built_by_the_tests_have_the_table_types() -> None:
    assert table_rows([jpeg_bytes(0)]).schema == ingest_schema()


def test_tests_and_benchmarks_take_column_types_from_the_schema() -> None:
    """A table column typed by hand in a test could drift from the table's: take it from vlcli.table.schema."""
    hand_written = re.compile(r"""pa\.field\(\s*["'](\w+)["']""")
    for path in [*(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        names = set(hand_written.findall(path.read_text())) & set(BY_NAME)
        assert not names, f"{path.name} declares {sorted(names)} by hand"


def test_every_column_a_step_reads_is_declared() -> None:
    for name in BUILT_IN:
        cls = step_class(name)
        read = {*cls.reads, *cls.optional_reads, *(column for column, _ in cls.prerequisites)}
        assert read <= set(BY_NAME), (name, sorted(read - set(BY_NAME)))
