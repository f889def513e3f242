"""`vl filter --against EVAL`: crop-grid reference hashes, the exact cross-set search, contaminated rows
decided before near-duplicate groups, remembered references, reuse of the reference table, the CLI."""

from __future__ import annotations

import io
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.demo.samples import draw_scene, eval_copy
from vlcli.errors import UsageError
from vlcli.ingestion.ingest import ingest
from vlcli.ingestion.reference import build_reference, resolve_against
from vlcli.steps.filter import contamination
from vlcli.steps.filter.contamination import (
    REFERENCE_KEY,
    crop_grid,
    cross_matches,
    embedding_matches,
    forget,
    remembered,
)
from vlcli.steps.filter.step import FilterReport, FilterRules, ScoreSettings, apply_rules, run_filter
from vlcli.table.schema import ID, REF_HASHES
from vlcli.table.storage import Table

NO_NSFW = ScoreSettings(nsfw="none")
SIZE = (480, 360)


def jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def scene(seed: int) -> Image.Image:
    return draw_scene(random.Random(seed), np.random.default_rng(seed), SIZE)


# The transformations, two evaluation images each; mirrored is not a match by default.
TRANSFORMS = ("centred 90% crop", "90% crop at a corner", "half size", "JPEG quality 60", "+8% brightness")


@dataclass
class Sets:
    eval_dir: Path
    train_dir: Path
    transformed: dict[str, tuple[str, int]]  # training file -> (transformation, evaluation image index)
    mirrored: str


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> Sets:
    root = tmp_path_factory.mktemp("contam")
    eval_dir, train_dir = root / "eval", root / "train"
    eval_dir.mkdir()
    train_dir.mkdir()
    evals = [scene(1000 + i) for i in range(30)]
    for i, img in enumerate(evals):
        (eval_dir / f"eval_{i:02d}.jpg").write_bytes(jpeg(img))
    transformed = {}
    for k, label in enumerate(TRANSFORMS):
        for j in (2 * k, 2 * k + 1):
            name = f"copy_{j:02d}.jpg"
            (train_dir / name).write_bytes(eval_copy(evals[j], label))
            transformed[name] = (label, j)
    for i in range(100):
        (train_dir / f"other_{i:03d}.jpg").write_bytes(jpeg(scene(i)))
    (train_dir / "mirrored.jpg").write_bytes(eval_copy(evals[20], "mirrored"))
    return Sets(eval_dir, train_dir, transformed, "mirrored.jpg")


def sources(table: Table) -> dict[str, str]:
    data = table.to_arrow(["id", "source"]).to_pydict()
    return {i: Path(s).name for i, s in zip(data["id"], data["source"])}


def decisions(table: Table) -> dict[str, dict[str, object]]:
    names = sources(table)
    rows = table.to_arrow(["id", "filter_keep", "filter_reason", "contam_of", "contam_distance"]).to_pylist()
    return {names[r["id"]]: r for r in rows}


def test_every_transformed_copy_is_found_and_nothing_else(sets: Sets, tmp_path: Path) -> None:
    table_path = tmp_path / "train.lance"
    ingest(sets.train_dir, table_path)
    table = Table.open(table_path)
    ref = build_reference(table, str(sets.eval_dir))
    assert ref.rows == 30 and ref.added == 30 and ref.path.startswith(f"{table.path}.refs/eval-")
    _, report = run_filter(table, NO_NSFW, FilterRules(min_side=0, against=(ref.path,)))
    assert report is not None and report.references == ["eval"]
    eval_names = sources(Table.open(ref.path))
    rows = decisions(table)
    found: Counter[str] = Counter()
    for name, (label, j) in sets.transformed.items():
        row = rows[name]
        if row["filter_reason"] == "contaminated":
            found[label] += 1
            assert row["filter_keep"] is False
            ref_name, ref_id = str(row["contam_of"]).split(":")
            assert (ref_name, eval_names[ref_id]) == ("eval", f"eval_{j:02d}.jpg")
            assert isinstance(row["contam_distance"], int) and row["contam_distance"] < 8
    recall = {label: f"{found[label]}/2" for label in TRANSFORMS}
    print("recall per transformation:", recall)
    assert all(found[label] == 2 for label in TRANSFORMS), recall
    others = {n: r for n, r in rows.items() if n not in sets.transformed}
    assert [n for n, r in others.items() if r["contam_of"] is not None] == []
    assert rows[sets.mirrored]["filter_reason"] != "contaminated"  # mirrored: not a match by default
    assert report.reasons["contaminated"] == 10

    # the reference table is built once: a second build reuses it without ingesting or writing
    version = Table.open(ref.path).version
    again = build_reference(table, str(sets.eval_dir))
    assert (again.path, again.added, again.rows) == (ref.path, 0, 30)
    assert Table.open(ref.path).version == version

    # remembered: a plain run (no --against) still rejects them; forgetting clears them
    assert [r["path"] for r in remembered(table)] == [ref.path]
    report = apply_rules(table, FilterRules(min_side=0))
    assert report.reasons["contaminated"] == 10
    assert forget(table) == 1
    report = apply_rules(table, FilterRules(min_side=0))
    assert report.reasons["contaminated"] == 0
    assert all(r["contam_of"] is None for r in decisions(table).values())


def test_a_vl_table_is_an_evaluation_set_too(sets: Sets, tmp_path: Path) -> None:
    eval_table = tmp_path / "eval.lance"
    ingest(sets.eval_dir, eval_table)
    ingest(sets.train_dir, tmp_path / "train.lance")
    table = Table.open(tmp_path / "train.lance")
    # what vl filter --against and vl run's filter.against do: sources become reference tables
    rules, (ref,) = resolve_against(table, FilterRules(min_side=0, against=(str(eval_table),)))
    assert ref.rows == 30 and Path(ref.path).name.startswith("eval-") and rules.against == (ref.path,)
    _, report = run_filter(table, NO_NSFW, rules)
    assert report is not None and report.reasons["contaminated"] == 10
    again, (same,) = resolve_against(table, rules)  # a reference table's own path stays itself
    assert again == rules and (same.name, same.added) == ("eval", 0)


@pytest.mark.parametrize("held", [1 << 24, 1000])  # 1000: reference variants in several passes
def test_cross_matches_equal_brute_force(held: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contamination, "VARIANTS_HELD", held)
    rng = np.random.default_rng(0)
    refs = rng.integers(-(2**63), 2**63 - 1, size=600, dtype=np.int64)
    near = refs[rng.integers(0, 600, size=300)].view(np.uint64)
    for _ in range(3):  # flip a few random bits: distances 0..~15
        near = near ^ (np.uint64(1) << rng.integers(0, 64, size=300).astype(np.uint64))
    near = near ^ np.where(
        rng.random(300) < 0.5, np.uint64(1) << rng.integers(0, 64, size=300).astype(np.uint64), np.uint64(0)
    )
    train = np.concatenate([near.view(np.int64), rng.integers(-(2**63), 2**63 - 1, size=300, dtype=np.int64)])
    full = np.bitwise_count(train.view(np.uint64)[:, None] ^ refs.view(np.uint64)[None, :]).astype(np.int64)
    for limit in (0, 1, 3, 5, 8, 12, 16, 17, 25):
        index, distance = cross_matches(train, refs, limit)
        masked = np.where(full < limit, full * len(refs) + np.arange(len(refs)), np.iinfo(np.int64).max)
        best = masked.min(axis=1)
        has = best != np.iinfo(np.int64).max
        assert np.array_equal(index, np.where(has, best % len(refs), -1)), limit
        assert np.array_equal(distance, np.where(has, best // len(refs), -1)), limit
        if limit == 8:
            assert 0 < has.sum() < len(train)  # the planted pairs, not the random rows


def test_crop_grid_and_embedding_matches() -> None:
    boxes = crop_grid(100, 50)
    assert len(boxes) == 21 and boxes[0] == (0, 0, 100, 50)
    assert all(0 <= x0 < x1 <= 100 and 0 <= y0 < y1 <= 50 for x0, y0, x1, y1 in boxes)
    assert (0, 0, 90, 45) in boxes and (10, 5, 100, 50) in boxes and (5, 2, 95, 47) in boxes
    refs = np.eye(3, 4, dtype=np.float32)
    train = np.array([[2, 0.1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0.05]], dtype=np.float32)
    index, cosine = embedding_matches(train, refs, 0.95)
    assert index.tolist() == [0, -1, 2] and np.isnan(cosine[1]) and cosine[0] > 0.99


def _reference(path: Path, name: str, hashes: dict[str, list[int]]) -> str:
    table = Table.create(path, pa.schema([ID.field(), REF_HASHES.field()]))
    table.append(pa.table({"id": list(hashes), "ref_hashes": list(hashes.values())}))
    table.set_metadata(REFERENCE_KEY, {"name": name})
    return table.path


def test_a_contaminated_image_is_never_the_kept_member_of_its_group(
    make_table: Callable[..., Table], tmp_path: Path
) -> None:
    table = make_table(6)
    run_filter(table, NO_NSFW, FilterRules(min_side=0))
    ids = sorted(table.to_arrow(["id"]).column("id").to_pylist())
    h = 0x0123_4567_89AB_CDEF
    a, b = ids[0], ids[1]
    table.write_back(pa.table({"id": [a, b], "phash": [h, h ^ 0b11111_000000]}))  # 5 bits apart
    rules = FilterRules(min_side=0, phash_distance=8)
    apply_rules(table, rules)
    kept_first = {r["id"]: r for r in table.to_arrow(["id", "dup_of"]).to_pylist()}
    kept, dropped = (a, b) if kept_first[b]["dup_of"] == a else (b, a)
    # the evaluation image is 6 bits from the would-be kept member, 11 from the other
    other_hash = h if kept == a else h ^ 0b11111_000000
    ref = _reference(tmp_path / "ref.lance", "bench", {"e1": [other_hash ^ 0b111111], "e2": [~h & 0xFFFF]})
    report = apply_rules(table, FilterRules(min_side=0, phash_distance=8, against=(ref,), against_distance=7))
    rows = {
        r["id"]: r
        for r in table.to_arrow(
            ["id", "filter_keep", "filter_reason", "dup_of", "contam_of", "contam_distance"]
        ).to_pylist()
    }
    assert rows[kept]["filter_reason"] == "contaminated" and rows[kept]["contam_of"] == "bench:e1"
    assert rows[kept]["contam_distance"] == 6 and rows[kept]["dup_of"] is None
    assert rows[dropped]["filter_keep"] is True and rows[dropped]["dup_of"] is None
    assert report.reasons == Counter({"contaminated": 1})
    # a second evaluation set with the same name is told apart by its folder name
    twin = _reference(tmp_path / "bench-2.lance", "bench", {"e9": [123]})
    apply_rules(table, FilterRules(min_side=0, against=(twin, ref)))
    assert [r["name"] for r in remembered(table)] == ["bench", "bench-2"]
    # --against-distance 0 leaves pHash matching off
    report = apply_rules(table, FilterRules(min_side=0, against_distance=0))
    assert report.reasons["contaminated"] == 0


def test_semantic_references_need_the_crop_step_and_the_same_model(
    make_table: Callable[..., Table], tmp_path: Path, image_folder: Callable[..., Path]
) -> None:
    table = make_table(3)
    folder = image_folder(3, "bench")
    with pytest.raises(UsageError, match="run `vl crop TABLE` first"):
        build_reference(table, str(folder), semantic=True)
    table.set_metadata("provenance.crop", {"params": {"model": "facebook/dinov2-small", "resize_to": 1024}})
    ref = build_reference(table, str(folder))
    Table.open(ref.path).set_metadata(
        "provenance.crop", {"params": {"model": "other/model", "resize_to": 1024}}
    )
    with pytest.raises(UsageError, match=r"delete .* to rebuild it with 'facebook/dinov2-small'"):
        build_reference(table, str(folder), semantic=True)


def test_semantic_match_with_the_tables_crop_model(sets: Sets, tmp_path: Path, tiny_dinov2: str) -> None:
    from vlcli.steps.crop.step import CropSettings, CropStep
    from vlcli.steps.runner import run_step

    train_dir = tmp_path / "train"
    train_dir.mkdir()
    for name in ("copy_06.jpg", "other_000.jpg", "other_001.jpg"):
        (train_dir / name).write_bytes((sets.train_dir / name).read_bytes())
    ingest(train_dir, tmp_path / "t.lance")
    table = Table.open(tmp_path / "t.lance")
    run_filter(table, NO_NSFW, FilterRules(min_side=0))
    run_step(table, CropStep(CropSettings(model=tiny_dinov2, resize_to=64, num_crops=2, device="cpu")))
    ref = build_reference(table, str(sets.eval_dir), semantic=True, device="cpu")
    assert Table.open(ref.path).count("embedding IS NOT NULL") == 30
    # pHash off (distance 0): only the embeddings can match. The random tiny model puts every photo above
    # cosine 0.99; the JPEG quality 60 copy is at ~0.99998, unrelated scenes at most ~0.998.
    report = apply_rules(
        table, FilterRules(min_side=0, against=(ref.path,), against_distance=0, semantic_threshold=0.9995)
    )
    rows = decisions(table)
    assert rows["copy_06.jpg"]["filter_reason"] == "contaminated"
    assert rows["copy_06.jpg"]["contam_distance"] is None
    eval_names = sources(Table.open(ref.path))
    assert eval_names[str(rows["copy_06.jpg"]["contam_of"]).split(":")[1]] == "eval_06.jpg"
    assert report.reasons["contaminated"] == 1


def test_cli_against_and_forget(sets: Sets, tmp_path: Path) -> None:
    ingest(sets.train_dir, tmp_path / "t.lance")
    path = str(tmp_path / "t.lance")
    result = CliRunner().invoke(
        app, ["filter", path, "--nsfw", "none", "--min-side", "0", "--against", str(sets.eval_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "reference eval: 30 images" in result.output
    assert "10 images matching the evaluation sets eval" in result.output
    result = CliRunner().invoke(app, ["filter", path, "--nsfw", "none", "--min-side", "0"])
    assert "10 images matching the evaluation sets eval" in result.output

    # honoured downstream: status counts them, show pairs them with their evaluation image, export leaves them
    status = CliRunner().invoke(app, ["status", path])
    assert "contaminated" in status.output
    page = tmp_path / "review.html"
    shown = CliRunner().invoke(
        app, ["show", path, "--out", str(page), "--where", "filter_reason = 'contaminated'"]
    )
    assert shown.exit_code == 0, shown.output
    text = page.read_text()
    assert text.count('<div class="pair">') == 10 and text.count("right: evaluation image eval:") == 10
    exported = CliRunner().invoke(app, ["export", path, "--parquet", str(tmp_path / "out")])
    assert exported.exit_code == 0, exported.output
    out_ids = set(pq.read_table(tmp_path / "out", columns=["id"]).column("id").to_pylist())
    contaminated = set(Table.open(path).to_arrow(["id"], "contam_of IS NOT NULL").column("id").to_pylist())
    assert len(contaminated) == 10 and len(out_ids) == Table.open(path).count() - 10
    assert not out_ids & contaminated
    result = CliRunner().invoke(
        app, ["filter", path, "--nsfw", "none", "--min-side", "0", "--forget-against"]
    )
    assert result.exit_code == 0, result.output
    assert "no longer checking against 1 evaluation set" in result.output
    assert "contaminated" not in result.output


def test_vl_run_takes_filter_against(sets: Sets, tmp_path: Path) -> None:
    from vlcli.run.pipeline import resolve, run_pipeline

    config = {
        "run": {"steps": ["filter"]},
        "filter": {"nsfw": "none", "min_side": 0, "against": [str(sets.eval_dir)]},
    }
    report = run_pipeline(tmp_path / "t.lance", resolve(config, None), sets.train_dir)
    summary = report.steps[0].summary
    assert isinstance(summary, FilterReport) and summary.reasons["contaminated"] == 10
    assert [r["name"] for r in remembered(Table.open(tmp_path / "t.lance"))] == ["eval"]
