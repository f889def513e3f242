"""Steps: each reads some columns of the table and fills its own."""

from vlcli.steps.base import Progress, RowSkipped, RunOptions, Step, StepReport, run_step

__all__ = ["Progress", "RowSkipped", "RunOptions", "Step", "StepReport", "run_step"]
