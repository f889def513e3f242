"""Presets: named starting points for `vl run`, below the config file and the flags.

- `default`: the seeds' models (DINOv2-base, YOLO11s, BLIP base, CLIP ViT-B-32, an LLM behind an
  OpenAI-compatible endpoint);
- `fast`: small variants that run on a CPU machine (DINOv2-small, YOLO11n, a 0.5B LLM in-process);
- `offline`: only what runs with no model hub: the OCR and NSFW models shipped in wheels, tiny random
  models for the rest and an in-process stand-in for the LLM. Their outputs are not meaningful.
"""

from __future__ import annotations

import os
from pathlib import Path

from vlcli.errors import UsageError
from vlcli.hub import ModelRef
from vlcli.run import config
from vlcli.run.config import Settings
from vlcli.steps import BUILT_IN, spec

PRESETS = ("default", "fast", "offline")
FAST_LLM = "Qwen/Qwen2.5-0.5B-Instruct"


def models_dir() -> Path:
    """Where the offline preset keeps its tiny models ($VL_CACHE_DIR, else ~/.cache/vlcli)."""
    root = os.environ.get("VL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "vlcli")
    return Path(root) / "tiny-models"


def preset(name: str, folder: str | os.PathLike[str] | None = None) -> Settings:
    """The settings layer of a preset (offline builds its tiny models into `folder` on first use)."""
    if name == "default":
        return {}
    if name == "fast":
        return {
            "crop": {"model": "facebook/dinov2-small"},
            "bin": {"detector": "yolo11n.pt"},
            "synth": {"backend": "transformers", "model": FAST_LLM},
        }
    if name == "offline":
        return offline(Path(folder) if folder is not None else models_dir())
    raise UsageError(f"--preset must be one of {', '.join(PRESETS)}, not {name!r}")


def offline(folder: Path) -> Settings:
    """Shipped OCR/NSFW models, tiny random stand-ins for the rest (see vlcli.testing.tiny_models.BANNER)."""
    from vlcli.testing.tiny_models import tiny_blip, tiny_clip, tiny_dinov2

    return {
        "filter": {"nsfw": "nudenet"},
        # the samples are ~640 px: a 512 short side keeps a CPU run quick
        "crop": {"model": tiny_dinov2(folder / "tiny-dinov2"), "resize_to": 512},
        "bin": {
            "ocr": "rapidocr",
            "detector": "yolov8n.yaml",  # ultralytics builds it with random weights, no download
            "captioner": tiny_blip(folder / "tiny-blip"),
            "clip": tiny_clip(folder / "tiny-clip"),
            "decode_side": 640,
        },
        "synth": {"backend": "stub", "model": "stub"},
    }


def models(name: str) -> dict[str, list[ModelRef]]:
    """The models each step loads under preset `name` (default or fast), as the steps' specs say."""
    layer = preset(name)
    out: dict[str, list[ModelRef]] = {}
    for step in BUILT_IN:
        objects = config.step_objects(step, layer.get(step, {}))
        step_spec = spec(step)
        out[step] = step_spec.models(*(objects[cls] for cls in step_spec.settings))
    return out


def _model(refs: dict[str, list[ModelRef]], setting: str) -> str:
    """The name of the model the setting `section.key` chose."""
    step = setting.partition(".")[0]
    return next(ref.name for ref in refs[step] if ref.setting == setting)


def _help() -> str:
    """--preset's help: the models of each preset, read from the steps' specs (a test checks the names)."""
    default, fast = models("default"), models("fast")
    return (
        f"default: {_model(default, 'crop.model')}, {_model(default, 'bin.detector')}, BLIP base, "
        f"CLIP {_model(default, 'bin.clip')}, {_model(default, 'synth.model')} on an OpenAI-compatible "
        "server. fast (CPU): "
        f"{_model(fast, 'crop.model')}, {_model(fast, 'bin.detector')}, {_model(fast, 'synth.model')} "
        "in-process. offline (no hub): tiny random stand-ins and a stub LLM (outputs not meaningful). "
        "All: nudenet, rapidocr."
    )


HELP = _help()
