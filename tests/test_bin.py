"""`vl bin` end to end with real OCR, a random YOLO and tiny BLIP/CLIP: features, bins, explain, errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import table_rows
from test_filter import encode
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.demo.samples import draw_page, draw_scene
from vlcli.steps.base import RunOptions
from vlcli.steps.bin.rules import BinRules
from vlcli.steps.bin.step import BinSettings, explain, run_bin
from vlcli.table.schema import FILTER_KEEP, ingest_schema
from vlcli.table.storage import Table

pytest.importorskip("open_clip")


@pytest.fixture
def settings(tiny_blip: str, tiny_clip: str) -> BinSettings:
    """Every model enabled, small: no OCR (it has its own tests), a random yolov8n, tiny BLIP and CLIP."""
    return BinSettings(ocr="none", detector="yolov8n.yaml", captioner=tiny_blip, clip=tiny_clip, device="cpu")


def images() -> list[bytes]:
    scenes = [encode(draw_scene(random.Random(s), np.random.default_rng(s), (320, 240))) for s in range(3)]
    return [*scenes, encode(draw_page(random.Random(9), (300, 400)))]


def build(tmp_path: Path, data: list[bytes]) -> tuple[Table, list[str]]:
    table = Table.create(tmp_path / "b.lance", ingest_schema())
    rows = table_rows(data)
    table.append(rows)
    return table, rows.column("id").to_pylist()


def test_features_and_bins_are_written(tmp_path: Path, settings: BinSettings) -> None:
    table, _ = build(tmp_path, images())
    step, report = run_bin(table, settings, BinRules(ratios=(0.25, 0.5, 0.25)))
    assert step.done == 4
    rows = {
        r["id"]: r
        for r in table.to_arrow(
            [
                "id",
                "objects",
                "num_objects",
                "num_classes",
                "dispersion",
                "caption",
                "clip_score",
                "ocr_boxes",
                "bin",
                "bin_selected",
                "bin_status",
            ]
        ).to_pylist()
    }
    for r in rows.values():
        assert r["bin_status"] == "ok"
        assert r["num_objects"] == len(r["objects"]) and isinstance(r["caption"], str)
        assert -1 <= r["clip_score"] <= 1 and 0 <= r["dispersion"] <= 1
        assert r["ocr_boxes"] is None  # OCR was off
    assert report.quotas == {"A": 1, "B": 2, "C": 1}
    assert sorted(r["bin"] for r in rows.values()) == ["A", "B", "B", "C"]
    assert table.metadata()["provenance.bin"]["params"]["detector"] == "yolov8n.yaml"


def test_rebalancing_reads_no_images(tmp_path: Path, settings: BinSettings) -> None:
    data = images()
    table, _ = build(tmp_path, data)
    run_bin(table, settings)
    table = Table.open(table.path)
    table.bytes_read()
    _, report = run_bin(table, settings, BinRules(rule="threshold", ratios=(1 / 3, 1 / 3, 1 / 3)))
    assert table.bytes_read() < sum(len(b) for b in data) / 4
    assert report.rule == "threshold" and report.candidates == 4


def test_caption_only_and_bad_images(tmp_path: Path, settings: BinSettings) -> None:
    table, ids = build(tmp_path, images())
    table.write_back(pa.table({"id": [ids[0]], "image": [b"\x89PNG broken"]}))
    only = BinSettings(**{**settings.__dict__, "features": "caption-only"})
    step, _ = run_bin(table, only)
    rows = {r["id"]: r for r in table.to_arrow(["id", "bin_status", "objects", "caption"]).to_pylist()}
    assert str(rows[ids[0]]["bin_status"]).startswith("error: ")
    assert all(rows[i]["objects"] is None and rows[i]["caption"] for i in ids[1:])
    assert step.errors == 1


def test_rows_the_filter_rejected_are_skipped(tmp_path: Path, settings: BinSettings) -> None:
    table, ids = build(tmp_path, images())
    table.ensure_columns([FILTER_KEEP.field()])
    table.write_back(pa.table({"id": ids, "filter_keep": [False, True, True, True]}))
    step, report = run_bin(table, settings, options=RunOptions(batch_size=2))
    assert step.done == 3 and report.candidates == 3


def test_explain_and_user_criteria(tmp_path: Path, settings: BinSettings) -> None:
    table, ids = build(tmp_path, images())
    run_bin(table, settings)
    ex = explain(table, ids[1], BinRules(), {"busy": "num_objects > -1"})
    names = [c.name for c in ex.criteria]
    assert names[:5] == ["num_text_boxes", "text_area_ratio", "num_classes", "num_objects", "dispersion"]
    assert ex.criteria[-1].name == "busy" and ex.criteria[-1].passed is True
    assert ex.ranks["num_objects"][1] == 4 and ex.bin in ("A", "B", "C")
    result = CliRunner().invoke(
        app, ["bin", table.path, "--explain", ids[1], "--criterion", "busy=num_objects > -1"]
    )
    assert result.exit_code == 0, result.output
    assert "busy" in result.output and "rank by num_objects" in result.output
    bad = CliRunner().invoke(app, ["bin", table.path, "--explain", ids[1], "--criterion", "nonsense"])
    assert bad.exit_code == 2 and "--criterion" in bad.stderr


def test_cli_rebalance_and_bad_ratios(tmp_path: Path, settings: BinSettings) -> None:
    table, _ = build(tmp_path, images())
    run_bin(table, settings)
    args = [
        "bin",
        table.path,
        "--ocr",
        "none",
        "--detector",
        "yolov8n.yaml",
        "--captioner",
        settings.captioner,
        "--clip",
        settings.clip,
        "--device",
        "cpu",
        "--ratios",
        "0.5",
        "0.5",
        "0",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "A: 2 of quota 2" in result.output
    bad = CliRunner().invoke(app, [*args[:-3], "--ratios", "0.9", "0.9", "0.9"])
    assert bad.exit_code == 2 and "--ratios" in bad.stderr


def test_limit_then_resume_equals_one_run(tmp_path: Path, settings: BinSettings) -> None:
    data = images()
    table, _ = build(tmp_path / "a", data)
    reference, _ = build(tmp_path / "b", data)
    first, _ = run_bin(table, settings, options=RunOptions(limit=1))
    assert first.processed == 1
    rest, _ = run_bin(table, settings)
    assert rest.processed == 3
    run_bin(reference, settings)
    cols = ["id", "num_objects", "caption", "clip_score", "bin", "bin_selected", "bin_status"]

    def rows(t: Table) -> list[dict[str, object]]:
        return sorted(t.to_arrow(cols).to_pylist(), key=lambda r: str(r["id"]))

    got, want = rows(table), rows(reference)
    assert [r["bin"] for r in got] == [r["bin"] for r in want]
    for g, w in zip(got, want):
        assert g["caption"] == w["caption"] and g["num_objects"] == w["num_objects"]
        assert g["clip_score"] == pytest.approx(w["clip_score"], abs=1e-5)
