"""Shared fixtures: hermetic environment, tiny generated images, temp tables."""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["YOLO_OFFLINE"] = "1"

from vlcli.images import content_id, probe
from vlcli.table.schema import ingest_schema
from vlcli.table.storage import Table


def jpeg_bytes(seed: int, size: tuple[int, int] = (64, 48), quality: int = 85) -> bytes:
    """A small, distinct JPEG: a coloured background with a few shapes."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        x1, y1 = x0 + rng.randrange(1, size[0]), y0 + rng.randrange(1, size[1])
        draw.rectangle((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def table_rows(images: list[bytes], dataset: str = "test") -> pa.Table:
    """Ingest-shaped rows for already-valid image bytes (bypasses `vl ingest`)."""
    infos = [probe(b) for b in images]
    return pa.table(
        {
            "id": [content_id(b) for b in images],
            "source": [f"mem://{i}" for i in range(len(images))],
            "dataset": [dataset] * len(images),
            "image": images,
            "width": [i.width for i in infos],
            "height": [i.height for i in infos],
            "format": [i.format for i in infos],
            "file_size": [len(b) for b in images],
            "ingest_status": ["ok"] * len(images),
            "ingest_warnings": [None] * len(images),
        },
        schema=ingest_schema(),
    )


@pytest.fixture(scope="session", autouse=True)
def vl_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The offline preset (and so `vl demo`) builds its tiny models here once per session, not in ~/.cache."""
    folder = tmp_path_factory.mktemp("vl-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VL_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture
def make_table(tmp_path: Path) -> Callable[..., Table]:
    """Build a table of `n` distinct small JPEG rows at a temp path."""

    def build(n: int = 20, name: str = "t.lance", size: tuple[int, int] = (64, 48)) -> Table:
        table = Table.create(tmp_path / name, ingest_schema())
        table.append(table_rows([jpeg_bytes(i, size) for i in range(n)]))
        return table

    return build


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    """Write `n` distinct JPEGs into a folder and return it."""

    def build(n: int = 10, name: str = "images") -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (folder / f"img_{i:04d}.jpg").write_bytes(jpeg_bytes(i))
        return folder

    return build


@pytest.fixture(scope="session")
def tiny_dinov2(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer random DINOv2 with its image processor, saved like a hub checkpoint; returns its folder."""
    pytest.importorskip("transformers")
    from vlcli.testing.tiny_models import tiny_dinov2 as build

    return build(tmp_path_factory.mktemp("tiny-dinov2"))


@pytest.fixture(scope="session")
def tiny_nsfw_classifier(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random ViT image classifier with labels normal/nsfw, saved like a hub checkpoint."""
    pytest.importorskip("transformers")
    from vlcli.testing.tiny_models import tiny_image_classifier

    return tiny_image_classifier(tmp_path_factory.mktemp("tiny-nsfw"))


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer random BLIP captioner with its processor, saved like a hub checkpoint; returns its folder."""
    pytest.importorskip("transformers")
    from vlcli.testing.tiny_models import tiny_blip as build

    return build(tmp_path_factory.mktemp("tiny-blip"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer random open_clip model saved as a checkpoint folder; returns the folder."""
    pytest.importorskip("open_clip")
    from vlcli.testing.tiny_models import tiny_clip as build

    return build(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer random Qwen2 chat model with a byte-level BPE tokenizer and chat template; its folder."""
    pytest.importorskip("transformers")
    from vlcli.testing.tiny_models import tiny_causal_lm as build

    return build(tmp_path_factory.mktemp("tiny-causal-lm"))
