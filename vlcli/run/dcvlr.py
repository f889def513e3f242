"""Read a DCVLR `default_config.yaml`: keys that map onto `vl` settings are used, the rest are listed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

DCVLR_SECTIONS = ("filtering", "binning", "synthesis", "validation", "output")

CAPTIONERS = {
    "blip": "Salesforce/blip-image-captioning-base",
    "blip2": "Salesforce/blip2-opt-2.7b",
}


def _yolo(name: Any) -> str:
    text = str(name)
    return text if text.endswith((".pt", ".yaml")) else f"{text}.pt"


def _captioner(name: Any) -> str | None:
    return CAPTIONERS.get(str(name).lower())


def _features(full: Any) -> str:
    return "full" if bool(full) else "caption-only"


def _ratios(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in value)


# dcvlr section.key -> (vl section, vl key, converter returning None when the value has no vl meaning)
MAPPING: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "filtering.min_resolution": ("filter", "min_side", int),
    "filtering.nsfw_threshold": ("filter", "nsfw_threshold", float),
    "filtering.phash_threshold": ("filter", "phash_distance", int),
    "filtering.duplicate_threshold": ("filter", "phash_distance", int),
    "filtering.hash_threshold": ("filter", "phash_distance", int),
    "binning.text_boxes_threshold": ("bin", "text_boxes", int),
    "binning.text_area_threshold": ("bin", "text_area", float),
    "binning.object_count_threshold": ("bin", "objects", int),
    "binning.unique_classes_threshold": ("bin", "unique_classes", int),
    "binning.dispersion_threshold": ("bin", "dispersion", float),
    "binning.spatial_dispersion_threshold": ("bin", "dispersion", float),
    "binning.captioner_backend": ("bin", "captioner", _captioner),
    "binning.yolo_model": ("bin", "detector", _yolo),
    "binning.bins_ratio": ("bin", "ratios", _ratios),
    "bins_ratio": ("bin", "ratios", _ratios),
    "synthesis.llm_model": ("synth", "model", str),
    "synthesis.temperature": ("synth", "temperature", float),
    "synthesis.use_full_features": ("bin", "features", _features),
}


def is_dcvlr_config(data: Any) -> bool:
    """Whether a loaded YAML document looks like DCVLR's config (its stage sections, none of ours)."""
    return isinstance(data, Mapping) and any(k in DCVLR_SECTIONS for k in data)


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in DCVLR_SECTIONS and isinstance(value, Mapping):
            for sub, v in value.items():
                out[f"{key}.{sub}"] = v
        else:
            out[str(key)] = value
    return out


def translate(data: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """`vl` settings from a DCVLR config, and the DCVLR keys that were ignored (with why, when known)."""
    settings: dict[str, dict[str, Any]] = {}
    ignored: list[str] = []
    for key, value in _flatten(data).items():
        if key not in MAPPING:
            ignored.append(key)
            continue
        section, name, convert = MAPPING[key]
        if value is None:
            ignored.append(key)
            continue
        try:
            converted = convert(value)
        except (TypeError, ValueError):
            ignored.append(f"{key} (value {value!r} not understood)")
            continue
        if converted is None:
            ignored.append(f"{key} (value {value!r} has no vl equivalent)")
            continue
        settings.setdefault(section, {})[name] = converted
    return settings, ignored
