"""The in-process engine: read pending rows, prepare them in a pool ahead of the model, process them in
batches and commit them in windows. Every other engine runs this one per worker."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from vlcli.steps.base import Progress, RunOptions, Step, StepReport
from vlcli.steps.rows import Chunk, Committer, Prepared, commit_all, prepare_chunk, process_prepared
from vlcli.table.storage import Table

CHUNK_ROWS = 4  # rows per prepare task: few, so the bytes of prepared rows in flight are bounded finely


def run_rows(
    table: Table, step: Step, opts: RunOptions, where: str, report: StepReport, progress: Progress | None
) -> None:
    """The per-row part in this process: load the models, then prepare, process and commit every row
    matching `where` (at most `opts.limit`); Ctrl-C keeps what was committed."""
    with _exit_on_interrupt():
        step.setup()
    return_freed_memory()
    optional = [c for c in step.optional_reads if c in table.schema.names]
    columns = list(dict.fromkeys(["id", *step.reads, *optional]))
    # The scan reads one pinned version while the commits below add new ones.
    batches = table.snapshot().scan(columns, where, batch_size=opts.batch_size, limit=opts.limit or None)
    pool = _make_pool(opts)
    prefetcher = _Prefetcher(batches, step, pool, opts)
    try:
        results = (process_prepared(step, prepared) for prepared in prefetcher)
        commit_all(results, Committer(table, step, opts, report), progress)
    finally:
        prefetcher.close()
        pool.shutdown(wait=False, cancel_futures=True)


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


@dataclass
class _Batch:
    chunks: list[Future[Chunk]] = field(default_factory=list)
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
                    future = pool.submit(prepare_chunk, step, chunk)
                    cut.chunks.append(future)
                    future.add_done_callback(functools.partial(self._finished, cut, len(chunk)))
                if cut.chunks and not self._put(cut):
                    return
        except BaseException as exc:  # surfaced in the consumer thread
            self._error = exc
        finally:
            self._put_end()

    def _finished(self, batch: _Batch, rows: int, future: Future[Chunk]) -> None:
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

    def __iter__(self) -> Iterator[list[Prepared]]:
        while True:
            item = self._queue.get()
            if item is self._END:
                if self._error is not None:
                    raise self._error
                return
            part: Chunk = []
            part_bytes = 0
            for future in item.chunks:
                for row in future.result():
                    if part and part_bytes + row[1] > self._share:
                        yield from self._hand(part)
                        part, part_bytes = [], 0
                    part.append(row)
                    part_bytes += row[1]
            yield from self._hand(part)

    def _hand(self, part: Chunk) -> Iterator[list[Prepared]]:
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


def _make_pool(opts: RunOptions) -> Executor:
    if opts.pool == "process":
        # Lance's runtime is not fork-safe: workers start fresh and receive the step by pickle.
        return ProcessPoolExecutor(max_workers=opts.workers, mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="vl-prepare")


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
