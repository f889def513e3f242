"""`vl config init`: a commented default `vl.yaml`, generated from the settings and the commands' help."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlcli.run import config
from vlcli.run.config import DEFAULT_STEPS, RUNNER_KEYS
from vlcli.run.presets import HELP as PRESET_HELP

HEADER = """\
# vl.yaml: settings for `vl run` (vl run [SRC] TABLE --config vl.yaml).
# Each section holds one step's settings; the keys are that step's command-line flags with
# underscores (`vl crop --num-crops 8` is `crop: {num_crops: 8}`). Precedence, lowest first:
# the defaults below < --preset < this file < flags (`vl run --set crop.num_crops=8`).
# Unknown keys are errors. A DCVLR default_config.yaml is also accepted (mapped keys are used).
"""

RUN_HELP = {
    "steps": "Steps to run, in pipeline order.",
    "preset": PRESET_HELP,
    "sample": "Work on a reproducible random subset of this many images (null: all).",
    "seed": "Seed of the sample.",
}


def render(helps: Mapping[str, Mapping[str, str]], runner_defaults: Mapping[str, Mapping[str, Any]]) -> str:
    """The YAML text: every section and key with its default and a comment from the matching flag."""
    lines = [HEADER.rstrip(), ""]
    run_values = {"steps": list(DEFAULT_STEPS), "preset": "default", "sample": None, "seed": 0}
    lines += _section("run", run_values, RUN_HELP)
    for name, spec in config.sections().items():
        if name == "run":
            continue
        values = {k: _plain(name, k, v) for k, v in config.defaults(name).items()}
        if name != "ingest":
            values.update({k: v for k, v in runner_defaults.get(name, {}).items() if k in RUNNER_KEYS})
        help_for = {key: helps.get(name, {}).get(spec.aliases.get(key, key), "") for key in values}
        lines += _section(name, values, help_for)
    return "\n".join(lines).rstrip() + "\n"


def _section(name: str, values: Mapping[str, Any], helps: Mapping[str, str]) -> list[str]:
    import yaml

    out = [f"{name}:"]
    for key, value in values.items():
        if helps.get(key):
            out.append(f"  # {helps[key]}")
        dumped = yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix("...\n").strip()
        out.append(f"  {key}: {dumped}")
    out.append("")
    return out


def _plain(section: str, key: str, value: Any) -> Any:
    """A default as YAML can spell it and the loader reads back (tuples -> lists, aspects -> "4:3")."""
    if section == "crop" and key == "aspects":
        return ",".join(f"{a}:{b}" for a, b in value)
    if isinstance(value, tuple):
        return [_plain(section, key, v) for v in value]
    return value
