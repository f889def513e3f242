"""The seed's 3-stage smart crop, written from its README as the baseline of `crop_vs_seed.py`.

- Stage 1 (CPU, a multiprocessing pool): decode, resize the short side to R with PIL, cut the N square
  candidates with PIL, squash-resize the full image and every candidate to S x S with PIL, normalize, and
  `torch.save` one file per image: `tensors` [N+1, 3, S, S] float32, `original_crops` (the resized full
  image as a float32 tensor, then every full-size candidate), `crop_boxes`, `original_size`.
- Stage 2 (the model): a `DataLoader` reads the files, a batch of images becomes one model batch of
  images x (N+1); `pooler_output`, cosine of each candidate with the full image, argmax; JSON metadata.
- Stage 3 (CPU, a multiprocessing pool): load each file again, take the chosen full-size crop tensor,
  convert it to PIL and save it.

The full-size candidates are slices (views) of the full image's tensor, so `torch.save` writes those pixels
once: at 1600x1200 that is 3 x 1360 x 1024 float32 (16.7 MB) plus the model inputs (9.6 MB), ~26 MB per
image, the size the issue quotes. Saving each candidate as its own tensor would write ~200 MB per image.

Not handicapped: each worker writes its file as soon as it is done (the seed's "hold everything in RAM,
then write" is not reproduced), pool workers run one torch thread each (one process per core, no
oversubscription), and the caller picks the same worker count and batch size as `vl crop`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import normalize, to_pil_image, to_tensor

Box = tuple[int, int, int, int]
RESAMPLE = Image.Resampling.BICUBIC  # PIL resizes are antialiased; bicubic like the model's processor


@dataclass(frozen=True)
class SeedConfig:
    """The seed's parameters; mean and std come from the model's image processor."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_crops: int = 15
    resize_to: int = 1024
    input_size: int = 224


@dataclass
class SeedTimes:
    """Wall seconds per stage, seconds inside the model forward, CPU seconds of this process and its
    children (pool and DataLoader workers), bytes of intermediate and output files."""

    stage1: float = 0.0
    stage2: float = 0.0
    stage3: float = 0.0
    model: float = 0.0
    cpu: float = 0.0
    tensor_bytes: int = 0
    json_bytes: int = 0
    output_bytes: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def crop(self) -> float:
        """Stages 1 and 2: the work `vl crop` replaces."""
        return self.stage1 + self.stage2

    @property
    def total(self) -> float:
        """All three stages."""
        return self.stage1 + self.stage2 + self.stage3


# --- stage 1 -------------------------------------------------------------------------------------


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """Short side -> R; long side -> int(long * R / short) // 16 * 16."""
    if width <= height:
        return short, int(height * short / width) // 16 * 16
    return int(width * short / height) // 16 * 16, short


def candidate_boxes(width: int, height: int, n: int) -> list[Box]:
    """N squares of the short side at offsets int(i * (L - R) / (N - 1)); none for a square image."""
    side = min(width, height)
    free = max(width, height) - side
    if free == 0:
        return []
    offsets = [free // 2] if n == 1 else [int(i * free / (n - 1)) for i in range(n)]
    if width > height:
        return [(x, 0, x + side, side) for x in offsets]
    return [(0, y, side, y + side) for y in offsets]


def _model_input(img: Image.Image, cfg: SeedConfig) -> torch.Tensor:
    small = img.resize((cfg.input_size, cfg.input_size), RESAMPLE)
    return normalize(to_tensor(small), list(cfg.mean), list(cfg.std))


def preprocess_one(job: tuple[str, str, SeedConfig]) -> int:
    """Stage 1 for one image: write `<stem>.pt`, return its size in bytes."""
    path, out_dir, cfg = job
    img = Image.open(path).convert("RGB")
    original_size = img.size
    img = img.resize(resized_size(*img.size, cfg.resize_to), RESAMPLE)
    boxes = candidate_boxes(*img.size, cfg.num_crops)
    tensors = torch.stack([_model_input(img, cfg), *(_model_input(img.crop(b), cfg) for b in boxes)])
    full = to_tensor(img)
    original_crops = [full, *(full[:, top:bottom, left:right] for left, top, right, bottom in boxes)]
    out = Path(out_dir) / f"{Path(path).stem}.pt"
    torch.save(
        {
            "image_id": Path(path).stem,
            "tensors": tensors,
            "original_crops": original_crops,
            "crop_boxes": boxes,
            "original_size": original_size,
            "resized_size": img.size,
        },
        out,
    )
    return out.stat().st_size


def _one_thread() -> None:
    torch.set_num_threads(1)


def _pool(workers: int) -> Any:
    return multiprocessing.Pool(workers, initializer=_one_thread)


def stage1(paths: list[str], out_dir: str, cfg: SeedConfig, workers: int) -> int:
    """Preprocess every image in a pool of `workers` processes; return the bytes written."""
    os.makedirs(out_dir, exist_ok=True)
    with _pool(workers) as pool:
        return sum(pool.imap_unordered(preprocess_one, [(p, out_dir, cfg) for p in paths]))


# --- stage 2 -------------------------------------------------------------------------------------


class TensorFiles(Dataset):  # type: ignore[type-arg]
    """Stage 1's files, each loaded whole as the seed does."""

    def __init__(self, folder: str) -> None:
        self.files = sorted(Path(folder).glob("*.pt"))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        data = torch.load(self.files[i], weights_only=True)
        meta = {k: data[k] for k in ("image_id", "crop_boxes", "original_size", "resized_size")}
        return data["tensors"], meta


def _collate(
    items: list[tuple[torch.Tensor, dict[str, Any]]],
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    return [t for t, _ in items], [m for _, m in items]


def _choose(emb: torch.Tensor, meta: dict[str, Any]) -> dict[str, Any]:
    width, height = meta["resized_size"]
    if not meta["crop_boxes"]:
        box, best, score = (0, 0, width, height), -1, 1.0
    else:
        sims = torch.nn.functional.cosine_similarity(emb[1:], emb[:1], dim=1)
        best = int(torch.argmax(sims))
        box, score = tuple(meta["crop_boxes"][best]), float(sims[best])
    return {
        "image_id": meta["image_id"],
        "crop_box": list(box),
        "similarity": score,
        "best_crop_idx": best,
        "original_size": list(meta["original_size"]),
        "resized_size": [width, height],
    }


def stage2(
    tensor_dir: str, model_dir: str, batch_size: int, workers: int, out_json: str
) -> tuple[list[dict[str, Any]], float]:
    """Embed batches of images x (N+1), pick each image's best crop, write JSON; return (records, model s)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()
    loader = DataLoader(
        TensorFiles(tensor_dir), batch_size=batch_size, num_workers=workers, collate_fn=_collate
    )
    records: list[dict[str, Any]] = []
    model_seconds = 0.0
    with torch.inference_mode():
        for tensors, metas in loader:
            started = time.perf_counter()
            emb = model(pixel_values=torch.cat(tensors)).pooler_output
            model_seconds += time.perf_counter() - started
            for chunk, meta in zip(emb.split([len(t) for t in tensors]), metas, strict=True):
                records.append(_choose(chunk, meta))
    Path(out_json).write_text(json.dumps(records, indent=2))
    return records, model_seconds


# --- stage 3 -------------------------------------------------------------------------------------


def save_one(job: tuple[dict[str, Any], str, str, str]) -> None:
    """Stage 3 for one image: the chosen full-size crop tensor -> PIL -> file."""
    record, tensor_dir, out_dir, fmt = job
    data = torch.load(Path(tensor_dir) / f"{record['image_id']}.pt", weights_only=True)
    crop = data["original_crops"][record["best_crop_idx"] + 1]  # index 0 is the full image
    to_pil_image(crop).save(Path(out_dir) / f"{record['image_id']}.{fmt}")


def stage3(records: list[dict[str, Any]], tensor_dir: str, out_dir: str, workers: int, fmt: str) -> int:
    """Save every chosen crop in a pool of `workers` processes; return the bytes written."""
    os.makedirs(out_dir, exist_ok=True)
    with _pool(workers) as pool:
        for _ in pool.imap_unordered(save_one, [(r, tensor_dir, out_dir, fmt) for r in records]):
            pass
    return sum(f.stat().st_size for f in Path(out_dir).iterdir())


# --- the whole pipeline --------------------------------------------------------------------------


def run_seed(
    paths: list[str], workdir: str, model_dir: str, cfg: SeedConfig, batch_size: int, workers: int, fmt: str
) -> SeedTimes:
    """Run the three stages one after the other, as the seed's `run_pipeline.py` does; time each."""
    tensor_dir, out_json = os.path.join(workdir, "preprocessed_tensors"), os.path.join(workdir, "crops.json")
    times = SeedTimes()
    cpu = cpu_seconds()
    started = time.perf_counter()
    times.tensor_bytes = stage1(paths, tensor_dir, cfg, workers)
    times.stage1 = time.perf_counter() - started
    started = time.perf_counter()
    times.records, times.model = stage2(tensor_dir, model_dir, batch_size, workers, out_json)
    times.stage2 = time.perf_counter() - started
    times.json_bytes = os.path.getsize(out_json)
    started = time.perf_counter()
    times.output_bytes = stage3(
        times.records, tensor_dir, os.path.join(workdir, "cropped_images"), workers, fmt
    )
    times.stage3 = time.perf_counter() - started
    times.cpu = cpu_seconds() - cpu
    return times


def cpu_seconds() -> float:
    """User + system seconds of this process and of its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
