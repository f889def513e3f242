"""Steps: each reads some columns of the table and fills its own."""

import importlib

from vlcli.steps.base import Progress, RowSkipped, RunOptions, Step, StepReport, StepSpec, Summary
from vlcli.steps.runner import run_step

# The built-in steps by name, in pipeline order, imported only when asked for.
BUILT_IN = {
    "filter": "vlcli.steps.filter.step:FilterStep",
    "crop": "vlcli.steps.crop.step:CropStep",
    "bin": "vlcli.steps.bin.step:BinStep",
    "synth": "vlcli.steps.synth.step:SynthStep",
    "validate": "vlcli.steps.validate.step:ValidateStep",
}


def step_class(name: str) -> type[Step]:
    """The built-in step called `name`; for any other, a `Step` of that name with the default rules."""
    if name not in BUILT_IN:
        return type(f"{name.title()}Step", (Step,), {"name": name})
    module, _, attr = BUILT_IN[name].partition(":")
    cls: type[Step] = getattr(importlib.import_module(module), attr)
    return cls


def spec(name: str) -> StepSpec:
    """The spec of the built-in step called `name` (its module's SPEC)."""
    module = BUILT_IN[name].partition(":")[0]
    found: StepSpec = importlib.import_module(module).SPEC
    return found


__all__ = [
    "BUILT_IN",
    "Progress",
    "RowSkipped",
    "RunOptions",
    "Step",
    "StepReport",
    "StepSpec",
    "Summary",
    "run_step",
    "spec",
    "step_class",
]
