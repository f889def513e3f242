"""`vl crop`: DINOv2 smart crop. Candidates are cut and resized on the device; only a box, a score and
the full image's embedding are written."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from vlcli.backends import create
from vlcli.backends.base import DEVICES, DTYPES, require
from vlcli.backends.dinov2 import DEFAULT_MODEL, embedding_dim
from vlcli.backends.null import EMBED_DIM
from vlcli.backends.null import NAME as NULL
from vlcli.errors import UsageError
from vlcli.images import check_pixels, decode, upright_size
from vlcli.steps.base import RowSkipped, Step, StepSpec, error_status
from vlcli.steps.crop.geometry import Box, CropGrid, grid_boxes, resized_size, to_original
from vlcli.steps.crop.pixels import (
    decode_jpeg_cpu,
    decode_jpegs,
    device_jpeg_size,
    fast_min_side,
    fit_boxes,
    to_device,
)
from vlcli.steps.filter.step import KEPT
from vlcli.table.schema import CROP_BOX, CROP_SCORE, HEIGHT, ID, IMAGE, WIDTH, embedding_column

if TYPE_CHECKING:
    from vlcli.hub import ModelRef

MAX_BUFFERS = 4  # distinct crop sizes whose stacking buffers are kept between batches
PREPROCESS = ("exact", "fast")
DECODERS = ("cpu", "gpu")


@dataclass(frozen=True)
class CropSettings:
    """Everything that determines `vl crop`'s output."""

    model: str = DEFAULT_MODEL
    revision: str | None = None
    backend: str = "transformers"
    resize_to: int = 1024
    num_crops: int = 15
    aspects: tuple[tuple[int, int], ...] = ((1, 1),)
    scales: tuple[float, ...] = (1.0,)
    min_score: float | None = None
    min_side: int = 32
    keep_embedding: bool = True
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    preprocess: str = "exact"
    decode: str = "cpu"
    grid: CropGrid = field(init=False)

    def __post_init__(self) -> None:
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise UsageError(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), not {self.device!r}")
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.resize_to < 16:
            raise UsageError("--resize-to must be at least 16")
        if self.num_crops < 1:
            raise UsageError("--num-crops must be at least 1")
        if any(a <= 0 or b <= 0 for a, b in self.aspects):
            raise UsageError("--aspect takes positive ratios like 1:1,4:3")
        if any(not 0 < s <= 1 for s in self.scales):
            raise UsageError("--scales takes values in (0, 1], like 1.0,0.8")
        if self.min_score is not None and not -1 <= self.min_score <= 1:
            raise UsageError("--min-score is a cosine similarity in [-1, 1]")
        if self.preprocess not in PREPROCESS:
            raise UsageError(f"--preprocess must be exact or fast, not {self.preprocess!r}")
        if self.decode not in DECODERS:
            raise UsageError(f"--decode must be cpu or gpu, not {self.decode!r}")
        if self.decode == "gpu" and self.preprocess == "exact":
            raise UsageError(
                "--decode gpu resizes on the device, which --preprocess exact does not: add --preprocess fast"
            )
        object.__setattr__(self, "grid", CropGrid(self.num_crops, self.aspects, self.scales))


def parse_aspects(text: str) -> tuple[tuple[int, int], ...]:
    """'1:1,4:3' -> ((1, 1), (4, 3))."""
    try:
        pairs = [part.strip().split(":") for part in text.split(",") if part.strip()]
        return tuple((int(a), int(b)) for a, b in pairs)
    except ValueError:
        raise UsageError(f"--aspect: expected ratios like 1:1,4:3,16:9, got {text!r}") from None


def parse_scales(text: str) -> tuple[float, ...]:
    """'1.0,0.8' -> (1.0, 0.8)."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--scales: expected numbers like 1.0,0.8, got {text!r}") from None


@dataclass
class _Prepared:
    pixels: np.ndarray | None  # uint8 HWC: the resized frame (exact), the reduced decode (fast), or None
    boxes: list[Box]  # candidates in the resized frame
    resized: tuple[int, int]
    original: tuple[int, int]
    cuts: list[Box] | None = None  # the candidates in `pixels` (or the JPEG) when it is not the resized frame
    jpeg: bytes | None = None  # to be decoded on the device (--decode gpu)


class CropStep(Step):
    """Embed N candidate crops and the full image; keep the crop most similar to the whole."""

    name = "crop"
    reads = (ID.name, IMAGE.name, WIDTH.name, HEIGHT.name)
    prerequisites = (KEPT,)
    transient = ("embedder", "_buffers")

    def __init__(self, settings: CropSettings | None = None) -> None:
        self.settings = settings or CropSettings()
        self.embedder: Any = None
        self._buffers: dict[tuple[int, ...], Any] = {}
        columns = [CROP_BOX, CROP_SCORE]
        if self.settings.keep_embedding:
            s = self.settings
            dim = EMBED_DIM if s.backend == NULL else embedding_dim(s.model, s.revision, s.trust_remote_code)
            columns.append(embedding_column(dim))
        self.writes = tuple(columns)

    def setup(self) -> None:
        """Load the embedding model once."""
        s = self.settings
        self.embedder = create(
            "embedder",
            s.backend,
            model=s.model,
            revision=s.revision,
            device=s.device,
            dtype=s.dtype,
            trust_remote_code=s.trust_remote_code,
        )

    def check(self, table: Any) -> None:
        """`--decode gpu` needs a CUDA device: say so before any model loads."""
        if self.settings.decode != "gpu":
            return
        torch = require("torch")
        if not torch.cuda.is_available() or not self.settings.device.startswith(("cuda", "auto")):
            raise UsageError("--decode gpu needs a CUDA GPU and none is used here: use --decode cpu")

    def prepare(self, row: dict[str, Any]) -> _Prepared:
        """Decode (at a reduced size, down to the resize target) and resize the short side to R; a row
        whose resized image would take more than STEP_MAX_PIXELS is skipped before anything is decoded.
        With --preprocess fast the resize to R is left out (see `_prepare_fast`)."""
        if self.settings.preprocess == "fast":
            return self._prepare_fast(row)
        r = self.settings.resize_to
        if row["width"] and row["height"]:
            _check_resize((row["width"], row["height"]), r)
        # Pillow, not decode_jpeg_cpu: Image.fromarray's repacking for the resize costs what OpenCV saves
        img = decode(row["image"], min_side=r)
        original = (row["width"] or img.width, row["height"] or img.height)
        if min(original) < self.settings.min_side:
            raise RowSkipped(f"too small ({original[0]}x{original[1]} < --min-side {self.settings.min_side})")
        resized = _check_resize(img.size, r)
        return _Prepared(
            resize_rgb(img, resized), grid_boxes(*resized, self.settings.grid), resized, original
        )

    def _prepare_fast(self, row: dict[str, Any]) -> _Prepared:
        """The candidates in the resize-to-R frame (as exact), over pixels decoded at a reduced DCT scale
        (fast_min_side) and never resized here: the one resize, to the model's input, runs on the device.
        With --decode gpu a JPEG the device can decode is passed on as bytes."""
        s, data = self.settings, row["image"]
        original = (row["width"], row["height"]) if row["width"] and row["height"] else upright_size(data)[0]
        resized = _check_resize(original, s.resize_to)
        if min(original) < s.min_side:
            raise RowSkipped(f"too small ({original[0]}x{original[1]} < --min-side {s.min_side})")
        boxes = grid_boxes(*resized, s.grid)
        if s.decode == "gpu":
            check_pixels(original, "decoding")
            if device_jpeg_size(data) == original:
                return _Prepared(None, boxes, resized, original, fit_boxes(boxes, resized, original), data)
        need = fast_min_side(boxes, resized, s.resize_to)
        pixels = decode_jpeg_cpu(data, need)
        if pixels is None:
            pixels = np.array(decode(data, min_side=need))  # writable (see resize_rgb)
        size = (pixels.shape[1], pixels.shape[0])
        return _Prepared(pixels, boxes, resized, original, fit_boxes(boxes, resized, size))

    def process(self, items: list[_Prepared]) -> list[dict[str, Any]]:
        """Cut every candidate on the device, embed all of them with the full images, pick the best; a
        JPEG that fails to decode on the device fails its row alone."""
        pixels = self._pixels(items)
        results: list[dict[str, Any]] = [{} for _ in items]
        good = []
        for i, px in enumerate(pixels):
            if isinstance(px, Exception):
                results[i] = {"crop_status": error_status(px)}
            else:
                good.append(i)
        for i, row in zip(good, self._embed_and_choose([items[i] for i in good], [pixels[i] for i in good])):
            results[i] = row
        return results

    def _pixels(self, items: list[_Prepared]) -> list[Any]:
        """Each item's HWC uint8 pixels on the model's device (JPEG bytes decoded there in one batch)."""
        device = self.embedder.device
        out: list[Any] = [None] * len(items)
        hosted = [i for i, p in enumerate(items) if p.pixels is not None]
        for i, tensor in zip(hosted, to_device([items[i].pixels for i in hosted], device)):  # type: ignore[misc]
            out[i] = tensor
        jpegs = [i for i, p in enumerate(items) if p.pixels is None]
        for i, decoded in zip(jpegs, decode_jpegs([items[i].jpeg for i in jpegs], device)):  # type: ignore[misc]
            out[i] = decoded
        return out

    def _embed_and_choose(self, items: list[_Prepared], pixels: list[Any]) -> list[dict[str, Any]]:
        if not items:
            return []
        torch = require("torch")
        # HWC: a candidate is a slice of whole pixel rows (a CHW slice copies 3 bytes at a time)
        views = [self._views(full, p) for full, p in zip(pixels, items)]
        fulls = [full for full, _ in views]
        candidates = [cs for _, cs in views]
        inputs = self._preprocess_grouped([*fulls, *(c for cs in candidates for c in cs)])
        emb = self.embedder.embed(inputs)
        emb = torch.nn.functional.normalize(emb, dim=1)
        full_emb, crop_emb = emb[: len(items)], emb[len(items) :]
        results, start = [], 0
        for i, (p, cs) in enumerate(zip(items, candidates)):
            n = len(cs)
            results.append(self._choose(p, full_emb[i], crop_emb[start : start + n]))
            start += n
        return results

    def _views(self, full: Any, p: _Prepared) -> tuple[Any, list[Any]]:
        """HWC views of the whole image and of its candidates, each to be resized to the model's input.

        The resize is separable and runs its horizontal pass first (as PIL's does), rounding between
        passes. When every candidate spans the image's full width (the seed's crops of a portrait
        image), that first pass is the same for all of them: it runs once, on the whole image, and the
        candidates are cut from its result, bit for bit what cutting first gives, at ~1/4 of the work.
        Landscape candidates differ in their first pass, so they are cut first (sharing their second
        pass instead would change the rounding and, with near-tied candidates, the chosen box), except
        with --preprocess fast, whose pixels are not the seed's anyway: there the vertical pass runs
        once too, and each candidate keeps only its horizontal pass (~1/3 of the bytes to stack)."""
        if _is_square(p):
            return full, []
        h, w = full.shape[:2]
        cuts = p.cuts if p.cuts is not None else p.boxes
        resize = getattr(self.embedder, "resize", None)
        if resize is not None and all(x0 == 0 and x1 == w for x0, _, x1, _ in cuts):
            strip = resize(full.permute(2, 0, 1)[None], (h, self.embedder.input_size))[0].permute(1, 2, 0)
            return strip, [strip[y0:y1, :] for _, y0, _, y1 in cuts]
        if resize is not None and p.cuts is not None and all(y0 == 0 and y1 == h for _, y0, _, y1 in cuts):
            strip = resize(full.permute(2, 0, 1)[None], (self.embedder.input_size, w))[0].permute(1, 2, 0)
            return strip, [strip[:, x0:x1] for x0, _, x1, _ in cuts]
        return full, [full[y0:y1, x0:x1] for x0, y0, x1, y1 in cuts]

    def _preprocess_grouped(self, images: list[Any]) -> Any:
        """HWC uint8 views -> model input, one resize per distinct size (all seed crops share one)."""
        torch = require("torch")
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(img.shape), []).append(i)
        size, device = self.embedder.input_size, images[0].device
        out = torch.empty(len(images), 3, size, size, device=device)
        for shape, indices in groups.items():
            batch = torch.stack([images[i] for i in indices], out=self._buffer(shape, len(indices), device))
            # channels-last NCHW view: the resize reads the stacked rows in place
            out[indices] = self.embedder.preprocess(batch.permute(0, 3, 1, 2))
        return out

    def _buffer(self, shape: tuple[int, ...], count: int, device: Any) -> Any:
        """A uint8 [count, *shape] tensor reused across batches: a fresh one (~380 MB for a batch of
        64 x 16 crops of 1024^2) costs more in page faults than the resize itself on a CPU."""
        torch = require("torch")
        buf = self._buffers.get(shape)
        if buf is None or buf.shape[0] < count or buf.device != device:
            if len(self._buffers) >= MAX_BUFFERS:
                self._buffers.clear()  # grid crops or odd sizes: do not hoard memory
            buf = self._buffers[shape] = torch.empty(count, *shape, dtype=torch.uint8, device=device)
        return buf[:count]

    def _choose(self, p: _Prepared, full: Any, crops: Any) -> dict[str, Any]:
        embedding = full.cpu().numpy().astype(np.float32) if self.settings.keep_embedding else None
        if len(crops) == 0:
            box, score = (0, 0, p.original[0], p.original[1]), 1.0
        else:
            scores = (crops @ full).double().cpu().numpy()
            best = int(np.argmax(scores))  # first index on ties
            box, score = to_original(p.boxes[best], p.resized, p.original), float(scores[best])
        row: dict[str, Any] = {"crop_box": list(box), "crop_score": score}
        if embedding is not None:
            row["embedding"] = embedding.tolist()
        min_score = self.settings.min_score
        if min_score is not None and score < min_score:
            row["crop_box"] = None
            row["crop_status"] = f"skipped: low score ({score:.3f} < --min-score {min_score})"
        return row

    def provenance(self) -> dict[str, Any]:
        """Settings and the model's identity."""
        params = {k: v for k, v in asdict(self.settings).items() if k not in ("device", "grid")}
        if self.embedder is not None:
            params["embedder"] = self.embedder.provenance()
        return params


def resize_rgb(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Bicubic, antialiased resize to `size` (width, height) as uint8 HWC, with PIL as the seed does.

    torchvision's uint8 kernel is ~2x faster on a CPU but differs from PIL by a level here and there,
    which flips near-tied candidates: 97/100 boxes as the seed's instead of 99/100 (dinov2-small, random
    weights); exactness wins, and this runs in the prefetch pool, beside the model."""
    if img.size != size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    return np.array(img)  # writable: torch.from_numpy warns on the read-only array np.asarray gives


def _check_resize(size: tuple[int, int], r: int) -> tuple[int, int]:
    """The size `size` resizes to (short side `r`); TooLarge when that is over STEP_MAX_PIXELS."""
    resized = resized_size(*size, r)
    check_pixels(resized, f"resizing {size[0]}x{size[1]} to short side {r} gives")
    return resized


def _is_square(p: _Prepared) -> bool:
    return p.resized[0] == p.resized[1]


def models(settings: CropSettings) -> list[ModelRef]:
    """The embedding model `vl crop` loads with these settings."""
    from vlcli.hub import ModelRef

    return [ModelRef(f"embedder: {settings.model}", "crop.model", settings.model, "hf", settings.revision)]


def _aspects(value: Any) -> tuple[tuple[int, int], ...]:
    if isinstance(value, str):
        return parse_aspects(value)
    return parse_aspects(",".join(v if isinstance(v, str) else f"{v[0]}:{v[1]}" for v in value))


def _scales(value: Any) -> tuple[float, ...]:
    return parse_scales(value if isinstance(value, str) else ",".join(str(v) for v in value))


SPEC = StepSpec(
    "crop",
    (CropSettings,),
    CropStep,
    models,
    batch_size=8,
    plan_values={"keep_embedding": False},
    converters={"aspects": _aspects, "scales": _scales},
    aliases={"aspects": "aspect", "keep_embedding": "embedding"},
)
