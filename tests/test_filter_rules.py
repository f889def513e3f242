"""`vl filter`'s global part (`apply_rules`): only changed rows are written, and rows leaving or joining the
candidates update the stored near-duplicate groups to what a full recompute gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from vlcli.steps.filter import step as filter_step
from vlcli.steps.filter.contamination import REFERENCE_KEY
from vlcli.steps.filter.dedup import kept_rows
from vlcli.steps.filter.step import FilterRules, _id_codes, apply_rules
from vlcli.table.schema import FILTER_STATUS, ID, NSFW_SCORE, PHASH, REF_HASHES, ingest_schema
from vlcli.table.storage import Table

Row = tuple[str, int, int, int, str]  # id, pHash (64 bits), width, height, dataset

SCHEMA = pa.schema([*ingest_schema(), PHASH.field(), NSFW_SCORE.field(), FILTER_STATUS.field()])


def add_rows(table: Table, rows: list[Row]) -> None:
    """Scored rows, as `vl filter`'s per-row part leaves them (no image is ever decoded here)."""
    ids, hashes, widths, heights, datasets = zip(*rows)
    table.append(
        pa.table(
            {
                "id": ids,
                "dataset": datasets,
                "image": [b"x"] * len(rows),
                "width": widths,
                "height": heights,
                "ingest_status": ["ok"] * len(rows),
                "phash": np.array(hashes, dtype=np.uint64).view(np.int64),
                "nsfw_score": [0.0] * len(rows),
                "filter_status": ["ok"] * len(rows),
            }
        )
    )


def decisions(table: Table) -> dict[str, tuple[object, ...]]:
    cols = ["id", "dup_of", "filter_keep", "filter_reason", "contam_of", "contam_distance"]
    return {r["id"]: tuple(r.values())[1:] for r in table.to_arrow(cols).to_pylist()}


def reference(path: Path, hashes: list[int]) -> str:
    ref = Table.create(path, pa.schema([ID.field(), REF_HASHES.field()]))
    ids = [f"e{k}" for k in range(len(hashes))]
    ref.append(pa.table({"id": ids, "ref_hashes": [[h - (1 << 64) if h >= 1 << 63 else h] for h in hashes]}))
    ref.set_metadata(REFERENCE_KEY, {"name": "eval"})
    return ref.path


def record_searches(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """Spy on the filter's group search: per call, how many rows were new (None: all searched)."""
    calls: list[int | None] = []

    def spy(*args: object, **kwargs: object) -> np.ndarray:
        mask = kwargs.get("new")
        calls.append(None if mask is None else int(np.count_nonzero(mask)))
        return kept_rows(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(filter_step, "kept_rows", spy)
    return calls


def groups_and_singles() -> tuple[list[Row], list[Row], dict[str, int]]:
    """Group 1: a - b - c chained through b (a and c 8 bits apart), b kept (the most pixels); group 2: x
    kept, y and z copies of it; 40 random rows. Then new rows: w near c, and a random one."""
    rng = np.random.default_rng(5)
    h = {k: int(v) for k, v in zip("bxr", rng.integers(0, 2**63, size=3))}
    h["a"], h["c"] = h["b"] ^ 0b1, h["b"] ^ (0b1111111 << 8)
    h["y"], h["z"], h["w"] = h["x"] ^ 0b11, h["x"] ^ (0b101 << 20), h["c"] ^ (0b11 << 40)
    big, mid, small = (3000, 3000), (800, 600), (300, 300)
    sizes = {"a": mid, "b": big, "c": mid, "x": big, "y": small, "z": mid, "w": mid}
    ds = {"a": "one", "b": "one", "c": "one", "w": "one"}
    old = [(k, h[k], *sizes[k], ds.get(k, "two")) for k in "abcxyz"]
    old += [(f"s{k:02d}", int(v), 500, 500, "two") for k, v in enumerate(rng.integers(0, 2**63, size=40))]
    new = [("w", h["w"], *sizes["w"], "one"), ("r", h["r"], 500, 500, "two")]
    return old, new, h


@pytest.mark.parametrize("scope", ["all", "dataset"])
@pytest.mark.parametrize("change", ["against", "max_side", "min_side"])
def test_rows_leaving_the_candidates_regroup_only_their_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, scope: str
) -> None:
    old, new, h = groups_and_singles()
    calls = record_searches(monkeypatch)
    first = FilterRules(min_side=0, dedup_scope=scope)
    final = {  # each removes the bridge b (group 1's kept member too) or a plain member (y)
        "against": FilterRules(
            min_side=0, dedup_scope=scope, against=(reference(tmp_path / "e.lance", [h["b"], h["x"]]),)
        ),
        "max_side": FilterRules(min_side=0, dedup_scope=scope, max_side=2000),
        "min_side": FilterRules(min_side=400, dedup_scope=scope),
    }[change]
    if change == "against":
        final = FilterRules(min_side=0, dedup_scope=scope, against=final.against, against_distance=1)
    table = Table.create(tmp_path / "t.lance", SCHEMA)
    add_rows(table, old)
    apply_rules(table, first)
    before = decisions(table)
    assert before["a"][0] == before["c"][0] == "b" and before["y"][0] == before["z"][0] == "x"
    add_rows(table, new)
    apply_rules(table, final)
    assert calls == [None, 2]  # then only the two new rows were searched

    full = Table.create(tmp_path / "full.lance", SCHEMA)
    add_rows(full, old + new)
    apply_rules(full, final)
    assert calls[-1] is None
    assert decisions(table) == decisions(full)
    after = decisions(table)
    if change == "min_side":
        assert after["y"][2] == "too_small" and after["z"][0] == "x"
    else:  # b gone: a alone, c grouped with the new w; x gone: y and z regrouped among themselves
        assert after["b"][1] is False and after["a"][:3] == (None, True, None)
        assert after["c"][0] is None and after["w"][0] == "c"  # equal pixels: the smaller id
        assert after["z"][0] is None and after["y"][0] == "z"


def test_a_rerun_with_the_same_rules_commits_nothing(tmp_path: Path) -> None:
    old, new, _ = groups_and_singles()
    table = Table.create(tmp_path / "t.lance", SCHEMA)
    add_rows(table, old + new)
    rules = FilterRules(min_side=0)
    apply_rules(table, rules)
    version = table.version
    report = apply_rules(table, rules)
    table.refresh()
    assert table.version == version
    assert (report.rows, report.kept, report.reasons["duplicate"], report.duplicate_groups) == (48, 43, 5, 2)


def test_a_threshold_change_writes_only_the_rows_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new, _ = groups_and_singles()
    table = Table.create(tmp_path / "t.lance", SCHEMA)
    add_rows(table, old + new)
    apply_rules(table, FilterRules(min_side=0))
    written: list[list[str]] = []
    write_back = table.write_back

    def spy(rows: pa.Table) -> None:
        written.append(rows.column("id").to_pylist())
        write_back(rows)

    monkeypatch.setattr(table, "write_back", spy)
    apply_rules(table, FilterRules(min_side=550))  # the 40 singles and r (500x500), y (300x300)
    assert [sorted(ids) for ids in written] == [sorted([f"s{k:02d}" for k in range(40)] + ["r", "y"])]
    apply_rules(table, FilterRules(min_side=550, nsfw_threshold=0.4))  # no score is above either
    assert len(written) == 1


def test_id_codes_depend_only_on_the_ids() -> None:
    ids = pa.array(["ab", "", "ba", "ab", "x" * 300, "ab\x00", "é"])
    codes = _id_codes(ids)
    assert codes[0] == codes[3] and len(set(codes.tolist())) == 6
    assert _id_codes(ids[2:]).tolist() == codes[2:].tolist()  # a slice reads its own offsets
    assert _id_codes(ids.cast(pa.large_string())).tolist() == codes.tolist()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_sequence_of_rule_changes_ends_as_a_full_recompute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2**63, size=6)
    flips = [
        sum(1 << int(b) for b in rng.choice(64, size=int(rng.integers(0, 6)), replace=False))
        for _ in range(60)
    ]
    hashes = [int(centres[k % 6]) ^ f for k, f in enumerate(flips)]  # chains of copies around six centres
    sides = rng.choice([200, 400, 600, 900], size=(60, 2))
    rows: list[Row] = [(f"r{k:02d}", h, *map(int, sides[k]), "ab"[k % 2]) for k, h in enumerate(hashes)]
    table = Table.create(tmp_path / "t.lance", SCHEMA)
    add_rows(table, rows[:40])
    ref = reference(tmp_path / "e.lance", [hashes[k] for k in rng.choice(60, size=4, replace=False)])
    calls = record_searches(monkeypatch)
    for step in range(6):
        if step == 3:
            add_rows(table, rows[40:])
        scope = str(rng.choice(["all", "dataset"])) if step == 5 else "all"
        rules = FilterRules(
            min_side=int(rng.choice([0, 300, 500, 700])),
            dedup_scope=scope,
            against=(ref,) if step >= 2 else (),
            against_distance=2,
        )
        searched = len(calls)
        apply_rules(table, rules)
        assert step == 0 or scope == "dataset" or None not in calls[searched:]  # never all again
        full = Table.create(tmp_path / f"full{step}.lance", SCHEMA)
        add_rows(full, rows[: 60 if step >= 3 else 40])
        apply_rules(full, rules)
        assert decisions(table) == decisions(full), step
