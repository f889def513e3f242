"""`vl.yaml`: one section per step, validated once, merged as default < preset < file < flags.

A section's keys are the fields of the step's settings dataclasses (the same names as the step's
command-line flags, with underscores) plus the runner's options (batch_size, workers, ...). Unknown
keys are errors that name the nearest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlcli.errors import UsageError
from vlcli.ingest import IngestOptions
from vlcli.steps.base import RunOptions

RUNNER_KEYS = ("batch_size", "workers", "pool", "prefetch", "commit_rows", "commit_seconds")
INGEST_KEYS = ("dataset", "split", "image_column", "keep_columns", "max_pixels", "batch_rows")
RUN_KEYS = ("steps", "preset", "sample", "seed")
DEFAULT_STEPS = ("filter", "crop", "bin", "synth", "validate")

Settings = dict[str, dict[str, Any]]  # section -> key -> value


@dataclass(frozen=True)
class SectionSpec:
    """A config section: the dataclasses its keys build, plus converters for keys YAML cannot spell."""

    name: str
    classes: tuple[type, ...]
    converters: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)  # config key -> CLI flag name, where they differ
    extra_keys: tuple[str, ...] = ()
    runner: bool = True  # takes the runner's keys (batch_size, workers, ...)
    only: tuple[str, ...] | None = None  # restrict the classes' fields to these

    def valid_keys(self) -> list[str]:
        """Every valid key of the section, in declaration order."""
        names: list[str] = []
        for cls in self.classes:
            names += [f.name for f in dataclasses.fields(cls) if f.init and f.name not in names]
        if self.only is not None:
            names = [n for n in names if n in self.only]
        names += [k for k in (*self.extra_keys, *(RUNNER_KEYS if self.runner else ())) if k not in names]
        return names

    def build(self, cls: type, values: Mapping[str, Any]) -> Any:
        """An instance of one of the section's classes from the values that belong to it."""
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: v for k, v in values.items() if k in names})


def _step_sections() -> dict[str, SectionSpec]:
    from vlcli.binning import BinRules
    from vlcli.model_checks import CheckSettings
    from vlcli.steps.bin import BinSettings
    from vlcli.steps.crop import CropSettings, parse_aspects, parse_scales
    from vlcli.steps.filter import FilterRules, ScoreSettings
    from vlcli.steps.synth import SynthSettings
    from vlcli.validation import ValidationRules

    def aspects(value: Any) -> tuple[tuple[int, int], ...]:
        if isinstance(value, str):
            return parse_aspects(value)
        return parse_aspects(",".join(v if isinstance(v, str) else f"{v[0]}:{v[1]}" for v in value))

    def scales(value: Any) -> tuple[float, ...]:
        return parse_scales(value if isinstance(value, str) else ",".join(str(v) for v in value))

    return {
        "filter": SectionSpec("filter", (ScoreSettings, FilterRules)),
        "crop": SectionSpec(
            "crop",
            (CropSettings,),
            converters={"aspects": aspects, "scales": scales},
            aliases={"aspects": "aspect", "keep_embedding": "embedding"},
        ),
        "bin": SectionSpec("bin", (BinSettings, BinRules)),
        "synth": SectionSpec("synth", (SynthSettings,)),
        "validate": SectionSpec("validate", (ValidationRules, CheckSettings)),
    }


def sections() -> dict[str, SectionSpec]:
    """Every config section: ingest, one per step, and run."""
    out = {
        "run": SectionSpec("run", (), extra_keys=RUN_KEYS, runner=False),
        "ingest": SectionSpec("ingest", (IngestOptions,), runner=False, only=INGEST_KEYS),
    }
    out.update(_step_sections())
    return out


def _nearest(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else f" (valid: {', '.join(choices)})"


def check(settings: Mapping[str, Any], origin: str = "config") -> Settings:
    """Validate sections and keys; returns a copy with every section a dict."""
    specs = sections()
    out: Settings = {}
    if not isinstance(settings, Mapping):
        raise UsageError(f"{origin}: expected a mapping of sections (run, ingest, filter, crop, ...)")
    for section, values in settings.items():
        if section not in specs:
            raise UsageError(f"{origin}: unknown section {section!r}{_nearest(str(section), list(specs))}")
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise UsageError(f"{origin}: section {section!r} must be a mapping of key: value")
        keys = specs[section].valid_keys()
        for key in values:
            if key not in keys:
                raise UsageError(f"{origin}: unknown key {section}.{key}{_nearest(str(key), keys)}")
        out[section] = dict(values)
    return out


def load(path: str | os.PathLike[str]) -> tuple[Settings, list[str]]:
    """Read and validate a `vl.yaml`; a DCVLR `default_config.yaml` is translated, and the DCVLR keys
    with no `vl` meaning are returned (second item) so the caller can list them."""
    yaml = _yaml()
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config {p}: no such file (write one with `vl config init {p}`)")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"--config {p}: not valid YAML ({' '.join(str(exc).split())})") from None
    from vlcli.dcvlr import is_dcvlr_config, translate

    ignored: list[str] = []
    if is_dcvlr_config(data):
        data, ignored = translate(data)
    return check(data, origin=str(p)), ignored


def merge(*layers: Mapping[str, Mapping[str, Any]]) -> Settings:
    """Later layers win, key by key within a section."""
    out: Settings = {}
    for layer in layers:
        for section, values in layer.items():
            out.setdefault(section, {}).update(values)
    return out


def parse_assignment(text: str) -> Settings:
    """`section.key=value` from `--set` (the value is parsed as YAML: 5, 0.3, true, [a, b])."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise UsageError(f"--set expects SECTION.KEY=VALUE (e.g. crop.num_crops=8), got {text!r}")
    value = _yaml().safe_load(raw) if raw.strip() else None
    return check({section: {key: value}}, origin="--set")


def step_objects(section: str, values: Mapping[str, Any]) -> dict[type, Any]:
    """Instances of the section's classes built from its values (converted), keyed by class."""
    spec = sections()[section]
    converted = {k: spec.converters[k](v) if k in spec.converters else _coerce(v) for k, v in values.items()}
    try:
        return {cls: spec.build(cls, converted) for cls in spec.classes}
    except TypeError as exc:
        raise UsageError(f"config section {section!r}: {exc}") from None


def run_options(values: Mapping[str, Any], **overrides: Any) -> RunOptions:
    """The runner options of a step section (batch_size, workers, ...)."""
    opts = {k: _coerce(values[k]) for k in RUNNER_KEYS if k in values}
    return RunOptions(**{**opts, **overrides})


def ingest_options(values: Mapping[str, Any]) -> IngestOptions:
    """Ingest options from the `ingest` section."""
    return IngestOptions(**{k: _coerce(v) for k, v in values.items()})


def _coerce(value: Any) -> Any:
    # YAML has lists, the settings take tuples (they are hashable and frozen).
    if isinstance(value, list):
        return tuple(_coerce(v) for v in value)
    return value


def _yaml() -> Any:
    import yaml

    return yaml


def defaults(section: str) -> dict[str, Any]:
    """Default value of every key of a section (runner keys: the step command's defaults)."""
    spec = sections()[section]
    keys = spec.valid_keys()
    out: dict[str, Any] = {}
    for cls in spec.classes:
        for f in dataclasses.fields(cls):
            if not f.init or f.name in out or f.name not in keys:
                continue
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
    return out
