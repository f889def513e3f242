"""`vl run [SRC] TABLE`: ingest, then filter -> crop -> bin -> synth -> validate, resuming where it stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vlcli.cli.common import Address, Engine, Gpus, GpusPerWorker, Procs, Quiet, RichProgress, handles_errors
from vlcli.cli.render import console, err_console, render
from vlcli.run import config
from vlcli.run.pipeline import plan, resolve, run_pipeline
from vlcli.run.presets import HELP as PRESET_HELP
from vlcli.testing.tiny_models import BANNER

MODEL_STEPS = ("filter", "crop", "bin", "synth", "validate")


@handles_errors
def command(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="[SRC] TABLE",
            help="Images to ingest first (optional), and the vl table: a .lance folder or a Lance URI "
            "(s3://, gs://, az://, file://).",
        ),
    ],
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="A vl.yaml (see `vl config init`) or DCVLR's default_config.yaml."
        ),
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option(help="Steps to run, in pipeline order (default: filter,crop,bin,synth,validate)."),
    ] = None,
    preset: Annotated[str | None, typer.Option(help=PRESET_HELP)] = None,
    set_values: Annotated[
        list[str] | None,
        typer.Option(
            "--set", metavar="SECTION.KEY=VALUE", help="Override one setting, e.g. crop.num_crops=8."
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Device for every model step (auto, cpu, cuda, cuda:N, mps).")
    ] = None,
    sample: Annotated[
        int | None, typer.Option(min=1, help="Work on a reproducible random subset of N images.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of --sample.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the settings and print the plan; write nothing.")
    ] = False,
    procs: Procs = 1,
    gpus: Gpus = None,
    engine: Engine = "local",
    address: Address = None,
    gpus_per_worker: GpusPerWorker = None,
    quiet: Quiet = False,
) -> None:
    """Run the whole pipeline: ingest SRC (when given), then every step in order.

    Rerun the same command to resume: each step does only its pending rows, and a step whose settings
    changed recomputes its rows. Settings: defaults < --preset < --config file < flags.
    """
    src, table = _paths(paths)
    file_settings: config.Settings = {}
    if config_file is not None:
        file_settings, ignored = config.load(config_file)
        if ignored:
            err_console.print(
                f"[yellow]note:[/] DCVLR config: {len(ignored)} keys have no vl equivalent and are ignored: "
                + ", ".join(ignored),
                highlight=False,
                soft_wrap=True,
            )
    scale = {
        "procs": procs,
        "gpus": gpus,
        "engine": engine,
        "address": address,
        "gpus_per_worker": gpus_per_worker,
    }
    scale = {
        k: v for k, v in scale.items() if v is not None and (k, v) not in (("procs", 1), ("engine", "local"))
    }
    flags = _flag_settings(steps, preset, set_values or [], device, sample, seed, file_settings, scale)
    settings = resolve(file_settings, flags, None)
    if settings["run"].get("preset") == "offline":
        err_console.print(f"[yellow]note:[/] {BANNER}", highlight=False, soft_wrap=True)
    if dry_run:
        render(plan(table, settings, src))
        return
    progress = None if quiet else (lambda: RichProgress())
    listener = None if quiet else _print_event
    report = run_pipeline(table, settings, src, progress_factory=progress, listener=listener)
    render(report)


def _paths(paths: list[str]) -> tuple[str | None, str]:
    if len(paths) == 1:
        return None, paths[0]
    if len(paths) == 2:
        return paths[0], paths[1]
    raise typer.BadParameter("give TABLE, or SRC TABLE", param_hint="[SRC] TABLE")


def _flag_settings(
    steps: str | None,
    preset: str | None,
    assignments: list[str],
    device: str | None,
    sample: int | None,
    seed: int | None,
    file_settings: config.Settings,
    scale: dict[str, Any],
) -> config.Settings:
    run: dict[str, Any] = dict(scale)
    if steps is not None:
        run["steps"] = [s.strip() for s in steps.split(",") if s.strip()]
    if preset is not None:
        run["preset"] = preset
    if sample is not None:
        run["sample"] = sample
    if seed is not None:
        run["seed"] = seed
    layers: list[config.Settings] = [{"run": run}]
    if device is not None:
        sections = config.sections()
        layers.append(
            {
                s: {"device": device}
                for s in MODEL_STEPS
                if s in sections and "device" in sections[s].valid_keys()
            }
        )
    layers += [config.parse_assignment(a) for a in assignments]
    return config.merge(*layers)


def _print_event(kind: str, payload: Any) -> None:
    if kind == "step-start":
        console.print(f"[bold]== {payload}[/]", highlight=False)
    elif kind in ("step", "ingest"):
        render(payload)  # a StepReport with its summary, or an IngestReport
