"""`--engine ray`: read with lance-ray, prepare in Ray tasks, process in an actor pool, commit on the driver;
the same columns as the in-process engine, image bytes untouched, a lost actor retried, Ctrl-C resumable."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("lance_ray")

from conftest import jpeg_bytes, table_rows  # noqa: E402
from fake_steps import DigestStep  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from vlcli.cli.app import app  # noqa: E402
from vlcli.errors import StepInterrupted, UsageError  # noqa: E402
from vlcli.steps.base import RunOptions  # noqa: E402
from vlcli.steps.ray_engine import actor_resources  # noqa: E402
from vlcli.steps.runner import run_step  # noqa: E402
from vlcli.table.schema import ingest_schema  # noqa: E402
from vlcli.table.storage import Table  # noqa: E402

TESTS = str(Path(__file__).resolve().parent)
RAY = RunOptions(engine="ray", workers=2, batch_size=4, commit_rows=8)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray for the module, with 2 CPUs as in CI; its workers import the fake steps from tests/."""
    path = os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


class PidDigest(DigestStep):
    """A digest step that notes in `folder` which process processed each row (one file per process)."""

    def __init__(self, folder: str, fail_ids: frozenset[str]) -> None:
        super().__init__(fail_ids=fail_ids)
        self.folder = folder

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        results = super().process(items)
        with open(os.path.join(self.folder, str(os.getpid())), "a") as fh:
            fh.write("".join(f"{i}\n" for i, _, _ in items))
        return results


class KillOnceDigest(DigestStep):
    """A digest step whose process exits hard on `victim` the first time it sees it (the marker says)."""

    def __init__(self, victim: str, marker: str) -> None:
        super().__init__()
        self.victim, self.marker = victim, marker

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        if any(i == self.victim for i, _, _ in items) and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return super().process(items)


class Recorder:
    """Progress that records what it was told; raises Ctrl-C after `stop_after` advances."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.total: int | None = None
        self.rows = self.errors = self.advances = 0
        self.finished = False
        self.stop_after = stop_after

    def start(self, step: str, total: int | None) -> None:
        self.total = total

    def advance(self, rows: int, errors: int) -> None:
        self.rows, self.errors, self.advances = self.rows + rows, self.errors + errors, self.advances + 1
        if self.advances == self.stop_after:
            raise KeyboardInterrupt

    def finish(self) -> None:
        self.finished = True


def fragmented(
    path: Path, fragments: int = 3, per_fragment: int = 8, size: tuple[int, int] = (64, 48)
) -> Table:
    table = Table.create(path, ingest_schema())
    for f in range(fragments):
        table.append(table_rows([jpeg_bytes(f * per_fragment + i, size) for i in range(per_fragment)]))
    return table


def digests(table: Table) -> list[dict[str, Any]]:
    table = Table.open(table.path)
    return table.to_arrow(["id", "digest_sha1", "digest_pixels", "digest_status"]).sort_by("id").to_pylist()


def data_files(table: Table) -> dict[str, str]:
    """The table's data files and a digest of each."""
    folder = Path(table.path) / "data"
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def ids(table: Table) -> list[str]:
    return sorted(table.to_arrow(["id"]).column("id").to_pylist())


def test_ray_writes_what_the_local_engine_does_and_leaves_the_images(tmp_path: Path) -> None:
    single = fragmented(tmp_path / "single.lance", size=(256, 192))
    table = fragmented(tmp_path / "ray.lance", size=(256, 192))
    poisoned = frozenset(ids(table)[5:6])
    run_step(single, DigestStep(fail_ids=poisoned), RunOptions(batch_size=4))
    images_before = table.to_arrow(["id", "image"]).sort_by("id")
    image_bytes = sum(table.to_arrow(["file_size"]).column("file_size").to_pylist())
    size_before = table.size_on_disk()
    files_before = data_files(table)
    logs = tmp_path / "pids"
    logs.mkdir()
    progress = Recorder()

    step = PidDigest(str(logs), poisoned)
    report = run_step(table, step, replace(RAY, commit_rows=24), progress)  # one window

    assert digests(table) == digests(single)
    assert (report.done, report.errors, report.reasons) == (23, 1, {"error: ValueError": 1})
    assert (progress.total, progress.rows, progress.errors, progress.finished) == (24, 24, 1, True)
    assert report.tag is not None, "the driver did the once-only work after the rows"
    processed = {p.name: set(p.read_text().split()) for p in logs.iterdir()}
    assert str(os.getpid()) not in processed, "processed by Ray actors, not the driver"
    assert set().union(*processed.values()) == set(ids(table)) - poisoned
    table = Table.open(table.path)
    assert table.to_arrow(["id", "image"]).sort_by("id").equals(images_before)
    files_after = data_files(table)
    assert {name: files_after.get(name) for name in files_before} == files_before, "data files untouched"
    written = table.size_on_disk() - size_before
    assert written < image_bytes / 4, ("no image bytes rewritten", written, image_bytes)


def test_limit_takes_at_most_that_many_rows(tmp_path: Path) -> None:
    table = fragmented(tmp_path / "t.lance")
    report = run_step(table, DigestStep(), RunOptions(engine="ray", workers=1, batch_size=4, limit=6))
    assert report.done == 6 and Table.open(table.path).count("digest_status IS NOT NULL") == 6


def test_a_killed_actor_is_restarted_and_the_run_ends_right(tmp_path: Path) -> None:
    reference = fragmented(tmp_path / "reference.lance")
    run_step(reference, DigestStep(), RunOptions(batch_size=4))
    table = fragmented(tmp_path / "t.lance")
    marker = tmp_path / "killed"

    report = run_step(table, KillOnceDigest(ids(table)[10], str(marker)), RAY)

    assert marker.exists(), "an actor died mid-run"
    assert report.done == 24 and digests(table) == digests(reference)


def test_an_interrupted_driver_keeps_its_commits_and_the_rerun_resumes(tmp_path: Path) -> None:
    reference = fragmented(tmp_path / "reference.lance")
    run_step(reference, DigestStep(), RunOptions(batch_size=4))
    table = fragmented(tmp_path / "t.lance")
    opts = RunOptions(engine="ray", workers=1, batch_size=4, commit_rows=4)

    with pytest.raises(StepInterrupted, match="rerun the same command to resume") as caught:
        run_step(table, DigestStep(), opts, Recorder(stop_after=1))

    report = caught.value.report
    assert report is not None and report.interrupted and report.processed == 4
    assert Table.open(table.path).count("digest_status IS NOT NULL") == 4, "the first window is kept"
    log = tmp_path / "rerun.log"
    rerun = run_step(Table.open(table.path), DigestStep(log=str(log)), opts)
    assert rerun.done == 20 and len(log.read_text().split()) == 20, "only the rows not committed"
    assert digests(table) == digests(reference)


def test_vl_crop_on_ray_writes_what_the_local_engine_does(tmp_path: Path, tiny_dinov2: str) -> None:
    from vlcli.steps.crop.step import CropSettings, CropStep

    settings = CropSettings(model=tiny_dinov2, resize_to=64, num_crops=4, device="cpu", dtype="fp32")
    single = fragmented(tmp_path / "single.lance", fragments=2, per_fragment=6, size=(96, 64))
    table = fragmented(tmp_path / "ray.lance", fragments=2, per_fragment=6, size=(96, 64))
    run_step(single, CropStep(settings), RunOptions(batch_size=4))
    flags = [
        "--model",
        tiny_dinov2,
        "--resize-to",
        "64",
        "--num-crops",
        "4",
        "--device",
        "cpu",
        "--dtype",
        "fp32",
    ]

    result = CliRunner().invoke(
        app, ["crop", table.path, *flags, "--engine", "ray", "--workers", "2", "--batch-size", "4"]
    )

    assert result.exit_code == 0, result.output
    columns = ["id", "crop_box", "crop_status", "crop_score", "embedding"]
    local, remote = (Table.open(t.path).to_arrow(columns).sort_by("id").to_pylist() for t in (single, table))
    assert [r["crop_status"] for r in remote] == ["ok"] * 12
    for a, b in zip(local, remote, strict=True):
        assert (a["id"], a["crop_box"]) == (b["id"], b["crop_box"])
        assert a["crop_score"] == pytest.approx(b["crop_score"], abs=1e-5)
        assert a["embedding"] == pytest.approx(b["embedding"], abs=1e-5)


def test_without_ray_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = fragmented(tmp_path / "t.lance", fragments=1, per_fragment=2)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(UsageError, match=r"^--engine ray needs Ray: pip install 'vlcli\[ray\]'$"):
        run_step(table, DigestStep(), RunOptions(engine="ray"))


def test_actors_leave_cpus_for_readers_and_take_one_gpu_each() -> None:
    assert actor_resources({"CPU": 2.0}, RunOptions(workers=2)) == (2, 0.5, 0.0)
    assert actor_resources({"CPU": 64.0, "GPU": 8.0}, RunOptions(workers=16)) == (8, 1.0, 1.0)
    assert actor_resources({"CPU": 64.0, "GPU": 8.0}, RunOptions(workers=8, gpus_per_worker=0.5)) == (
        8,
        1.0,
        0.5,
    )
    with pytest.raises(UsageError, match="--gpus-per-worker"):
        actor_resources({"CPU": 8.0}, RunOptions(gpus_per_worker=1))
