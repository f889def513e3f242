"""The generated sample folder: deterministic, every kind present, near twins near, the broken file broken."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlcli.demo.samples import (
    KINDS,
    MIN_IMAGES,
    NEAR_VARIANTS,
    SampleSet,
    near_duplicate,
    plan,
    write_samples,
)
from vlcli.images import ImageProblem, probe


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleSet:
    return write_samples(tmp_path_factory.mktemp("samples"), n=24, seed=7)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _thumb(path: Path) -> np.ndarray:
    img = Image.open(path).convert("L").resize((32, 32), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float64)


def test_writes_n_files_of_every_kind(samples: SampleSet) -> None:
    assert len(samples.samples) == 24
    assert sorted(p.name for p in samples.folder.iterdir()) == sorted(p.name for p in samples.paths())
    by_kind = samples.by_kind()
    assert list(by_kind) == list(KINDS)
    assert all(by_kind[kind] for kind in KINDS)
    assert len(by_kind["exact_duplicate"]) == 1
    assert len(by_kind["corrupt"]) == 1
    assert samples.bytes_written() == sum(p.stat().st_size for p in samples.paths())


def test_same_seed_same_bytes_other_seed_other_bytes(samples: SampleSet, tmp_path: Path) -> None:
    again = write_samples(tmp_path / "again", n=24, seed=7)
    assert _digests(again.folder) == _digests(samples.folder)
    other = write_samples(tmp_path / "other", n=24, seed=8)
    assert set(_digests(other.folder).values()).isdisjoint(_digests(samples.folder).values())


def test_every_file_but_the_broken_one_is_a_valid_image(samples: SampleSet) -> None:
    for path in samples.paths():
        if path in samples.paths("corrupt"):
            continue
        info = probe(path.read_bytes())
        assert info.format == ("PNG" if path.suffix == ".png" else "JPEG")
        Image.open(path).load()


def test_corrupt_file_does_not_decode(samples: SampleSet) -> None:
    (broken,) = samples.paths("corrupt")
    data = broken.read_bytes()
    with pytest.raises(ImageProblem, match="truncated"):
        probe(data)
    with pytest.raises(OSError):
        Image.open(io.BytesIO(data)).load()


def test_exact_duplicate_has_the_bytes_of_its_original(samples: SampleSet) -> None:
    (copy,) = [s for s in samples.samples if s.kind == "exact_duplicate"]
    assert copy.original is not None
    assert (samples.folder / copy.name).read_bytes() == (samples.folder / copy.original).read_bytes()


def test_near_duplicates_are_near_and_not_identical(samples: SampleSet) -> None:
    near = [s for s in samples.samples if s.kind == "near_duplicate"]
    assert len(near) == plan(24).near
    scenes = samples.paths("scene")
    for sample in near:
        assert sample.original is not None
        twin, original = samples.folder / sample.name, samples.folder / sample.original
        assert twin.read_bytes() != original.read_bytes()
        close = np.abs(_thumb(twin) - _thumb(original)).mean()
        assert close < 12, (sample.name, close)
        # Near means nearer than an unrelated scene.
        stranger = next(p for p in scenes if p != original)
        assert close < np.abs(_thumb(stranger) - _thumb(original)).mean()


@pytest.mark.parametrize("variant", NEAR_VARIANTS)
def test_each_near_variant_changes_the_bytes_a_little(samples: SampleSet, variant: str) -> None:
    original = samples.paths("scene")[0]
    twin = near_duplicate(original.read_bytes(), variant)
    img = Image.open(io.BytesIO(twin))
    assert img.format == "JPEG"
    assert np.abs(np.asarray(img.convert("L").resize((32, 32)), np.float64) - _thumb(original)).mean() < 12


def test_charts_and_documents_have_dark_text_on_light_paper(samples: SampleSet) -> None:
    # A cheap stand-in for "has readable text": pages and charts are mostly light with some dark pixels.
    for path in samples.paths("chart") + [p for p in samples.paths("document") if p.name.startswith("page")]:
        grey = np.asarray(Image.open(path).convert("L"))
        assert (grey > 200).mean() > 0.5, path.name
        assert (grey < 80).mean() > 0.002, path.name


def test_plan_adds_up_and_rejects_too_few() -> None:
    for n in (MIN_IMAGES, 12, 48, 200):
        counts = plan(n)
        assert counts.scenes + counts.charts + counts.documents + counts.near + 2 == n
        assert min(counts.scenes, counts.charts, counts.documents, counts.near) >= 1
    with pytest.raises(ValueError, match="at least"):
        plan(MIN_IMAGES - 1)


def test_smallest_set_is_complete(tmp_path: Path) -> None:
    small = write_samples(tmp_path, n=MIN_IMAGES, seed=0)
    assert all(small.by_kind()[kind] for kind in KINDS)


@pytest.mark.parametrize(("fmt", "quality"), [("PNG", 95), ("JPEG", 88)])
def test_samples_are_encoded_by_the_package_encoder(fmt: str, quality: int) -> None:
    from vlcli import images
    from vlcli.demo import samples

    img = Image.new("RGB", (64, 48), (10, 200, 90))
    assert samples.encode(img, fmt, quality) == images.encode(img, fmt, quality)
