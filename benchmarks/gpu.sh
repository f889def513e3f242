#!/usr/bin/env bash
# Feed the GPU (issue 14): filter, crop, bin and synth on generated images with real-sized random-weight
# models, printing images/s per step, the share of each step's time spent inside its models and the GPU
# utilisation (nvidia-smi sampled every 200 ms). Nothing is downloaded: DINOv2-base, BLIP-base and
# CLIP ViT-B/32 are built from their configs with random weights, YOLO11s from its yaml; OCR is rapidocr
# (weights in its wheel), NSFW nudenet (same); synth uses vLLM with the model folder given by --llm.
#
#   benchmarks/gpu.sh [--llm DIR] [--n 2000] [--size 1280x960] [--workers N] [--work DIR] [--bin-limit 500]
#   benchmarks/gpu.sh --device cpu --smoke     # tiny models, 20 small images: checks it runs (< 2 min)
#
# On a CUDA machine the default run (2,000 images of 1280x960) should take under 10 minutes: bin, whose OCR
# runs on the CPU (0.3-1 s per image per core), takes only its first --bin-limit rows (500).
# --real-size builds the GPU's real-sized models on any device (to check them on a CPU with a small --n).
# --device cpu swaps in the tiny test models (vlcli.testing.tiny_models), crops at 256 px, and runs
# synth through the transformers backend with a tiny random chat model, so the script is known to work
# before a GPU is lent; --smoke also swaps OCR, NSFW and the generator for the null backends.
set -euo pipefail

DEVICE=cuda N="" SIZE="" LLM="" WORKERS="" WORK="" SMOKE=0 REAL=0 BIN_LIMIT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --n) N="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --llm) LLM="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --real-size) REAL=1; shift ;;
    --bin-limit) BIN_LIMIT="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ "$SMOKE" == 1 ]]; then N="${N:-20}"; fi
if [[ "$DEVICE" == cpu ]]; then SIZE="${SIZE:-320x240}"; N="${N:-20}"; fi
N="${N:-2000}" SIZE="${SIZE:-1280x960}" WORKERS="${WORKERS:-$(nproc)}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$([[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python)}"
CLEAN=""
if [[ -z "$WORK" ]]; then WORK="$(mktemp -d -t vl-gpu-XXXX)"; CLEAN="$WORK"; fi
trap '[[ -n "$CLEAN" ]] && rm -rf "$CLEAN"' EXIT
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 YOLO_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export YOLO_CONFIG_DIR="$WORK/ultralytics"
export VL_GPU_DEVICE="$DEVICE" VL_GPU_N="$N" VL_GPU_SIZE="$SIZE" VL_GPU_LLM="$LLM" VL_GPU_WORKERS="$WORKERS"
export VL_GPU_WORK="$WORK" VL_GPU_ROOT="$ROOT" VL_GPU_SMOKE="$SMOKE" VL_GPU_REAL="$REAL"
export VL_GPU_BIN_LIMIT="${BIN_LIMIT:-$([[ "$DEVICE" == cpu ]] && echo "$N" || echo 500)}"

"$PYTHON" - <<'PY'
import io, os, random, subprocess, sys, threading, time, warnings
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ENV = os.environ
DEVICE, N, WORKERS = ENV["VL_GPU_DEVICE"], int(ENV["VL_GPU_N"]), int(ENV["VL_GPU_WORKERS"])
W, H = (int(x) for x in ENV["VL_GPU_SIZE"].split("x"))
WORK, LLM, SMOKE = Path(ENV["VL_GPU_WORK"]), ENV["VL_GPU_LLM"], ENV["VL_GPU_SMOKE"] == "1"
REAL, BIN_LIMIT = DEVICE != "cpu" or ENV["VL_GPU_REAL"] == "1", int(ENV["VL_GPU_BIN_LIMIT"])
sys.path.insert(0, str(Path(ENV["VL_GPU_ROOT"]) / "tests"))
warnings.filterwarnings("ignore", message="lance is not fork-safe")  # the forked children only draw


def draw(index: int) -> bytes:
    """One distinct generated photo-like scene as a JPEG."""
    from vlcli.demo.samples import draw_scene

    buf = io.BytesIO()
    draw_scene(random.Random(index), np.random.default_rng(index), (W, H)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def corpus() -> str:
    """A table of N generated images, drawn on every core."""
    started = time.perf_counter()
    with Pool(min(WORKERS, os.cpu_count() or 1)) as pool:  # forked before Lance is imported
        blobs = pool.map(draw, range(N), chunksize=8)
    from conftest import table_rows

    from vlcli.table.schema import ingest_schema
    from vlcli.table.storage import Table

    table = Table.create(WORK / "gpu.lance", ingest_schema())
    table.append(table_rows(blobs))
    print(f"corpus: {N} JPEGs of {W}x{H} in {time.perf_counter() - started:.1f} s", flush=True)
    return str(table.path)


def models() -> dict[str, str]:
    """Model folders: real-sized random weights on a GPU, the tests' tiny models on the CPU."""
    import torch
    import transformers

    from vlcli.testing import tiny_models

    folder = WORK / "models"
    if not REAL:
        return {
            "dinov2": tiny_models.tiny_dinov2(folder / "dinov2"),
            "blip": tiny_models.tiny_blip(folder / "blip"),
            "clip": tiny_models.tiny_clip(folder / "clip"),
            "llm": LLM or tiny_models.tiny_causal_lm(folder / "llm"),
            "yolo": "yolov8n.yaml",
        }
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    dinov2 = folder / "dinov2-base"
    transformers.Dinov2Model(transformers.Dinov2Config(image_size=224)).save_pretrained(dinov2)
    transformers.BitImageProcessor(
        size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(dinov2)
    blip = folder / "blip-base"
    tokenizer = tiny_models._tiny_wordpiece()
    text = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id, "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id}
    config = transformers.BlipConfig(text_config=text, vision_config={"image_size": 384})
    transformers.BlipForConditionalGeneration(config).save_pretrained(blip)
    processor = transformers.BlipImageProcessor(size={"height": 384, "width": 384})
    transformers.BlipProcessor(processor, tokenizer).save_pretrained(blip)
    llm = LLM or (tiny_models.tiny_causal_lm(folder / "llm") if DEVICE == "cpu" else "")
    return {"dinov2": str(dinov2), "blip": str(blip), "clip": "ViT-B-32", "llm": llm, "yolo": "yolo11s.yaml"}


class Clock:
    """Seconds spent inside model calls (CUDA synchronised), added up per step."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, backend: object, *methods: str) -> object:
        for name in methods:
            method = getattr(backend, name, None)
            if method is not None:
                setattr(backend, name, self._timed(method))
        return backend

    def _timed(self, method):
        def call(*args, **kwargs):
            started = time.perf_counter()
            out = method(*args, **kwargs)
            if DEVICE != "cpu":
                import torch

                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - started
            return out

        return call


METHODS = ("preprocess", "embed", "score", "read", "detect", "caption", "generate")


class GpuSampler:
    """nvidia-smi's utilisation.gpu every 200 ms, with timestamps (nothing when there is no nvidia-smi)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.proc = None
        if DEVICE != "cpu":
            try:
                cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"]
                self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            except FileNotFoundError:
                return
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.samples.append((time.monotonic(), float(line.split(",")[0])))
            except ValueError:
                pass

    def mean(self, start: float, end: float) -> str:
        values = [v for t, v in self.samples if start <= t <= end]
        return f"{sum(values) / len(values):.0f}%" if values else "n/a"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()


def main() -> None:
    import vlcli.steps.bin.step as bin_module
    import vlcli.steps.crop.step as crop_module
    import vlcli.steps.filter.step as filter_module
    import vlcli.steps.synth.step as synth_module
    from vlcli.backends import create
    from vlcli.backends.registry import backends
    from vlcli.steps.base import RunOptions
    from vlcli.steps.bin.step import BinSettings, BinStep
    from vlcli.steps.crop.step import CropSettings, CropStep
    from vlcli.steps.filter.step import FilterRules, FilterStep, ScoreSettings
    from vlcli.steps.runner import run_step
    from vlcli.steps.synth.step import SynthSettings, SynthStep
    from vlcli.table.storage import Table

    path, m = corpus(), models()
    ready = {(b.capability, b.name) for b in backends() if not b.missing()}
    nsfw = "nudenet" if ("nsfw", "nudenet") in ready and not SMOKE else "null"
    ocr = "rapidocr" if ("ocr", "rapidocr") in ready and not SMOKE else "null"
    if SMOKE:
        generator = "null"
    elif LLM:
        generator = "vllm" if DEVICE != "cpu" else "transformers"
    else:
        generator = "transformers" if DEVICE == "cpu" else ""
    resize_to = 1024 if DEVICE != "cpu" else 256
    device = DEVICE
    plans = [
        ("filter", filter_module, lambda: FilterStep(ScoreSettings(nsfw=nsfw, device=device), FilterRules(min_side=16)), 64, None),
        ("crop", crop_module, lambda: CropStep(CropSettings(model=m["dinov2"], resize_to=resize_to, device=device)), 32, None),
        ("bin", bin_module, lambda: BinStep(BinSettings(
            ocr=ocr, detector=m["yolo"], captioner=m["blip"], clip=m["clip"],
            clip_pretrained=None if REAL else "openai", device=device)), 32, BIN_LIMIT),
    ]
    if generator:
        synth = SynthSettings(backend=generator, model=m["llm"], all_rows=True, max_tokens=256 if DEVICE != "cpu" else 16,
                              max_retries=0, device=device, seed=0)
        plans.append(("synth", synth_module, lambda: SynthStep(synth), 256 if DEVICE != "cpu" else 8, None))
    else:
        print("synth: skipped (give a small chat model folder with --llm DIR for vLLM)")
    sampler = GpuSampler()
    print(f"\n{N} images of {W}x{H}, device {DEVICE}, {WORKERS} prepare workers "
          f"(nsfw {nsfw}, ocr {ocr}, generator {generator or 'none'})")
    print(f"{'step':<8} {'rows':>6} {'seconds':>8} {'images/s':>9} {'in model':>9} {'GPU util':>9}")
    try:
        for name, module, build, batch, limit in plans:
            clock = Clock()
            module.create = lambda *a, _c=clock, **k: _c.wrap(create(*a, **k), *METHODS)
            table = Table.open(path)
            start = time.monotonic()
            report = run_step(table, build(), RunOptions(workers=WORKERS, batch_size=batch, limit=limit))
            end = time.monotonic()
            seconds = end - start
            share = f"{100 * clock.seconds / seconds:.0f}%"
            print(f"{name:<8} {report.processed:>6} {seconds:>8.1f} {report.processed / seconds:>9.1f} "
                  f"{share:>9} {sampler.mean(start, end):>9}", flush=True)
            if report.errors:
                print(f"         errors: {dict(report.reasons)}")
            module.create = create
    finally:
        sampler.stop()


if __name__ == "__main__":
    main()
PY
