"""The step contract: what a step declares and does, the options every run takes, what a run reports.

The runner that drives a step is `vlcli.steps.runner.run_step`; the per-row work every engine shares is
in `vlcli.steps.rows`, the once-only work before and after the rows in `vlcli.steps.lifecycle`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from vlcli.errors import RowSkipped as RowSkipped  # raised by `prepare` or `process` to skip a row
from vlcli.errors import UsageError
from vlcli.table.schema import Column, status_column
from vlcli.text import one_line

if TYPE_CHECKING:
    from vlcli.hub import ModelRef
    from vlcli.table.storage import Table


@dataclass(frozen=True)
class RunOptions:
    """Options every step takes."""

    batch_size: int = 64
    limit: int | None = None
    retry_errors: bool = False
    redo: bool = False
    workers: int = field(default_factory=lambda: max(1, min(8, os.cpu_count() or 1)))
    pool: Literal["thread", "process"] = "thread"
    prefetch: int = 2
    commit_rows: int = 4096
    commit_seconds: float = 10.0
    where: str | None = None  # an extra predicate: only rows matching it are worked on (vl run --sample)
    redo_if_changed: bool = False  # recompute every row when the step's recorded settings changed
    # Prepared rows (decoded pixels) waiting for `process`: batches are cut short to stay under this.
    prefetch_bytes: int = 256 * 2**20
    shard: Shard | None = None  # take only this shard's rows and do none of the once-only work
    procs: int = 1  # worker processes, each running one shard (--procs)
    gpus: tuple[str, ...] = ()  # one worker process per device id (--gpus): its CUDA_VISIBLE_DEVICES
    engine: Literal["local", "ray"] = "local"  # ray: read, prepare and process on a Ray cluster
    address: str | None = None  # the Ray cluster (--address; None starts a local one)
    gpus_per_worker: float | None = None  # GPUs per Ray actor (None: 1 when the cluster has GPUs, else 0)

    @property
    def workers_processes(self) -> int:
        """How many worker processes the step runs in (1: this one)."""
        return max(self.procs, len(self.gpus), 1)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if self.limit is not None and self.limit < 0:
            raise UsageError("--limit must be 0 or more")
        if self.workers < 1:
            raise UsageError("--workers must be at least 1")
        if self.pool not in ("thread", "process"):
            raise UsageError("--pool must be 'thread' or 'process'")
        if self.prefetch < 1:
            raise UsageError("--prefetch must be at least 1")
        if self.prefetch_bytes < 1:
            raise UsageError("prefetch_bytes must be at least 1")
        if self.commit_rows < 1 or self.commit_seconds < 0:
            raise UsageError("--commit-rows must be at least 1 and --commit-seconds 0 or more")
        if self.procs < 1:
            raise UsageError("--procs must be at least 1")
        if self.engine not in ("local", "ray"):
            raise UsageError("--engine must be 'local' or 'ray'")
        if self.shard is not None and (self.workers_processes > 1 or self.engine != "local"):
            raise UsageError("--shard runs one shard in this process: leave out --procs, --gpus and --engine")
        if self.engine == "ray" and self.workers_processes > 1:
            raise UsageError(
                "--engine ray places workers itself: leave out --procs and --gpus (use --workers)"
            )


@dataclass(frozen=True)
class Shard:
    """One of `count` disjoint parts of a table, by fragment: the rows this process takes (`--shard K/N`).

    Whole fragments go to one shard, so two shards never commit to the same fragment and each reads only
    its own part of the image bytes."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(f"--shard must be K/N with 0 <= K < N (e.g. 0/2), not {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`K/N` as a shard; a one-line error otherwise."""
        index, sep, count = text.partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise UsageError(f"--shard must be K/N with 0 <= K < N (e.g. 0/2), not {text!r}")
        return cls(int(index), int(count))

    def predicate(self) -> str:
        """The SQL condition selecting this shard's rows: the fragment id is the row address's upper half."""
        return f"((_rowaddr >> 32) % {self.count}) = {self.index}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class Progress(Protocol):
    """Where the runner reports progress; the CLI draws it, the library stays silent."""

    def start(self, step: str, total: int | None) -> None:
        """Work on `total` rows begins (None when the total is not known in advance)."""

    def advance(self, rows: int, errors: int) -> None:
        """`rows` more rows were committed, `errors` of them with an error status."""

    def finish(self) -> None:
        """The run ended (done, failed or interrupted)."""


@dataclass
class Summary:
    """What a step's global part (`Step.finish`) decided; a step with one subclasses this."""


class Step:
    """A unit of work over rows: declares what it reads and writes; the runner does the rest.

    The runner calls, in order: `check(table)` (before any work), `setup()` (models; only when rows
    are pending), `prepare` and `process` per batch, `finish(table)` (the global part) and, however
    the run ends, `close()`.
    """

    name: ClassVar[str] = "step"
    reads: ClassVar[tuple[str, ...]] = ("id",)
    optional_reads: ClassVar[tuple[str, ...]] = ()  # read when the table has them (e.g. crop_box)
    writes: tuple[Column, ...] = ()  # an instance may set its own (e.g. an embedding sized by its model)
    requires: ClassVar[str | None] = "ingest_status = 'ok'"
    # (column, predicate) a row must also meet once the table has that column (e.g. kept by the filter)
    prerequisites: ClassVar[tuple[tuple[str, str], ...]] = ()
    # Attributes `setup` fills (models, connections, buffers): never pickled, dropped by `close`.
    transient: ClassVar[tuple[str, ...]] = ()

    @property
    def status(self) -> str:
        """Name of this step's status column."""
        return f"{self.name}_status"

    def columns(self) -> tuple[Column, ...]:
        """Every column the step fills, its status column last."""
        return (*self.writes, status_column(self.name))

    @classmethod
    def ready_filter(cls, columns: Iterable[str] = (), params: Mapping[str, Any] | None = None) -> str | None:
        """What a row needs, besides its own NULL status, for this step to take it now (None: nothing).

        `columns` are the table's; `params` the step's settings as `provenance()` gives and the table
        records them, so `vl status` and the review page count pending rows as the runner takes them.
        """
        names = set(columns)
        parts = [f"({cls.requires})"] if cls.requires else []
        parts += [f"({predicate})" for column, predicate in cls.prerequisites if column in names]
        return " AND ".join(parts) or None

    @classmethod
    def todo_filter(
        cls, retry_errors: bool = False, columns: Iterable[str] = (), params: Mapping[str, Any] | None = None
    ) -> str:
        """The predicate selecting rows this step still has to do, given the table's `columns` and its settings."""
        status = f"{cls.name}_status"
        todo = f"({status} IS NULL OR {status} LIKE 'error:%')" if retry_errors else f"{status} IS NULL"
        ready = cls.ready_filter(list(columns), params)
        return f"{todo} AND {ready}" if ready else todo

    def pending_filter(self, retry_errors: bool = False, columns: Iterable[str] = ()) -> str:
        """The predicate selecting rows this step still has to do (`columns`: the table's columns)."""
        return self.todo_filter(retry_errors, columns, self.provenance())

    def check(self, table: Table) -> None:
        """Before any work, and before models load: raise UsageError saying what to do when the table
        or the settings cannot work (e.g. a column an earlier step writes is missing)."""

    def reopen(self, table: Table) -> int:
        """Before pending rows are chosen (unless --redo): set rows whose inputs changed back to pending;
        returns how many."""
        return 0

    def setup(self) -> None:
        """Load models once per process, before the first batch (not called when nothing is pending)."""

    def close(self) -> None:
        """Release what `setup` loaded (the runner calls it however the run ends; calling it again is harmless)."""
        seen: set[int] = set()
        for name in self.transient:
            value = getattr(self, name, None)
            for held in value.values() if isinstance(value, dict) else (value,):
                close = getattr(held, "close", None)
                if callable(close) and id(held) not in seen:
                    seen.add(id(held))
                    close()
        self.__dict__.update(self._released())

    def _released(self) -> dict[str, Any]:
        # a container stays one (empty): `process` and `prepare` look into it
        return {name: {} if isinstance(getattr(self, name, None), dict) else None for name in self.transient}

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for process-pool workers and other processes: models stay where they were loaded.
        return {**self.__dict__, **self._released()}

    def prepare(self, row: dict[str, Any]) -> Any:
        """Per-row CPU work (decode, resize) run in the prefetch pool; raise to fail the row."""
        return row

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        """Compute one result per prepared item: a dict of written columns (status defaults to ok)."""
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        """Model names, revisions and parameters that determine this step's output."""
        return {}

    def finish(self, table: Table) -> Summary | None:
        """The global part, after every pending row is done (also when none was): returns a summary."""
        return None


@dataclass(frozen=True)
class StepSpec:
    """Everything `vl` knows about a step before building it: `vl run`, the config, the presets and the
    step's command all read this."""

    name: str
    settings: tuple[type, ...]  # the dataclasses its config section and its flags fill
    build: Callable[..., Step]  # the step from instances of `settings`, in that order
    models: Callable[..., list[ModelRef]]  # the models it will load, from the same instances
    batch_size: int  # rows per batch, by default
    batch_for: Callable[..., int] | None = None  # a default batch size that depends on the settings
    needs: str | None = None  # the step that writes the columns its `check` looks for
    # Values that change what the step writes but not which rows it takes, set for a plan so that
    # building the step reads no model config (crop sizes its embedding column from its model's).
    plan_values: Mapping[str, Any] = field(default_factory=dict)
    converters: Mapping[str, Callable[[Any], Any]] = field(
        default_factory=dict
    )  # config values YAML cannot spell
    aliases: Mapping[str, str] = field(default_factory=dict)  # config key -> flag name, where they differ

    def default_batch(self, *settings: Any) -> int:
        """Rows per batch for these settings."""
        return self.batch_for(*settings) if self.batch_for is not None else self.batch_size


@dataclass
class StepReport:
    """What a step run did."""

    step: str
    pending: int = 0
    done: int = 0
    skipped: int = 0
    errors: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    interrupted: bool = False
    tag: str | None = None
    changed_settings: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    summary: Summary | None = None  # what the step's global part (`Step.finish`) reported
    retry_errors: bool = False  # the run also took rows whose status is an error

    @property
    def processed(self) -> int:
        """Rows committed in this run, whatever their outcome."""
        return self.done + self.skipped + self.errors

    @property
    def rows_per_second(self) -> float:
        """Throughput of this run."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def count(self, status: str) -> None:
        """Add one committed row with `status` to the tallies."""
        if status == "ok":
            self.done += 1
            return
        if status.startswith("skipped"):
            self.skipped += 1
        else:
            self.errors += 1
        self.reasons[reason_key(status)] += 1


def reason_key(status: str) -> str:
    """Group statuses by their reason, dropping per-row details: 'error: cannot decode (x)' -> 'error: cannot decode'."""
    kind, _, rest = status.partition(": ")
    rest = rest.split(" (")[0].split(": ")[0].strip()
    return f"{kind}: {rest}" if rest else kind


def error_status(exc: BaseException) -> str:
    """The status text for a row that raised `exc`."""
    if isinstance(exc, RowSkipped):
        return "skipped: " + one_line(str(exc) or "skipped")
    text = str(exc)
    # ImageProblem and friends carry a user-facing reason; others get their type for debugging.
    if type(exc).__name__ not in ("ImageProblem", "RowError"):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return "error: " + one_line(text)
