"""`vl run` as a library: ingest, then every step in order, each resuming where it stopped.

Settings come in layers (default < preset < config file < flags, see `vlcli.run.config`). A step whose
recorded settings changed since its last run recomputes its rows (`RunOptions.redo_if_changed`);
thresholds of the global parts (filter rules, bin ratios, validation rules) are recomputed from the
stored columns on every run, so changing them costs no model time.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from vlcli import hub
from vlcli.errors import QueryError, SourceError, UsageError
from vlcli.hub import ModelRef
from vlcli.ingestion.ingest import IngestReport, ingest
from vlcli.ingestion.reference import resolve_against
from vlcli.run import config
from vlcli.run.config import DEFAULT_STEPS, Settings
from vlcli.run.presets import preset
from vlcli.steps import BUILT_IN
from vlcli.steps import spec as step_spec
from vlcli.steps.base import Progress, RunOptions, Step, StepReport
from vlcli.steps.filter.step import FilterStep
from vlcli.steps.runner import run_step, scale_options
from vlcli.table.storage import Table, table_exists

ProgressFactory = Callable[[], Progress]
Listener = Callable[[str, Any], None]  # ("ingest" | "step-start" | "step" , payload)

DEFAULT_WORKERS = 2


def _settings(name: str, values: dict[str, Any]) -> list[Any]:
    """The step's settings objects from its section, in its spec's order."""
    objs = config.step_objects(name, values)
    return [objs[cls] for cls in step_spec(name).settings]


@dataclass
class PlannedStep:
    """One step of a plan: rows it would work on now, and the models it would load."""

    name: str
    pending: int | None  # None: depends on steps before it
    models: list[str]
    missing: dict[str, str] = field(default_factory=dict)  # model -> why it is not here yet


@dataclass
class Plan:
    """What `vl run` will do, worked out without writing anything."""

    table: str
    source: str | None
    source_items: int | None
    preset: str
    steps: list[PlannedStep]
    settings: Settings
    sample: int | None = None
    seed: int = 0


@dataclass
class PipelineReport:
    """What a `vl run` did: ingest, each step's report, the summary stored on the table."""

    ingest: IngestReport | None
    steps: list[StepReport] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def resolve(
    file_settings: Settings | None, flag_settings: Settings | None, models_folder: Any = None
) -> Settings:
    """default < preset < file < flags; the preset named by the flags, else by the file, else default."""
    file_settings, flag_settings = file_settings or {}, flag_settings or {}
    name = (
        flag_settings.get("run", {}).get("preset") or file_settings.get("run", {}).get("preset") or "default"
    )
    merged = config.merge(preset(str(name), models_folder), file_settings, flag_settings)
    merged.setdefault("run", {})["preset"] = name
    return config.check(merged)


def step_names(settings: Settings) -> list[str]:
    """The steps to run, in pipeline order, checked against the steps `vl` knows."""
    steps = settings.get("run", {}).get("steps")
    if steps is None:
        steps = list(DEFAULT_STEPS)
    if isinstance(steps, str):
        steps = [s.strip() for s in steps.split(",") if s.strip()]
    names = list(steps)
    unknown = [s for s in names if s not in BUILT_IN]
    if unknown:
        raise UsageError(
            f"unknown step {unknown[0]!r} in --steps (available, in order: {', '.join(BUILT_IN)})"
        )
    order = list(BUILT_IN)
    return sorted(dict.fromkeys(names), key=order.index)


def build(name: str, settings: Settings) -> Step:
    """The step object for `name` from its section (no model is loaded until it runs)."""
    return step_spec(name).build(*_settings(name, dict(settings.get(name, {}))))


def options(name: str, settings: Settings, where: str | None = None) -> RunOptions:
    """Runner options of a step: its section's runner keys over the step command's defaults."""
    batch = step_spec(name).default_batch(*_settings(name, dict(settings.get(name, {}))))
    section = {k: v for k, v in settings.get(name, {}).items() if v is not None}  # null: the default
    values = {"batch_size": batch, "workers": DEFAULT_WORKERS, **section}
    return config.run_options(values, where=where, redo_if_changed=True, **scale(settings))


def scale(settings: Settings) -> dict[str, Any]:
    """The scale-out options (`run.procs`, `run.gpus`, `run.engine`, ...) every step of a run uses."""
    run = settings.get("run", {})
    gpus = run.get("gpus")
    if isinstance(gpus, (list, tuple, int)):
        gpus = ",".join(str(g) for g in gpus) if isinstance(gpus, (list, tuple)) else str(gpus)
    return scale_options(
        None,
        int(run.get("procs") or 1),
        gpus,
        str(run.get("engine") or "local"),
        run.get("address"),
        run.get("gpus_per_worker"),
    )


def check(
    table: str | os.PathLike[str], settings: Settings, src: str | os.PathLike[str] | None = None
) -> list[str]:
    """Everything a run checks before it loads a model, in seconds: the table and SRC exist, the step
    names, and every value the run will use (each step's settings and runner options, ingest's options),
    built as the run builds them. Returns the steps to run."""
    names = step_names(settings)
    if src is None and not table_exists(table):
        raise UsageError(f"{table}: no such table (give a SRC to ingest first: vl run SRC {table})")
    if src is not None:
        check_source(src)
    used = ["run", *(["ingest"] if src is not None else []), *names]
    config.validate({k: v for k, v in settings.items() if k in used}, origin="vl run")
    for name in names:
        options(name, settings)
    return names


def check_source(src: str | os.PathLike[str]) -> None:
    """A SRC that is neither a file or folder nor a hub dataset id (owner/name) fails now, not after
    the models have been looked up."""
    from vlcli.ingestion.sources import SOURCE_HELP

    location = os.fspath(src)
    if os.path.exists(location) or hub.DATASET_ID.fullmatch(location):
        return
    raise SourceError(f"no such file or folder: {location!r}; {SOURCE_HELP}")


def models(settings: Settings, names: list[str] | None = None) -> list[ModelRef]:
    """The models the steps `names` (default: the configured steps) will load."""
    return [
        m
        for n in names or step_names(settings)
        for m in step_spec(n).models(*_settings(n, dict(settings.get(n, {}))))
    ]


def sample_filter(table: Table, n: int | None, seed: int) -> str | None:
    """A predicate selecting a reproducible random subset of `n` ingested rows (None: every row)."""
    if n is None:
        return None
    ids = [i for b in table.scan(["id"], "ingest_status = 'ok'") for i in b.column("id").to_pylist()]
    chosen = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())[:n]
    if not chosen:
        return "false"
    return "id IN (" + ", ".join("'" + i.replace("'", "''") + "'" for i in chosen) + ")"


def plan(
    table: str | os.PathLike[str], settings: Settings, src: str | os.PathLike[str] | None = None
) -> Plan:
    """What a run would do now: pending rows per step, models to load and which of them are not here
    yet; loads no model, asks no hub, writes nothing."""
    run = settings.get("run", {})
    names = check(table, settings, src)
    planned = {name: _plan_step(name, settings) for name in names}  # as the run builds them
    source_items = None
    if src is not None:
        from vlcli.ingestion.sources import open_source

        ingest_values = settings.get("ingest", {})
        source = open_source(
            src,
            dataset=ingest_values.get("dataset"),
            split=ingest_values.get("split", "train"),
            image_column=ingest_values.get("image_column"),
            keep_columns=tuple(ingest_values.get("keep_columns") or ()),
        )
        source_items = source.total
    path = os.fspath(table)
    handle = Table.open(path) if table_exists(path) else None
    steps = []
    for i, name in enumerate(names):
        spec, step = step_spec(name), planned[name]
        pending = None
        if handle is not None and (i == 0 or src is None):
            if spec.needs not in names[:i]:  # else the columns it looks for come from an earlier step
                step.check(handle)
            pending = _pending(handle, step, settings)
        refs = spec.models(*_settings(name, dict(settings.get(name, {}))))
        missing = {r.label: why for r in refs if (why := hub.missing(r))}
        steps.append(PlannedStep(name, pending, [r.label for r in refs], missing))
    return Plan(
        table=str(path),
        source=None if src is None else str(src),
        source_items=source_items,
        preset=str(run.get("preset", "default")),
        steps=steps,
        settings=settings,
        sample=run.get("sample"),
        seed=int(run.get("seed") or 0),
    )


def _plan_step(name: str, settings: Settings) -> Step:
    return build(name, {name: {**settings.get(name, {}), **step_spec(name).plan_values}})


def _pending(table: Table, step: Step, settings: Settings) -> int | None:
    """Rows the step would take now; None when that depends on columns earlier steps have not written."""
    names = table.schema.names
    where = step.pending_filter(False, names) if step.status in names else step.requires
    run = settings.get("run", {})
    sample = sample_filter(table, run.get("sample"), int(run.get("seed") or 0))
    if sample is not None:
        where = sample if where is None else f"({where}) AND ({sample})"
    try:
        return table.count(where)
    except QueryError:
        return None


def run_pipeline(
    table: str | os.PathLike[str],
    settings: Settings,
    src: str | os.PathLike[str] | None = None,
    progress_factory: ProgressFactory | None = None,
    listener: Listener | None = None,
) -> PipelineReport:
    """Ingest `src` (when given), then run every configured step in order; rerun to resume."""
    started = time.perf_counter()
    notify = listener or (lambda kind, payload: None)
    run = settings.get("run", {})
    names = check(table, settings, src)  # arguments and values first: seconds, no model, no hub
    hub.check_available(models(settings, names))  # an unreachable hub fails here, not after ingest
    built = [build(name, settings) for name in names]
    ingested = None
    if src is not None:
        opts = config.ingest_options(settings.get("ingest", {}))
        ingested = ingest(src, table, opts, progress=_progress(progress_factory))
        notify("ingest", ingested)
    handle = Table.open(os.fspath(table))
    where = sample_filter(handle, run.get("sample"), int(run.get("seed") or 0))
    report = PipelineReport(ingest=ingested)
    for name, step in zip(names, built):
        notify("step-start", name)
        if isinstance(step, FilterStep) and step.rules.against:  # evaluation sets become reference tables
            step.rules, _ = resolve_against(handle, step.rules, progress=_progress(progress_factory))
        step_report = run_step(handle, step, options(name, settings, where), _progress(progress_factory))
        report.steps.append(step_report)
        notify("step", step_report)
    report.seconds = time.perf_counter() - started
    report.summary = summarize(handle, report, settings)
    handle.set_metadata("run", report.summary)
    return report


def summarize(table: Table, report: PipelineReport, settings: Settings) -> dict[str, Any]:
    """Rows in, kept, per-bin counts, Q/A generated and valid, seconds per step (stored on the table)."""
    table.refresh()
    names = set(table.schema.names)
    lazy = table.lazy()
    import polars as pl

    exprs = [pl.len().alias("rows"), (pl.col("ingest_status") == "ok").sum().alias("ingested")]
    if "filter_keep" in names:
        exprs.append(pl.col("filter_keep").fill_null(False).sum().alias("kept"))
    if "synth_qa" in names:
        exprs.append(pl.col("synth_qa").list.len().fill_null(0).sum().alias("qa_generated"))
    if "valid_count" in names:
        exprs.append(pl.col("valid_count").fill_null(0).sum().alias("qa_valid"))
    counts = {k: int(v) for k, v in lazy.select(exprs).collect().row(0, named=True).items()}
    bins: dict[str, int] = {}
    if {"bin", "bin_selected"} <= names:
        grouped = (
            lazy.filter(pl.col("bin_selected").fill_null(False))
            .group_by("bin")
            .agg(pl.len().alias("n"))
            .collect()
        )
        bins = {str(b): int(n) for b, n in grouped.iter_rows() if b is not None}
    return {
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "preset": settings.get("run", {}).get("preset", "default"),
        "steps": [r.step for r in report.steps],
        **counts,
        "bins": dict(sorted(bins.items())),
        "seconds": {
            **({"ingest": round(report.ingest.seconds, 2)} if report.ingest else {}),
            **{r.step: round(r.seconds, 2) for r in report.steps},
        },
        "step_reports": [
            {"step": r.step, "done": r.done, "skipped": r.skipped, "errors": r.errors} for r in report.steps
        ],
        "sample": settings.get("run", {}).get("sample"),
        "total_seconds": round(report.seconds, 2),
    }


def _progress(factory: ProgressFactory | None) -> Progress | None:
    return factory() if factory is not None else None


def plan_dict(p: Plan) -> dict[str, Any]:
    """A plan as a JSON-ready dict (for --json output and tests)."""
    return asdict(p)
