"""`vl run`: the whole pipeline with the offline preset, interrupted and resumed, settings changes, plans."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from typer.testing import CliRunner

pytest.importorskip("transformers")

from vlcli.cli.app import app
from vlcli.demo.samples import write_samples
from vlcli.errors import StepInterrupted
from vlcli.run.pipeline import resolve, run_pipeline
from vlcli.steps.crop.step import CropStep
from vlcli.table.schema import BY_NAME, EMBEDDING, embedding_column
from vlcli.table.storage import Table

runner = CliRunner()
STEPS = "filter,crop,bin,synth,validate"
COMPARED = ("filter_keep", "filter_reason", "crop_box", "crop_score", "bin", "bin_selected", "synth_qa")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of tiny offline models for the module (the offline preset builds them on first use)."""
    return tmp_path_factory.mktemp("vl-cache")


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated scenes, charts, documents, duplicates and one broken file."""
    folder = tmp_path_factory.mktemp("samples") / "data" / "demo" / "train"
    write_samples(folder, 12, 0)
    return folder


@pytest.fixture(autouse=True)
def cache_dir(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VL_CACHE_DIR", str(models))


def settings(**sections: Any) -> dict[str, dict[str, Any]]:
    base: dict[str, dict[str, Any]] = {"run": {"preset": "offline", "steps": STEPS.split(",")}}
    base["crop"] = {"batch_size": 2, "resize_to": 128}
    base["bin"] = {"decode_side": 128, "ratios": [0.4, 0.4, 0.2]}
    base["synth"] = {"all_rows": False}
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return resolve(base, None)


def columns(path: Path) -> dict[str, dict[str, Any]]:
    table = Table.open(path)
    names = [c for c in COMPARED if c in table.schema.names]
    rows = table.to_arrow(["id", *names]).to_pylist()
    return {r["id"]: {k: r[k] for k in names} for r in rows}


def test_cli_runs_every_step_and_stores_the_summary(tmp_path: Path, samples: Path) -> None:
    table = tmp_path / "t.lance"
    args = ["run", str(samples), str(table), "--preset", "offline", "--steps", STEPS, "-q"]
    args += ["--set", "crop.resize_to=128", "--set", "bin.decode_side=128"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "NOT meaningful" in result.output  # the offline banner
    assert "Q/A generated" in result.output and "Q/A valid" in result.output
    summary = Table.open(table).metadata()["run"]
    assert summary["rows"] == Table.open(table).count() == 11  # 12 files, one an exact duplicate
    assert summary["steps"] == STEPS.split(",")
    assert 0 < summary["kept"] < summary["rows"]  # the broken file and duplicates are dropped
    assert sum(summary["bins"].values()) > 0 and summary["qa_generated"] > 0
    assert set(summary["seconds"]) == {"ingest", *STEPS.split(",")}
    status = runner.invoke(app, ["status", str(table)])
    assert status.exit_code == 0 and "last run" in status.output
    again = runner.invoke(app, args)  # nothing left: every step finds no pending row
    assert again.exit_code == 0, again.output
    assert Table.open(table).metadata()["run"]["step_reports"] == [
        {"step": s, "done": 0, "skipped": 0, "errors": 0} for s in STEPS.split(",")
    ]


def test_interrupted_run_resumes_to_the_same_table(
    tmp_path: Path, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = tmp_path / "whole.lance"
    run_pipeline(whole, settings(), samples)

    broken = tmp_path / "broken.lance"
    real = CropStep.process
    calls = {"n": 0}

    def interrupt_on_second_batch(self: CropStep, items: list[Any]) -> list[dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, items)

    monkeypatch.setattr(CropStep, "process", interrupt_on_second_batch)
    s = settings(crop={"commit_seconds": 0})
    with pytest.raises(StepInterrupted):
        run_pipeline(broken, s, samples)
    monkeypatch.setattr(CropStep, "process", real)
    done = Table.open(broken).count("crop_status IS NOT NULL")
    total = Table.open(whole).count("crop_status IS NOT NULL")
    assert 1 <= done <= 2 < total  # the first batch was committed, the interrupted one was not
    report = run_pipeline(broken, s, samples)  # the same call: resumes
    crop = next(r for r in report.steps if r.step == "crop")
    assert crop.processed == total - done
    assert columns(broken) == columns(whole)


def test_the_table_schema_is_the_declared_one(tmp_path: Path, samples: Path) -> None:
    table = tmp_path / "t.lance"
    run_pipeline(table, settings(synth={"describe": True}), samples)
    stored = Table.open(table).schema
    # every declared column, and nothing undeclared (a reference table's own columns live in reference tables)
    assert set(stored.names) == {name for name, c in BY_NAME.items() if c.step != "reference"}
    for field in stored:
        declared = BY_NAME[field.name]
        if field.name == EMBEDDING.name:  # as long as the crop model's embedding
            declared = embedding_column(field.type.list_size)
        # storage adds its own keys (id is the primary key, image bytes stay uncompressed)
        assert field.type == declared.type and field.metadata[b"doc"] == declared.doc.encode(), field.name


def test_changed_settings_redo_only_that_step(tmp_path: Path, samples: Path) -> None:
    table = tmp_path / "t.lance"
    run_pipeline(table, settings(), samples)
    before = columns(table)
    report = run_pipeline(table, settings(crop={"num_crops": 3}, filter={"phash_distance": 4}), samples)
    done = {r.step: r.processed for r in report.steps}
    kept = sum(1 for r in before.values() if r["filter_keep"])
    assert done["crop"] == kept  # crop settings changed: every kept row recomputed
    assert done["filter"] == 0  # a rule changed, not a score: recomputed from the stored columns
    assert done["bin"] == 0 and done["synth"] == 0 and done["validate"] == 0
    after = columns(table)
    assert any(after[i]["crop_score"] != before[i]["crop_score"] for i in after if after[i]["filter_keep"])
    # how a step runs (concurrency, server URL) is not what it writes: nothing is redone
    again = run_pipeline(table, settings(crop={"num_crops": 3}, synth={"concurrency": 2}), samples)
    assert all(r.processed == 0 for r in again.steps)


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path, samples: Path) -> None:
    table = tmp_path / "t.lance"
    result = runner.invoke(app, ["run", str(samples), str(table), "--preset", "offline", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert not table.exists()
    assert "12 items" in result.output and "embedder:" in result.output and "generator: stub" in result.output
    shutil.copytree(samples, tmp_path / "copy")
    run_pipeline(table, settings(run={"steps": ["filter"]}), tmp_path / "copy")
    version = Table.open(table).version
    result = runner.invoke(app, ["run", str(table), "--preset", "offline", "--steps", STEPS, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert Table.open(table).version == version
    assert "crop" in result.output and "after earlier steps" not in result.output.split("crop")[0]


def test_sample_is_reproducible_and_limits_the_work(tmp_path: Path, samples: Path) -> None:
    picked = []
    for name in ("a", "b"):
        table = tmp_path / f"{name}.lance"
        run_pipeline(table, settings(run={"steps": ["filter", "crop"], "sample": 4, "seed": 7}), samples)
        t = Table.open(table)
        picked.append(
            set(t.to_arrow(["id"], "crop_status IS NOT NULL OR filter_status IS NOT NULL")["id"].to_pylist())
        )
        assert t.count("filter_status IS NOT NULL") == 4
    assert picked[0] == picked[1]


def test_bad_command_lines_are_one_line_errors(tmp_path: Path) -> None:
    cases = [
        (["run"], "Missing argument"),
        (["run", "a", "b", "c"], "SRC TABLE"),
        (["run", str(tmp_path / "none.lance")], "no such table"),
        (["run", str(tmp_path / "t.lance"), "--preset", "turbo"], "--preset must be one of"),
        (["run", str(tmp_path / "t.lance"), "--set", "crop.num_crop=3"], "did you mean 'num_crops'"),
        (["run", str(tmp_path / "t.lance"), "--steps", "filter,cropp"], "unknown step 'cropp'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code in (1, 2), (args, result.output)
        assert message in result.output, (args, result.output)


def test_summary_counts_match_the_table(tmp_path: Path, samples: Path) -> None:
    table = tmp_path / "t.lance"
    report = run_pipeline(table, settings(), samples)
    data = Table.open(table).to_arrow(["filter_keep", "bin", "bin_selected", "synth_qa"])
    rows = data.to_pylist()
    assert report.summary["kept"] == sum(1 for r in rows if r["filter_keep"])
    assert report.summary["qa_generated"] == sum(len(r["synth_qa"] or []) for r in rows)
    selected = [r["bin"] for r in rows if r["bin_selected"]]
    assert report.summary["bins"] == {b: selected.count(b) for b in sorted(set(selected))}
    assert isinstance(data, pa.Table)


def closed_port() -> int:
    """A localhost port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def without_hub(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a machine whose hub is unreachable: online mode, HF_ENDPOINT on a closed port."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HOME=str(tmp_path / "hf"), **extra)
    env.pop("HF_HUB_CACHE", None)
    return env


def vl(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlcli.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_unreachable_hub_fails_before_any_work_saying_what_to_do(tmp_path: Path, samples: Path) -> None:
    table = tmp_path / "t.lance"
    result = vl(["run", str(samples), str(table), "-q"], without_hub(tmp_path), tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "cannot be reached (Connection refused)" in out and "'facebook/dinov2-base'" in out
    for way_out in (
        "--preset offline",
        "local folder",
        "hf download facebook/dinov2-base",
        "HF_HUB_OFFLINE=1",
    ):
        assert way_out in out, out
    assert "Retrying" not in out  # huggingface_hub's 20-50 s of retries never started
    assert len(out.strip().splitlines()) == 1 and not table.exists()  # nothing ingested first


def test_cached_models_load_when_the_hub_is_unreachable(
    tmp_path: Path, samples: Path, tiny_dinov2: str
) -> None:
    snapshot = tmp_path / "hf" / "hub" / "models--facebook--dinov2-base" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_dinov2, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    table = tmp_path / "t.lance"
    args = ["run", str(samples), str(table), "--steps", "crop", "--set", "crop.resize_to=64", "-q"]
    result = vl(args, without_hub(tmp_path), tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Retrying" not in out  # loaded from the cache at once, without asking the hub
    assert Table.open(table).count("crop_status = 'ok'") > 0


def test_hub_probe_honours_hf_endpoint_and_runs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from vlcli import hub
    from vlcli.errors import ModelLoadError

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setattr(hub, "_probed", {})
    assert hub.unreachable() == "Connection refused"
    with pytest.raises(ModelLoadError, match=r"cannot load 'nobody/nothing'.*cannot be reached.*--model"):
        hub.before_hf_load("nobody/nothing")
    assert list(hub._probed.values()) == ["Connection refused"]  # one probe for the process


def test_missing_source_fails_before_the_hub_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlcli import hub

    monkeypatch.setattr(hub, "unreachable", lambda: pytest.fail("the hub was asked"))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", "../nope", "t.lance"])
    assert result.exit_code == 1 and "no such file or folder: '../nope'" in result.output, result.output


def test_dry_run_needs_no_model_and_says_which_are_missing(
    tmp_path: Path, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlcli import hub

    monkeypatch.setattr(hub, "unreachable", lambda: pytest.fail("a dry run asked the hub"))
    monkeypatch.chdir(tmp_path)
    args = ["run", str(samples), "t.lance", "--dry-run", "--set", "bin.detector=nope.pt"]
    result = runner.invoke(app, [*args, "--set", "bin.captioner=./no-such-folder"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "embedder: facebook/dinov2-base (not in the local cache)" in text
    assert "clip: ViT-B-32 (not in the local cache)" in text
    assert "detector: nope.pt (not downloaded yet)" in text
    assert "no-such-folder (no such file or folder)" in text
    assert "ocr: rapidocr," in text and "nsfw: nudenet " in text  # shipped in their wheels
    assert "4 model(s) are not here yet" in text


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("crop.batch_size=-4", "vl run: crop.batch_size: --batch-size must be at least 1"),
        ("filter.workers=0", "vl run: filter.workers: --workers must be at least 1"),
        ("synth.prefetch=0", "vl run: synth.prefetch: --prefetch must be at least 1"),
        (
            "validate.commit_seconds=-1",
            "vl run: validate.commit_seconds: --commit-rows must be at least 1 and",
        ),
        ("validate.pool=fork", "--set: validate.pool: 'fork' is not one of thread, process"),
    ],
)
def test_dry_run_checks_every_value_the_run_will(
    tmp_path: Path, samples: Path, option: str, message: str
) -> None:
    args = ["run", str(samples), str(tmp_path / "t.lance"), "--preset", "offline", "--dry-run"]
    result = runner.invoke(app, [*args, "--set", option])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_a_demo_table_resumes_under_the_vl_run_the_demo_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    demo = runner.invoke(app, ["demo", "d6", "--images", "6", "--seed", "3"])
    assert demo.exit_code == 0, demo.output
    printed = [line.strip() for line in demo.output.splitlines() if line.strip().startswith("vl run d6/")]
    assert printed == ["vl run d6/demo.lance --preset offline"]
    again = runner.invoke(app, shlex.split(printed[0])[1:])
    assert again.exit_code == 0, again.output
    reports = Table.open(tmp_path / "d6" / "demo.lance").metadata()["run"]["step_reports"]
    assert [r["step"] for r in reports] == STEPS.split(",")
    assert all(r["done"] == r["skipped"] == r["errors"] == 0 for r in reports), reports
