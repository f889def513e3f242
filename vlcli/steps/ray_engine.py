"""The Ray engine (`--engine ray`): the per-row part of a step on a Ray cluster.

Pending rows are read with lance-ray from the version the run started on, prepared in Ray tasks (CPU:
decode, resize) and processed in a pool of actors that each load the step's models once; the actors
return ids and the step's columns only, which the driver commits through `Table.write_back` in commit
windows, as the in-process engine does. Ray restarts a lost actor and retries its batch; a killed
driver loses at most one window and the rerun resumes from the NULL statuses.

Prepared values (arrays, images) cross from the prepare tasks to the actors as pickled bytes in a
binary column: one pickle and one copy through Ray's object store per row, small next to decoding.
They are bytes this job made a moment before, never read from the table or from outside.
"""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import pyarrow as pa

from vlcli.errors import UsageError
from vlcli.steps.base import Progress, RunOptions, Step, StepReport
from vlcli.steps.rows import Committer, commit_all, prepare_chunk, process_prepared, results_table
from vlcli.table.storage import Table

RESTARTS = 4  # a lost actor is restarted, and its batch retried, this many times before the run fails


def run_rows_on_ray(
    table: Table, step: Step, opts: RunOptions, where: str, report: StepReport, progress: Progress | None
) -> None:
    """The per-row part on Ray: read the rows matching `where` (at most `opts.limit`), prepare them in
    tasks, process them in an actor pool and commit the results here; Ctrl-C keeps what was committed."""
    ray, lance_ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=opts.address, include_dashboard=False, log_to_driver=False)
    try:
        results = _pipeline(ray, lance_ray, table, step, opts, where)
        batches = (
            batch.to_pylist() for batch in results.iter_batches(batch_format="pyarrow", batch_size=None)
        )
        commit_all(batches, Committer(table, step, opts, report), progress)
    finally:
        if started:  # a Ray the caller started is the caller's to stop
            ray.shutdown()


def actor_resources(cluster: dict[str, float], opts: RunOptions) -> tuple[int, float, float]:
    """How many actors, and the CPUs and GPUs each asks for: one GPU each (or `--gpus-per-worker`) when
    the cluster has GPUs, no more actors than those GPUs hold, and together at most half the CPUs, so
    read and prepare tasks always find one (actors holding every CPU starve the reads and the job hangs)."""
    gpus = cluster.get("GPU", 0.0)
    per_gpu = opts.gpus_per_worker if opts.gpus_per_worker is not None else (1.0 if gpus else 0.0)
    if per_gpu > gpus:
        raise UsageError(f"--gpus-per-worker {per_gpu:g}: the Ray cluster has {gpus:g} GPUs")
    size = opts.workers if not per_gpu else max(1, min(opts.workers, int(gpus // per_gpu)))
    cpus = min(1.0, cluster.get("CPU", 1.0) / 2 / size)
    return size, cpus, per_gpu


def _import_ray() -> tuple[Any, Any]:
    try:
        import lance_ray
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'vlcli[ray]'") from None
    return ray, lance_ray


def _pipeline(ray: Any, lance_ray: Any, table: Table, step: Step, opts: RunOptions, where: str) -> Any:
    """The Ray Data pipeline: read (pinned to this run's version), prepare in tasks, process in actors."""
    ray.data.DataContext.get_current().enable_progress_bars = False  # the caller draws its own
    optional = [c for c in step.optional_reads if c in table.schema.names]
    columns = list(dict.fromkeys(["id", *step.reads, *optional]))
    rows = lance_ray.read_lance(
        table.path,
        columns=columns,
        filter=where,
        storage_options=table.storage_options or None,
        dataset_options={"version": table.version},
    )
    if opts.limit is not None:
        rows = rows.limit(opts.limit)
    prepared = rows.map_batches(_prepare, fn_args=(step,), batch_format="pyarrow", batch_size=opts.batch_size)
    size, cpus, gpus = actor_resources(ray.cluster_resources(), opts)
    with warnings.catch_warnings():
        # Ray Data deprecates passing these, but its default restarts a lost actor forever: a row that
        # kills its actor every time would hang the run instead of failing it.
        warnings.simplefilter("ignore", DeprecationWarning)
        return prepared.map_batches(
            _Processor,
            fn_constructor_args=(step,),
            compute=ray.data.ActorPoolStrategy(size=size),
            batch_format="pyarrow",
            batch_size=opts.batch_size,
            num_cpus=cpus,
            num_gpus=gpus,
            max_restarts=RESTARTS,
            max_task_retries=RESTARTS,
        )


PREPARED = pa.schema([pa.field("id", pa.string()), pa.field("prepared", pa.large_binary())])


def _prepare(batch: pa.Table, step: Step) -> pa.Table:
    """A Ray task: the step's `prepare` over a batch, each row's (ok, value or status) pickled."""
    chunk = prepare_chunk(step, batch.to_pylist())
    return pa.table(
        {
            "id": [row_id for (row_id, _, _), _ in chunk],
            "prepared": [pickle.dumps((ok, value), protocol=5) for (_, ok, value), _ in chunk],
        },
        schema=PREPARED,
    )


class _Processor:
    """A Ray actor: loads the step's models once, then turns prepared batches into ids and the step's
    columns (the step arrives pickled from its settings: `Step.__getstate__` drops models)."""

    def __init__(self, step: Step) -> None:
        self.step = step
        step.setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch.column("id").to_pylist()
        values = [pickle.loads(b) for b in batch.column("prepared").to_pylist()]
        prepared = [(row_id, ok, value) for row_id, (ok, value) in zip(ids, values, strict=True)]
        return results_table(self.step, process_prepared(self.step, prepared))
