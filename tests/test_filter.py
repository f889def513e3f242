"""`vl filter`: bounds, NSFW, near-duplicates, thresholds recomputed without decoding, errors, CLI."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import table_rows
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.demo.samples import draw_scene
from vlcli.errors import UsageError
from vlcli.steps.base import RunOptions
from vlcli.steps.filter.step import FilterRules, ScoreSettings, apply_rules, run_filter
from vlcli.table.schema import embedding_column, ingest_schema
from vlcli.table.storage import Table

NO_NSFW = ScoreSettings(nsfw="none")


def encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, quality=quality) if fmt == "JPEG" else img.save(buf, fmt)
    return buf.getvalue()


def scene(seed: int, size: tuple[int, int] = (400, 300)) -> Image.Image:
    import random

    return draw_scene(random.Random(seed), np.random.default_rng(seed), size)


def build(tmp_path: Path, images: list[bytes], datasets: list[str] | None = None) -> tuple[Table, list[str]]:
    table = Table.create(tmp_path / "f.lance", ingest_schema())
    rows = table_rows(images)
    if datasets:
        rows = rows.set_column(rows.schema.get_field_index("dataset"), "dataset", pa.array(datasets))
    table.append(rows)
    return table, rows.column("id").to_pylist()


def columns(table: Table) -> dict[str, dict[str, object]]:
    cols = ["id", "phash", "nsfw_score", "dup_of", "filter_keep", "filter_reason", "filter_status"]
    return {r["id"]: r for r in table.to_arrow(cols).to_pylist()}


def near_copies(base: Image.Image) -> list[bytes]:
    """The original and four edits of it: recompressed, resized, brightened, slightly cropped."""
    w, h = base.size
    return [
        encode(base, quality=95),
        encode(base, quality=40),
        encode(base.resize((w * 3 // 4, h * 3 // 4))),
        encode(ImageEnhance.Brightness(base).enhance(1.06)),
        encode(base.crop((4, 3, w - 4, h - 3))),
    ]


def test_near_duplicates_keep_the_largest_image(tmp_path: Path) -> None:
    copies = near_copies(scene(1))
    others = [encode(scene(s)) for s in (2, 3, 4)]
    table, ids = build(tmp_path, copies + others)
    _, report = run_filter(table, NO_NSFW, FilterRules(min_side=0))
    got = columns(table)
    kept = min(ids[0], ids[1], ids[3])  # full size beats resized and cropped; ties: smallest id
    assert got[kept]["filter_keep"] is True and got[kept]["dup_of"] is None
    for twin in set(ids[:5]) - {kept}:
        assert got[twin]["dup_of"] == kept and got[twin]["filter_reason"] == "duplicate"
    for other in ids[5:]:
        assert got[other]["filter_keep"] is True
    assert report.reasons == {"duplicate": 4} and report.kept == 4 and report.duplicate_groups == 1


def test_kept_member_is_deterministic_not_arrival_order(tmp_path: Path) -> None:
    base = scene(5)
    same_size = [encode(base, quality=q) for q in (91, 92, 93)]
    table, ids = build(tmp_path, same_size)
    run_filter(table, NO_NSFW, FilterRules(min_side=0))
    kept = [i for i, r in columns(table).items() if r["filter_keep"]]
    assert kept == [min(ids)]


def test_bounds_and_reasons(tmp_path: Path) -> None:
    images = [
        encode(scene(6, (300, 300))),
        encode(scene(7, (200, 120))),  # too small
        encode(scene(8, (760, 240))),  # wide
        encode(scene(9, (900, 700))),  # too large with --max-side 800
    ]
    table, ids = build(tmp_path, images)
    _, report = run_filter(table, NO_NSFW, FilterRules(min_side=200, max_side=800, max_aspect=3.0))
    got = columns(table)
    assert [got[i]["filter_reason"] for i in ids] == [None, "too_small", "bad_aspect", "too_large"]
    assert [got[i]["filter_keep"] for i in ids] == [True, False, False, False]
    assert report.kept == 1


def test_new_thresholds_need_no_decoding(tmp_path: Path) -> None:
    images = [encode(scene(s, (340, 290 + 10 * s))) for s in range(6)]
    table, _ = build(tmp_path, images)
    run_filter(table, NO_NSFW, FilterRules(min_side=0))
    table = Table.open(table.path)
    table.bytes_read()
    report = apply_rules(table, FilterRules(min_side=300))
    image_bytes = sum(len(b) for b in images)
    assert table.bytes_read() < image_bytes / 4
    assert report.reasons["too_small"] == 1
    # the whole command again: nothing pending, so nothing is decoded either
    step, again = run_filter(Table.open(table.path), NO_NSFW, FilterRules(min_side=300))
    assert step.processed == 0 and again.reasons == report.reasons


def test_unreadable_rows_are_rejected_with_a_reason(tmp_path: Path) -> None:
    images = [encode(scene(10)), encode(scene(11)), encode(scene(12))]
    table, ids = build(tmp_path, images)
    table.write_back(pa.table({"id": [ids[1]], "image": [b"\xff\xd8\xff broken"]}))
    table.write_back(pa.table({"id": [ids[2]], "ingest_status": ["error: empty file"], "image": [None]}))
    _, report = run_filter(table, NO_NSFW, FilterRules(min_side=0))
    got = columns(table)
    assert str(got[ids[1]]["filter_status"]).startswith("error: ")
    assert got[ids[1]]["filter_reason"] == "unreadable" and got[ids[1]]["filter_keep"] is False
    assert got[ids[2]]["filter_status"] is None and got[ids[2]]["filter_reason"] == "unreadable"
    assert report.reasons == {"unreadable": 2} and report.kept == 1


def test_limit_leaves_rows_unscored_then_resume_completes(tmp_path: Path) -> None:
    copies = near_copies(scene(13))
    table, _ = build(tmp_path, copies)
    _, partial = run_filter(table, NO_NSFW, FilterRules(min_side=0), RunOptions(limit=2))
    assert partial.not_scored == 3
    reference_table, _ = build(tmp_path / "ref", copies)
    run_filter(reference_table, NO_NSFW, FilterRules(min_side=0))
    run_filter(table, NO_NSFW, FilterRules(min_side=0))
    assert columns(table) == columns(reference_table)


def test_dedup_scope_dataset(tmp_path: Path) -> None:
    base = scene(14)
    table, _ = build(tmp_path, [encode(base, quality=95), encode(base, quality=60)], datasets=["a", "b"])
    run_filter(table, NO_NSFW, FilterRules(min_side=0, dedup_scope="dataset"))
    assert all(r["filter_keep"] for r in columns(table).values())
    apply_rules(table, FilterRules(min_side=0, dedup_scope="all"))
    assert sum(r["filter_keep"] for r in columns(table).values()) == 1


def test_nsfw_scores_from_a_local_classifier(tmp_path: Path, tiny_nsfw_classifier: str) -> None:
    images = [encode(scene(s)) for s in range(15, 19)]
    table, ids = build(tmp_path, images)
    settings = ScoreSettings(nsfw="hf", nsfw_model=tiny_nsfw_classifier, device="cpu")
    run_filter(table, settings, FilterRules(min_side=0, nsfw_threshold=1.0))
    scores = [columns(table)[i]["nsfw_score"] for i in ids]
    assert all(0.0 <= s <= 1.0 for s in scores)  # type: ignore[operator]
    report = apply_rules(table, FilterRules(min_side=0, nsfw_threshold=min(scores) - 1e-6))  # type: ignore[type-var]
    assert report.reasons == {"nsfw": 4}
    assert table.metadata()["provenance.filter"]["params"]["nsfw"] == "hf"


def test_semantic_duplicates_from_embeddings(tmp_path: Path) -> None:
    images = [encode(scene(s)) for s in range(20, 25)]
    table, ids = build(tmp_path, images)
    vectors = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    vectors[3] = vectors[1] * 2 + 0.001  # same direction: cosine ~1
    table.ensure_columns([embedding_column(8).field()])
    table.write_back(
        pa.table({"id": ids, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 8)})
    )
    run_filter(table, NO_NSFW, FilterRules(min_side=0, semantic_threshold=0.99))
    got = columns(table)
    twin, kept = sorted([ids[1], ids[3]], key=lambda i: (-1, i))[1], min(ids[1], ids[3])
    assert got[twin]["filter_reason"] == "semantic_duplicate" and got[twin]["dup_of"] == kept


def test_semantic_needs_embeddings(tmp_path: Path) -> None:
    table, _ = build(tmp_path, [encode(scene(30))])
    with pytest.raises(UsageError, match="vl crop"):
        run_filter(table, NO_NSFW, FilterRules(min_side=0, semantic_threshold=0.9))


def test_bad_rules_name_the_flag() -> None:
    with pytest.raises(UsageError, match="--dedup-scope"):
        FilterRules(dedup_scope="everything")
    with pytest.raises(UsageError, match="--nsfw-threshold"):
        FilterRules(nsfw_threshold=2)


def test_cli(tmp_path: Path) -> None:
    copies = near_copies(scene(31))
    table, _ = build(tmp_path, copies)
    result = CliRunner().invoke(app, ["filter", table.path, "--nsfw", "none", "--min-side", "0"])
    assert result.exit_code == 0, result.output
    assert "1 kept, 4 rejected" in result.output and "duplicate" in result.output
    bad = CliRunner().invoke(app, ["filter", table.path, "--dedup-scope", "x"])
    assert bad.exit_code == 2 and "--dedup-scope" in bad.stderr
    status = CliRunner().invoke(app, ["status", table.path])
    assert "duplicate" in status.output
