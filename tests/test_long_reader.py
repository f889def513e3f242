"""A reader pinned to a version (a long export, a review page, a worker's snapshot) survives a concurrent
step's whole run and its end, cleanup included: steps keep versions younger than the retention window."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from fake_steps import DigestStep

from vlcli.steps.base import RunOptions
from vlcli.steps.runner import run_step
from vlcli.table.storage import KEEP_VERSIONS_ENV, Table


class PinningDigest(DigestStep):
    """A digest step that calls `on_batch` before each batch, so a test can act mid-run."""

    def __init__(self, on_batch: Callable[[int], None]) -> None:
        super().__init__()
        self.on_batch = on_batch
        self.batches = 0

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        self.on_batch(self.batches)
        self.batches += 1
        return super().process(items)


def pin_mid_run(table: Table) -> pa.Table | BaseException:
    """Run the digest step over `table` (a commit every 5 rows); after two commits a reader thread opens
    the table (so it pins that untagged, half-done version) and reads it only once the run has ended,
    by then the later commits have rewritten the same fragment's digest files and the run has cleaned up."""
    pinned, ended = threading.Event(), threading.Event()
    result: dict[str, pa.Table | BaseException] = {}
    threads: list[threading.Thread] = []

    def reader() -> None:
        snapshot = Table.open(table.path)
        pinned.set()
        ended.wait(timeout=60)
        try:
            result["rows"] = snapshot.to_arrow(["id", "digest_sha1"])
        except Exception as exc:  # handed to the test's thread
            result["rows"] = exc

    def on_batch(n: int) -> None:
        if n == 2:
            threads.append(threading.Thread(target=reader))
            threads[0].start()
            pinned.wait(timeout=60)

    try:
        run_step(table, PinningDigest(on_batch), RunOptions(workers=1, batch_size=5, commit_rows=5))
    finally:
        ended.set()
    for thread in threads:
        thread.join(timeout=60)
    return result["rows"]


def test_a_pinned_reader_survives_a_concurrent_step_and_its_cleanup(
    make_table: Callable[..., Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEEP_VERSIONS_ENV, raising=False)  # the default window
    table = make_table(20)
    rows = pin_mid_run(table)
    assert isinstance(rows, pa.Table), rows
    assert rows.num_rows == 20
    assert rows["digest_sha1"].null_count == 10  # the pinned version: two commits of five rows
    table.refresh()
    assert table.count("digest_sha1 IS NULL") == 0


def test_cleaning_every_old_version_breaks_the_pinned_reader(
    make_table: Callable[..., Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the window exists: with none (as the old 30-second cleanup did to versions that old), the
    reader's version is cleaned and it fails with `Not found`."""
    monkeypatch.setenv(KEEP_VERSIONS_ENV, "0s")
    table = make_table(20)
    rows = pin_mid_run(table)
    assert isinstance(rows, BaseException)
    assert "not found" in str(rows).lower()
