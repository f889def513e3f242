"""The `null` backends: correctly shaped outputs at no model cost, selectable by every step, never a default."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest
from PIL import Image
from typer.testing import CliRunner

from vlcli.backends import create
from vlcli.backends.protocols import PROTOCOLS, GenerationRequest
from vlcli.backends.registry import NULL_NOTE, available
from vlcli.cli.app import app
from vlcli.steps.bin.step import BinSettings
from vlcli.steps.crop.step import CropSettings
from vlcli.steps.filter.step import ScoreSettings
from vlcli.steps.synth.step import SynthSettings
from vlcli.table.storage import Table

torch = pytest.importorskip("torch")


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (80, 60), "red"), Image.new("RGB", (30, 50), "blue")]


def test_every_capability_has_a_null_backend_that_implements_its_protocol() -> None:
    for capability, protocol in PROTOCOLS.items():
        assert "null" in available(capability), capability
        backend = create(capability, "null", device="cpu")
        assert isinstance(backend, protocol), capability
        assert backend.provenance()["backend"] == "null"


def test_null_image_backends_return_one_result_per_image_in_range() -> None:
    images = _images()
    assert create("nsfw", "null").score(images) == [0.0, 0.0]
    assert create("ocr", "null").read(images) == [[], []]
    found = create("detector", "null").detect(images)
    assert [len(d) for d in found] == [1, 1]
    for img, (d,) in zip(images, found):
        left, top, right, bottom = d.box
        assert 0 <= left < right <= img.width and 0 <= top < bottom <= img.height
    captions = create("captioner", "null").caption(images)
    assert len(captions) == 2 and all(captions)
    scores = create("clip", "null").score(images, captions)
    assert len(scores) == 2 and all(-1 <= s <= 1 for s in scores)
    assert create("detector", "null").detect([]) == [] and create("captioner", "null").caption([]) == []


def test_null_embedder_gives_unit_vectors_that_depend_on_the_pixels() -> None:
    embedder = create("embedder", "null", device="cpu", dim=32)
    images = torch.zeros(3, 3, 90, 120, dtype=torch.uint8)
    images[1, 0] = 255  # red
    images[2, :, :45] = 255  # white top half
    pixels = embedder.preprocess(images)
    assert pixels.shape == (3, 3, embedder.input_size, embedder.input_size) and pixels.dtype == torch.float32
    emb = embedder.embed(pixels)
    assert emb.shape == (3, 32) and emb.dtype == torch.float32
    assert torch.allclose(emb[1:].norm(dim=1), torch.ones(2))
    assert not torch.allclose(emb[1], emb[2])
    assert torch.equal(emb, embedder.embed(embedder.preprocess(images)))  # deterministic
    assert embedder.resize(images, (10, 20)).shape == (3, 3, 10, 20)


def test_null_generator_answers_in_the_requested_json_shape() -> None:
    schema = {"type": "object", "properties": {"questions": {"type": "array", "minItems": 2}}}
    request = GenerationRequest([{"role": "user", "content": "a red bicycle by a wall"}], json_schema=schema)
    (result,) = create("generator", "null", model="m").generate([request])
    assert result.ok and len(json.loads(result.text or "")["questions"]) == 2


def test_null_is_never_a_default() -> None:
    for settings in (CropSettings(), ScoreSettings(), BinSettings(), SynthSettings()):
        values = [getattr(settings, f.name) for f in dataclasses.fields(settings)]
        assert "null" not in values, settings


def _run(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


def test_filter_crop_bin_synth_run_end_to_end_with_null_backends(make_table: Callable[..., Table]) -> None:
    table = make_table(6, size=(96, 72))
    path = str(table.path)
    _run("filter", path, "--nsfw", "null", "--min-side", "16")
    _run("crop", path, "--backend", "null", "--resize-to", "64", "--num-crops", "4", "--device", "cpu")
    _run("bin", path, "--ocr", "null", "--detector", "null", "--captioner", "null", "--clip", "null")
    _run("synth", path, "--backend", "null", "--all")
    table = Table.open(path)
    rows = table.to_arrow([n for n in table.schema.names if n != "image"]).to_pylist()
    assert len(rows) == 6
    for row in rows:
        assert row["filter_status"] == "ok" and row["nsfw_score"] == 0.0 and row["phash"] is not None
        assert row["crop_status"] == "ok" and row["crop_box"] is not None and len(row["embedding"]) == 768
        assert row["bin_status"] == "ok" and row["num_objects"] == 1 and row["ocr_text"] == ""
        assert row["caption"] and row["clip_score"] is not None
        assert row["synth_status"] == "ok" and row["synth_qa"]


def test_vl_backends_marks_the_null_backends() -> None:
    result = CliRunner().invoke(app, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    rows = {
        (c["capability"], b["name"]): b
        for c in json.loads(result.output)["capabilities"]
        for b in c["backends"]
    }
    for capability in PROTOCOLS:
        assert rows[(capability, "null")]["note"] == NULL_NOTE and rows[(capability, "null")]["ready"]
    assert rows[("embedder", "transformers")]["note"] == ""
    text = CliRunner().invoke(app, ["backends"], env={"COLUMNS": "200"})
    assert "for measuring the pipeline's own ceiling" in text.output
