"""Pickled checkpoints run code when unpickled: every backend that reads one refuses a crafted file
(without --trust-remote-code) before any of its code runs."""

from __future__ import annotations

import builtins
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vlcli.backends import create
from vlcli.cli.app import app
from vlcli.errors import ModelLoadError
from vlcli.table.storage import Table

torch = pytest.importorskip("torch")
runner = CliRunner()


class Payload:
    """Unpickling this opens (so creates) `marker` for writing: the proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.open, (str(self.marker), "w"))


def crafted(path: Path, marker: Path, zipped: bool = True) -> Path:
    """A checkpoint that runs code when unpickled: torch's zip format, or a bare pickle."""
    if zipped:
        torch.save({"model": Payload(marker)}, path)
    else:
        import pickle

        path.write_bytes(pickle.dumps({"model": Payload(marker)}))
    return path


@pytest.fixture(scope="module", autouse=True)
def ultralytics_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics")))
        yield


@pytest.mark.parametrize("zipped", [True, False], ids=["torch-zip", "bare-pickle"])
def test_a_pickled_detector_is_refused_before_it_runs(
    tmp_path: Path, make_table: Callable[..., Table], zipped: bool
) -> None:
    marker = tmp_path / "pwned"
    weights = crafted(tmp_path / "best.pt", marker, zipped)
    table = make_table(2)
    args = ["bin", str(table.path), "--detector", str(weights), "--ocr", "none", "--captioner", "none"]
    result = runner.invoke(app, [*args, "--clip", "none", "--device", "cpu", "-q"])
    assert result.exit_code == 1, result.output
    assert "refused to load the detector" in result.output and "--trust-remote-code" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not marker.exists()


def test_a_real_local_checkpoint_still_loads_without_trust(tmp_path: Path) -> None:
    built = create("detector", "ultralytics", model="yolov8n.yaml", device="cpu")
    weights = tmp_path / "mine.pt"
    built.model.save(str(weights))
    for trust in (False, True):
        local = create("detector", "ultralytics", model=str(weights), device="cpu", trust_remote_code=trust)
        assert local.provenance()["task"] == "detect"


def test_a_pickled_transformers_checkpoint_is_refused(tmp_path: Path, tiny_dinov2: str) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "model"
    shutil.copytree(tiny_dinov2, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    crafted(folder / "pytorch_model.bin", marker)
    with pytest.raises(ModelLoadError, match="Weights only load failed"):
        create("embedder", "transformers", model=str(folder), device="cpu")
    assert not marker.exists()


def test_a_pickled_clip_checkpoint_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("open_clip")
    marker = tmp_path / "pwned"
    weights = crafted(tmp_path / "clip.pt", marker)
    with pytest.raises(ModelLoadError, match="Weights only load failed"):
        create("clip", "open_clip", model="ViT-B-32", pretrained=str(weights), device="cpu")
    assert not marker.exists()
