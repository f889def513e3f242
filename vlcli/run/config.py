"""`vl.yaml`: one section per step, validated once, merged as default < preset < file < flags.

A section's keys are the fields of the step's settings dataclasses (the same names as the step's
command-line flags, with underscores) plus the runner's options (batch_size, workers, ...). Unknown
keys are errors that name the nearest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from vlcli.errors import UsageError
from vlcli.ingestion.ingest import IngestOptions
from vlcli.steps import BUILT_IN
from vlcli.steps.base import RunOptions

RUNNER_KEYS = ("batch_size", "workers", "pool", "prefetch", "commit_rows", "commit_seconds")
INGEST_KEYS = (
    "dataset",
    "split",
    "image_column",
    "keep_columns",
    "max_pixels",
    "allow_external_paths",
    "batch_rows",
)
RUN_KEYS = ("steps", "preset", "sample", "seed", "procs", "gpus", "engine", "address", "gpus_per_worker")
RUN_HINTS: dict[str, Any] = {
    "steps": list[str] | str,
    "preset": str,
    "sample": int | None,
    "seed": int,
    "procs": int,
    "gpus": str | int | list[int] | None,
    "engine": str,
    "address": str | None,
    "gpus_per_worker": float | None,
}
DEFAULT_STEPS = tuple(BUILT_IN)
# Values a config may expand to through YAML aliases: a few anchors are fine, a "billion laughs" is not.
MAX_ALIAS_VALUES = 10_000
# Keys naming a registered backend (or "none" where the step can do without): checked by name up front.
BACKEND_KEYS = {
    ("filter", "nsfw"): ("nsfw", True),
    ("crop", "backend"): ("embedder", False),
    ("bin", "ocr"): ("ocr", True),
    ("synth", "backend"): ("generator", False),
    ("validate", "backend"): ("generator", False),
}

Settings = dict[str, dict[str, Any]]  # section -> key -> value
Lines = dict[tuple[str, ...], int]  # (section,) or (section, key) -> line in the file


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
    extra_hints: Mapping[str, Any] = field(default_factory=dict)  # types of the extra keys

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

    def hints(self) -> dict[str, Any]:
        """The type each key takes, from the dataclass fields it sets (runner keys: RunOptions')."""
        out: dict[str, Any] = dict(self.extra_hints)
        for cls in self.classes:
            out.update({k: v for k, v in typing.get_type_hints(cls).items() if k not in out})
        if self.runner:  # null: the step command's default (synth sizes its batches by its concurrency)
            runner = typing.get_type_hints(RunOptions)
            out.update({k: runner[k] | None for k in RUNNER_KEYS if k not in out})
        return {k: out.get(k, Any) for k in self.valid_keys()}

    def flag(self, key: str) -> str:
        """The command-line flag of a key (`num_crops` -> `--num-crops`)."""
        return "--" + self.aliases.get(key, key).replace("_", "-")

    def key_of(self, flag: str) -> str | None:
        """The key a flag named in an error message sets, if it is one of this section's."""
        name = flag.removeprefix("--").replace("-", "_")
        reverse = {v: k for k, v in self.aliases.items()}
        name = reverse.get(name, name)
        return name if name in self.valid_keys() else None


def _step_sections() -> dict[str, SectionSpec]:
    from vlcli.steps import spec

    specs = [spec(name) for name in BUILT_IN]
    return {
        s.name: SectionSpec(s.name, s.settings, converters=s.converters, aliases=s.aliases) for s in specs
    }


def sections() -> dict[str, SectionSpec]:
    """Every config section: ingest, one per step, and run."""
    out = {
        "run": SectionSpec("run", (), extra_keys=RUN_KEYS, runner=False, extra_hints=RUN_HINTS),
        "ingest": SectionSpec("ingest", (IngestOptions,), runner=False, only=INGEST_KEYS),
    }
    out.update(_step_sections())
    return out


def _nearest(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else f" (valid: {', '.join(choices)})"


def _at(origin: str, lines: Lines | None, section: Any, key: Any = None) -> str:
    """Where a setting is: `vl.yaml:3: crop.num_crops` when its line is known, else `origin: crop.num_crops`."""
    path = (str(section),) if key is None else (str(section), str(key))
    line = (lines or {}).get(path)
    return f"{origin}{f':{line}' if line else ''}: {'.'.join(path)}"


def check(settings: Mapping[str, Any], origin: str = "config", lines: Lines | None = None) -> Settings:
    """Validate sections, keys and the type of each value; returns a copy with every section a dict."""
    specs = sections()
    out: Settings = {}
    if not isinstance(settings, Mapping):
        raise UsageError(f"{origin}: expected a mapping of sections (run, ingest, filter, crop, ...)")
    for section, values in settings.items():
        if section not in specs:
            where = _at(origin, lines, section).rpartition(": ")[0]
            raise UsageError(f"{where}: unknown section {section!r}{_nearest(str(section), list(specs))}")
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise UsageError(f"{_at(origin, lines, section)}: must be a mapping of key: value")
        spec = specs[section]
        keys = spec.valid_keys()
        hints = spec.hints()
        for key, value in values.items():
            if key not in keys:
                where = _at(origin, lines, section, key).rpartition(": ")[0]
                raise UsageError(f"{where}: unknown key {section}.{key}{_nearest(str(key), keys)}")
            problem = None if key in spec.converters else _type_error(value, hints[key])
            problem = problem or _backend_error(section, key, value)
            if problem:
                raise UsageError(f"{_at(origin, lines, section, key)}: {problem}")
        out[section] = dict(values)
    return out


def validate(settings: Mapping[str, Any], origin: str = "config", lines: Lines | None = None) -> Settings:
    """`check`, then build each section's settings as its command does: a value out of range (or at odds
    with another of the section) fails here with the flag's message, naming the key and its line."""
    out = check(settings, origin, lines)
    specs = sections()
    for section, values in out.items():
        try:
            if section == "run":
                if values.get("sample") is not None and values["sample"] < 1:
                    raise UsageError("--sample must be at least 1")
            elif section == "ingest":
                ingest_options(values)
            else:
                step_objects(section, values)
                run_options(values)
        except UsageError as exc:
            flags = re.findall(r"--[a-z][a-z0-9-]*", str(exc))
            keys = [k for k in (specs[section].key_of(f) for f in flags) if k in values]
            raise UsageError(f"{_at(origin, lines, section, keys[0] if keys else None)}: {exc}") from None
    return out


_TYPE_NAMES = {int: "a valid integer", float: "a valid number", str: "a string", bool: "true or false"}


def _type_error(value: Any, hint: Any) -> str | None:
    """Why `value` does not fit the type `hint` (the flag's type), or None when it does."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = [_type_error(value, a) for a in args if a is not type(None)]
        if any(p is None for p in problems):
            return None
        return problems[0] if len(problems) == 1 else f"{value!r} is not valid here"
    if origin is Literal:
        return None if value in args else f"{value!r} is not one of {', '.join(map(str, args))}"
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return f"{value!r} is not a list"
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            pairs = [(v, args[0] if args else Any) for v in value]
        elif len(value) != len(args):
            return f"expected a list of {len(args)} values, got {len(value)}"
        else:
            pairs = list(zip(value, args))
        return next((p for p in (_type_error(v, h) for v, h in pairs) if p), None)
    if origin is dict:
        return None if isinstance(value, Mapping) else f"{value!r} is not a mapping of key: value"
    if hint in _TYPE_NAMES:
        fits = isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
        if hint is float:
            fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if fits else f"{value!r} is not {_TYPE_NAMES[hint]}"
    return None


def _backend_error(section: str, key: str, value: Any) -> str | None:
    """For keys naming a backend: the same complaint the step would make when it loads it, made now."""
    if (section, key) not in BACKEND_KEYS or not isinstance(value, str):
        return None
    from vlcli.backends import available

    capability, none_ok = BACKEND_KEYS[(section, key)]
    names = [*available(capability), *(["none"] if none_ok else [])]
    if value in names:
        return None
    return f"unknown {capability} backend {value!r} (available: {', '.join(names)})"


def load(path: str | os.PathLike[str]) -> tuple[Settings, list[str]]:
    """Read and validate a `vl.yaml`; a DCVLR `default_config.yaml` is translated, and the DCVLR keys
    with no `vl` meaning are returned (second item) so the caller can list them."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config {p}: no such file (write one with `vl config init {p}`)")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {p}: cannot read it ({exc})") from None
    data, lines = parse_yaml(text, str(p))
    from vlcli.run.dcvlr import is_dcvlr_config, translate

    ignored: list[str] = []
    if is_dcvlr_config(data):
        try:
            data, ignored = translate(data)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{p}: a DCVLR setting has a value of the wrong type ({exc})") from None
        lines = {}
    return validate(data or {}, origin=str(p), lines=lines), ignored


def parse_yaml(text: str, origin: str) -> tuple[Any, Lines]:
    """Parse YAML (safe tags only, alias expansion bounded); also the line of each section and key."""
    yaml = _yaml()
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _bound_aliases(node, origin)
        return loader.construct_document(node), _key_lines(node)
    except yaml.YAMLError as exc:
        raise UsageError(f"{origin}: not valid YAML ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise UsageError(f"{origin}: values nested too deeply") from None
    finally:
        loader.dispose()


def _bound_aliases(root: Any, origin: str) -> None:
    """Refuse a document whose aliases (`*name`) expand to more than MAX_ALIAS_VALUES values, or refer
    to a value that contains them: either would make every later use of the settings spin."""
    yaml = _yaml()
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any) -> tuple[int, bool]:
        key = id(node)
        if key in sizes:
            return sizes[key], True  # a node met again is an alias of it
        line = node.start_mark.line + 1
        if key in open_nodes:
            raise UsageError(f"{origin}:{line}: an alias refers to the value that contains it; write it out")
        open_nodes.add(key)
        children: list[Any] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        total, aliased = 1, False
        for child in children:
            n, a = size(child)
            total, aliased = total + n, aliased or a
        open_nodes.discard(key)
        if aliased and total > MAX_ALIAS_VALUES:
            raise UsageError(
                f"{origin}:{line}: aliases (*name) expand this value to more than {MAX_ALIAS_VALUES:,} values; "
                "write the values out instead of repeating anchors"
            )
        sizes[key] = total
        return total, aliased

    size(root)


def _key_lines(root: Any) -> Lines:
    yaml = _yaml()
    lines: Lines = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        lines[(key.value,)] = key.start_mark.line + 1
        if isinstance(value, yaml.MappingNode):
            for sub, _ in value.value:
                if isinstance(sub, yaml.ScalarNode):
                    lines[(key.value, sub.value)] = sub.start_mark.line + 1
    return lines


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
    value = parse_yaml(raw, "--set")[0] if raw.strip() else None
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
    opts = {k: _coerce(values[k]) for k in RUNNER_KEYS if values.get(k) is not None}
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
