"""The step contract and the one runner that drives every step: scan pending, prepare, process, write back."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import pyarrow as pa

from vlcli import __version__
from vlcli.errors import RowSkipped as RowSkipped  # raised by `prepare` or `process` to skip a row
from vlcli.errors import StepInterrupted, UsageError
from vlcli.table.schema import Column, status_column
from vlcli.table.storage import Table
from vlcli.text import one_line

if TYPE_CHECKING:
    from vlcli.hub import ModelRef

CHUNK_ROWS = 4  # rows per prepare task: few, so the bytes of prepared rows in flight are bounded finely


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


# --- the runner ----------------------------------------------------------------------------


def return_freed_memory() -> bool:
    """On Linux/glibc, give allocations over 1 MB (decoded images, their copies) their own mappings,
    which go back to the OS when freed; returns whether that was set.

    glibc raises that threshold to 32 MB as big blocks are freed, after which image buffers (Pillow
    allocates them in 16 MB blocks) come from per-thread heaps that do not shrink: `vl bin` grew to 3 GB
    on six 10000x10000 PNGs, 1.9 GB with this. Set at every run: ingest sets the opposite for its own
    buffers (see vlcli.ingestion.ingest.tune_allocator)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 2**20) and libc.mallopt(m_trim_threshold, 32 * 2**20))
    except (OSError, AttributeError):  # not glibc (musl, ...): keep its defaults
        return False


_Prepared = tuple[str, bool, Any]  # (id, ok, prepared value or status text)


def held_bytes(value: Any, depth: int = 0) -> int:
    """Bytes a prepared value holds in pixels and buffers: images, arrays and bytes, also inside tuples,
    lists, dicts and objects' attributes (a few levels down)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    nbytes = getattr(value, "nbytes", None)  # numpy arrays, torch tensors
    if isinstance(nbytes, int):
        return nbytes
    if hasattr(value, "getbands") and isinstance(getattr(value, "size", None), tuple):  # a PIL image
        width, height = value.size
        return int(width * height * len(value.getbands()))
    if depth >= 3 or isinstance(value, (str, int, float)):
        return 0
    if isinstance(value, dict):
        return sum(held_bytes(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(held_bytes(v, depth + 1) for v in value)
    return sum(held_bytes(v, depth + 1) for v in getattr(value, "__dict__", {}).values())


_Chunk = list[tuple[_Prepared, int]]  # prepared rows with the bytes each holds


def _prepare_chunk(step: Step, rows: list[dict[str, Any]]) -> _Chunk:
    out: _Chunk = []
    for row in rows:
        try:
            value = step.prepare(row)
            out.append(((row["id"], True, value), held_bytes(value)))
        except Exception as exc:
            out.append(((row["id"], False, error_status(exc)), 0))
    return out


@dataclass
class _Batch:
    chunks: list[Future[_Chunk]] = field(default_factory=list)
    bytes: int = 0  # of its finished chunks


def _chunks(rows: list[dict[str, Any]], n: int) -> list[list[dict[str, Any]]]:
    size = max(1, min(CHUNK_ROWS, -(-len(rows) // n)))
    return [rows[i : i + size] for i in range(0, len(rows), size)]


class _Prefetcher:
    """Reads pending batches and submits their `prepare` work ahead of the consumer, bounded in batches
    (`prefetch`) and in bytes: prepared rows not yet processed, plus the rows under way at the size of
    the largest recent one, stay under about `prefetch_bytes`. A batch is handed over short once it holds its
    share of that, and handed to `process` in parts of at most that share."""

    _END = object()

    def __init__(
        self, batches: Iterator[pa.RecordBatch], step: Step, pool: Executor, opts: RunOptions
    ) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=opts.prefetch)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._room = threading.Condition()
        self._held = 0  # bytes of prepared rows that `process` has not finished with
        self._running = 0  # prepare tasks submitted and not finished
        self._running_rows = 0
        self._row_bytes = 0  # about the most a recent prepared row has held
        self._max_running = 2 * opts.workers  # one under way and one queued per worker
        self._budget = opts.prefetch_bytes
        self._share = max(1, opts.prefetch_bytes // (opts.prefetch + 1))  # one batch's bytes
        self._thread = threading.Thread(
            target=self._fill, args=(batches, step, pool, opts.workers), daemon=True, name="vl-prefetch"
        )
        self._thread.start()

    def _fill(self, batches: Iterator[pa.RecordBatch], step: Step, pool: Executor, workers: int) -> None:
        try:
            for batch in batches:
                cut = _Batch()
                for chunk in _chunks(batch.to_pylist(), workers):
                    cut = self._make_room(cut)
                    if self._stop.is_set():
                        return
                    with self._room:
                        self._running += 1
                        self._running_rows += len(chunk)
                    future = pool.submit(_prepare_chunk, step, chunk)
                    cut.chunks.append(future)
                    future.add_done_callback(functools.partial(self._finished, cut, len(chunk)))
                if cut.chunks and not self._put(cut):
                    return
        except BaseException as exc:  # surfaced in the consumer thread
            self._error = exc
        finally:
            self._put_end()

    def _finished(self, batch: _Batch, rows: int, future: Future[_Chunk]) -> None:
        ok = not future.cancelled() and future.exception() is None
        sizes = [n for _, n in future.result()] if ok else []
        with self._room:
            self._running -= 1
            self._running_rows -= rows
            self._held += sum(sizes)
            # the largest recent row: decays, so one huge row does not slow the rest of the run
            self._row_bytes = max(max(sizes, default=0), self._row_bytes * 9 // 10)
            batch.bytes += sum(sizes)
            self._room.notify_all()

    def _make_room(self, cut: _Batch) -> _Batch:
        """Wait until another chunk may start; hand `cut` over first (and return a new one) once it
        holds its share of the bytes, or when the bytes wait on the consumer and it may have nothing."""
        while not self._stop.is_set():
            with self._room:
                over = self._held + self._running_rows * self._row_bytes >= self._budget
                if not (cut.chunks and (cut.bytes >= self._share or over)):
                    if not over and self._running < self._max_running:
                        return cut
                    self._room.wait(timeout=0.1)
                    continue
            if not self._put(cut):
                break
            cut = _Batch()
        return cut

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _put_end(self) -> None:
        self._put(self._END)

    def __iter__(self) -> Iterator[list[_Prepared]]:
        while True:
            item = self._queue.get()
            if item is self._END:
                if self._error is not None:
                    raise self._error
                return
            part: _Chunk = []
            part_bytes = 0
            for future in item.chunks:
                for row in future.result():
                    if part and part_bytes + row[1] > self._share:
                        yield from self._hand(part)
                        part, part_bytes = [], 0
                    part.append(row)
                    part_bytes += row[1]
            yield from self._hand(part)

    def _hand(self, part: _Chunk) -> Iterator[list[_Prepared]]:
        """Give `part` to `process`; its bytes are released once `process` is done with it."""
        if part:
            yield [prepared for prepared, _ in part]
            with self._room:
                self._held -= sum(n for _, n in part)
                self._room.notify_all()

    def close(self) -> None:
        """Stop reading ahead."""
        self._stop.set()
        with self._room:
            self._room.notify_all()
        self._thread.join(timeout=5)


def _normalise(step: Step, result: dict[str, Any]) -> dict[str, Any]:
    status = result.get(step.status) or "ok"
    if not (status == "ok" or status.startswith("skipped") or status.startswith("error")):
        raise ValueError(f"{step.name}: bad status {status!r} (use ok, 'skipped: why' or 'error: why')")
    row = {c.name: result.get(c.name) for c in step.writes}
    row[step.status] = status
    return row


def _failed(step: Step, status: str) -> dict[str, Any]:
    row: dict[str, Any] = {c.name: None for c in step.writes}
    row[step.status] = status
    return row


def _process_one(step: Step, value: Any) -> dict[str, Any]:
    try:
        outs = step.process([value])
        if len(outs) != 1:
            raise RuntimeError(f"{step.name}.process returned {len(outs)} results for 1 row")
        return _normalise(step, outs[0])
    except Exception as exc:
        return _failed(step, error_status(exc))


def _process(step: Step, prepared: Sequence[_Prepared]) -> list[dict[str, Any]]:
    """Results in input order; a failing batch falls back to row by row so one bad row fails alone."""
    results = {row_id: _failed(step, value) for row_id, ok, value in prepared if not ok}
    good = [(row_id, value) for row_id, ok, value in prepared if ok]
    if good:
        try:
            outs = step.process([v for _, v in good])
            if len(outs) != len(good):
                raise RuntimeError(f"{step.name}.process returned {len(outs)} results for {len(good)} rows")
            results.update(
                {row_id: _normalise(step, out) for (row_id, _), out in zip(good, outs, strict=False)}
            )
        except Exception:
            results.update({row_id: _process_one(step, value) for row_id, value in good})
    return [{"id": row_id, **results[row_id]} for row_id, _, _ in prepared]


def _results_table(step: Step, rows: list[dict[str, Any]]) -> pa.Table:
    schema = pa.schema([pa.field("id", pa.string()), *(c.field() for c in step.columns())])
    return pa.Table.from_pylist(rows, schema=schema)


def _make_pool(opts: RunOptions) -> Executor:
    if opts.pool == "process":
        # Lance's runtime is not fork-safe: workers start fresh and receive the step by pickle.
        return ProcessPoolExecutor(max_workers=opts.workers, mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="vl-prepare")


def run_step(
    table: Table, step: Step, options: RunOptions | None = None, progress: Progress | None = None
) -> StepReport:
    """Run `step` over every pending row of `table`, committing each batch; resumable at any point."""
    opts = options or RunOptions()
    try:
        return _run(table, step, opts, progress)
    finally:
        step.close()


def _run(table: Table, step: Step, opts: RunOptions, progress: Progress | None) -> StepReport:
    report = StepReport(step=step.name, retry_errors=opts.retry_errors)
    started = time.perf_counter()
    step.check(table)
    table.ensure_columns(c.field() for c in step.columns())
    if not opts.redo:
        step.reopen(table)
    report.changed_settings = _changed_settings(table, step)
    if opts.redo or (opts.redo_if_changed and report.changed_settings):
        _reset(table, step)
        # Recorded now, so a rerun after an interruption resumes the redo instead of starting it over.
        _record_provenance(table, step, rows=0)
    where = step.pending_filter(opts.retry_errors, table.schema.names)
    if opts.where:
        where = f"({where}) AND ({opts.where})"
    pending = table.count(where)
    report.pending = pending if opts.limit is None else min(pending, opts.limit)
    if progress is not None:
        progress.start(step.name, report.pending)
    if report.pending == 0:
        if progress is not None:
            progress.finish()
        report.summary = step.finish(table)
        report.seconds = time.perf_counter() - started
        return report

    with _exit_on_interrupt():
        step.setup()
    return_freed_memory()
    optional = [c for c in step.optional_reads if c in table.schema.names]
    columns = list(dict.fromkeys(["id", *step.reads, *optional]))
    # The scan reads one pinned version while the commits below add new ones.
    batches = table.snapshot().scan(columns, where, batch_size=opts.batch_size, limit=opts.limit or None)
    pool = _make_pool(opts)
    prefetcher = _Prefetcher(batches, step, pool, opts)
    committer = _Committer(table, step, opts, report)
    try:
        for prepared in prefetcher:
            rows = _process(step, prepared)
            committer.add(rows)
            if progress is not None:
                progress.advance(len(rows), sum(r[step.status].startswith("error") for r in rows))
        committer.flush()
    except KeyboardInterrupt:
        committer.flush()  # finished rows are kept; the batch in flight is abandoned
        report.interrupted = True
        report.seconds = time.perf_counter() - started
        raise StepInterrupted(
            f"{step.name} interrupted after {report.processed} rows; everything committed is kept: "
            "rerun the same command to resume",
            report,
        ) from None
    finally:
        prefetcher.close()
        pool.shutdown(wait=False, cancel_futures=True)
        if progress is not None:
            progress.finish()
    _finish(table, step, report)  # records provenance, which names the loaded models
    step.close()  # the global part needs no model: free them before it
    report.summary = step.finish(table)
    report.seconds = time.perf_counter() - started
    return report


@contextlib.contextmanager
def _exit_on_interrupt() -> Iterator[None]:
    """While models load, Ctrl-C exits at once: nothing is written yet, and a KeyboardInterrupt raised
    inside a native extension's import aborts the process instead of unwinding."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: Any) -> None:
        sys.stderr.write("\ninterrupted while loading models: nothing was written; rerun to start\n")
        os._exit(130)

    previous = signal.signal(signal.SIGINT, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Committer:
    """Buffers finished rows and commits them every `commit_rows` rows or `commit_seconds`.

    Each commit rewrites the touched fragments' copy of the step's columns, so committing every
    small batch would write far more than the columns hold; a crash loses at most one window.
    """

    def __init__(self, table: Table, step: Step, opts: RunOptions, report: StepReport) -> None:
        self.table, self.step, self.opts, self.report = table, step, opts, report
        self.rows: list[dict[str, Any]] = []
        self.last = time.monotonic()

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Buffer rows; commit when the window is full."""
        self.rows.extend(rows)
        if (
            len(self.rows) >= self.opts.commit_rows
            or time.monotonic() - self.last >= self.opts.commit_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Commit whatever is buffered."""
        if self.rows:
            self.table.write_back(_results_table(self.step, self.rows))
            for r in self.rows:
                self.report.count(r[self.step.status])
            self.rows = []
        self.last = time.monotonic()


# Settings that change how a step runs, not what it writes: a change makes no row stale.
OPERATIONAL_SETTINGS = frozenset(
    {"concurrency", "base_url", "api_key_env", "max_retries", "trust_remote_code", "all_rows", "device"}
)


def _changed_settings(table: Table, step: Step) -> dict[str, tuple[Any, Any]]:
    """Parameters that differ from the last recorded run: rows done then are stale (see --redo)."""
    last = table.metadata().get(f"provenance.{step.name}", {}).get("params", {})
    now = json.loads(json.dumps(step.provenance(), default=str))  # as stored: tuples become lists
    return {
        k: (last.get(k), v)
        for k, v in now.items()
        if k in last and last[k] != v and not isinstance(v, dict) and k not in OPERATIONAL_SETTINGS
    }


def _reset(table: Table, step: Step) -> None:
    """Set the step's status back to NULL on every row so all of them are redone (resumably)."""
    status = status_column(step.name).field()
    ids: list[str] = []
    for batch in table.scan(["id"], f"{step.status} IS NOT NULL", batch_size=65_536):
        ids.extend(batch.column("id").to_pylist())
    table.write_back(pa.table({"id": ids, status.name: pa.nulls(len(ids), pa.string())}))


def _record_provenance(table: Table, step: Step, rows: int) -> None:
    table.set_metadata(
        f"provenance.{step.name}",
        {
            "vl_version": __version__,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "params": step.provenance(),
            "rows": rows,
        },
    )


def _finish(table: Table, step: Step, report: StepReport) -> None:
    _record_provenance(table, step, report.processed)
    table.cleanup()
    report.tag = table.tag(step.name)
