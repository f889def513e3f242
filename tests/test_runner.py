"""The step runner: columns written, errors as data, fallback, limits, retries, pools, provenance."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pyarrow as pa
import pytest
from fake_steps import DigestStep, SkipOddStep

from vlcli.errors import StepInterrupted, UsageError
from vlcli.steps.base import RunOptions, Step, reason_key
from vlcli.steps.filter.step import KEPT
from vlcli.steps.runner import run_step
from vlcli.table.schema import FILTER_KEEP
from vlcli.table.storage import Table


def _column(table: Table, name: str, where: str | None = None) -> dict[str, object]:
    data = table.to_arrow(list(dict.fromkeys(["id", name])), where)
    return dict(zip(data.column("id").to_pylist(), data.column(name).to_pylist(), strict=False))


def test_step_fills_exactly_its_columns(make_table: Callable[..., Table]) -> None:
    table = make_table(12)
    before = set(table.schema.names)
    report = run_step(table, DigestStep(), RunOptions(batch_size=5, workers=2))
    assert set(table.schema.names) - before == {"digest_sha1", "digest_pixels", "digest_status"}
    assert (report.done, report.errors, report.skipped, report.pending) == (12, 0, 0, 12)
    images = table.to_arrow(["id", "image", "digest_sha1", "digest_pixels", "digest_status"])
    for row in images.to_pylist():
        assert row["digest_sha1"] == hashlib.sha1(row["image"]).hexdigest()
        assert row["digest_pixels"] == 64 * 48
        assert row["digest_status"] == "ok"


def test_rerun_does_nothing_and_records_provenance(make_table: Callable[..., Table]) -> None:
    table = make_table(6)
    run_step(table, DigestStep())
    again = run_step(table, DigestStep())
    assert again.pending == 0 and again.processed == 0
    assert table.metadata()["provenance.digest"]["rows"] == 6
    assert any(tag.startswith("digest-v") for tag in table.tags())


def test_bad_rows_get_error_status_and_neighbours_succeed(make_table: Callable[..., Table]) -> None:
    table = make_table(10)
    ids = sorted(_column(table, "id"))
    corrupt, poisoned = ids[0], ids[1]
    table.write_back(pa.table({"id": [corrupt], "image": [b"not an image at all"]}))
    report = run_step(table, DigestStep(fail_ids=frozenset({poisoned})), RunOptions(batch_size=10))
    status = _column(table, "digest_status")
    assert status[corrupt].startswith("error: ") and "not an image" in status[corrupt]
    assert status[poisoned] == f"error: ValueError: poisoned row {poisoned}"
    assert [s for i, s in status.items() if i not in (corrupt, poisoned)] == ["ok"] * 8
    assert report.errors == 2 and report.done == 8
    assert _column(table, "digest_sha1")[poisoned] is None


def test_skipped_rows_and_reason_counts(make_table: Callable[..., Table]) -> None:
    table = make_table(16)
    report = run_step(table, SkipOddStep())
    odd = sum(int(i[-1], 16) % 2 for i in _column(table, "id"))
    assert report.skipped == odd and report.reasons == {"skipped: odd id": odd}
    assert table.count("parity_status = 'skipped: odd id'") == odd


def test_limit_then_resume_covers_every_row_once(make_table: Callable[..., Table], tmp_path) -> None:
    table = make_table(15)
    log = tmp_path / "log.txt"
    first = run_step(table, DigestStep(log=str(log)), RunOptions(batch_size=4, limit=6))
    assert first.processed == 6 and table.count("digest_status IS NULL") == 9
    run_step(table, DigestStep(log=str(log)), RunOptions(batch_size=4))
    logged = log.read_text().split()
    assert sorted(logged) == sorted(_column(table, "id")) and len(set(logged)) == 15


def test_retry_errors_redoes_only_error_rows(make_table: Callable[..., Table], tmp_path) -> None:
    table = make_table(8)
    poisoned = sorted(_column(table, "id"))[3]
    run_step(table, DigestStep(fail_ids=frozenset({poisoned})))
    log = tmp_path / "log.txt"
    assert run_step(table, DigestStep(log=str(log))).processed == 0
    report = run_step(table, DigestStep(log=str(log)), RunOptions(retry_errors=True))
    assert report.done == 1 and log.read_text().split() == [poisoned]
    assert table.count("digest_status = 'ok'") == 8


def test_rows_failing_the_prerequisite_are_not_pending(make_table: Callable[..., Table]) -> None:
    table = make_table(5)
    victim = sorted(_column(table, "id"))[0]
    table.write_back(pa.table({"id": [victim], "ingest_status": ["error: empty file"], "image": [None]}))
    report = run_step(table, DigestStep())
    assert report.pending == 4 and _column(table, "digest_status")[victim] is None


def test_process_pool_gives_the_same_columns(make_table: Callable[..., Table]) -> None:
    threads, processes = make_table(9, "a.lance"), make_table(9, "b.lance")
    run_step(threads, DigestStep(), RunOptions(batch_size=4, workers=2, pool="thread"))
    run_step(processes, DigestStep(), RunOptions(batch_size=4, workers=2, pool="process"))
    assert _column(threads, "digest_sha1") == _column(processes, "digest_sha1")


def test_ctrl_c_keeps_committed_batches(make_table: Callable[..., Table]) -> None:
    table = make_table(12)

    class Interrupting(DigestStep):
        calls = 0

        def process(self, items):  # type: ignore[no-untyped-def]
            Interrupting.calls += 1
            if Interrupting.calls == 3:
                raise KeyboardInterrupt
            return super().process(items)

    with pytest.raises(StepInterrupted) as caught:
        run_step(table, Interrupting(), RunOptions(batch_size=4, commit_rows=100))
    assert "rerun the same command" in str(caught.value)
    assert caught.value.report.processed == 8  # type: ignore[attr-defined]
    assert table.count("digest_status = 'ok'") == 8
    assert run_step(table, DigestStep()).processed == 4


def test_wrong_result_count_falls_back_per_row(make_table: Callable[..., Table]) -> None:
    class Short(Step):
        name = "short"

        def process(self, items):  # type: ignore[no-untyped-def]
            return [{}]  # one result whatever the batch size: wrong for batches of 2+

    table = make_table(3)
    report = run_step(table, Short(), RunOptions(batch_size=3))
    assert report.done == 3


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="--batch-size"):
        RunOptions(batch_size=0)
    with pytest.raises(UsageError, match="--workers"):
        RunOptions(workers=0)


def test_reason_key_drops_row_details() -> None:
    assert reason_key("error: cannot decode (OSError: broken data stream)") == "error: cannot decode"
    assert reason_key("error: too many pixels: 9x9 = 81 > max 10") == "error: too many pixels"
    assert reason_key("skipped: odd id") == "skipped: odd id"


def test_redo_recomputes_every_row(make_table: Callable[..., Table], tmp_path) -> None:
    table = make_table(7)
    run_step(table, DigestStep())
    log = tmp_path / "log.txt"
    report = run_step(table, DigestStep(log=str(log)), RunOptions(redo=True, batch_size=3))
    assert report.done == 7 and len(log.read_text().split()) == 7


def test_changed_settings_are_reported(make_table: Callable[..., Table]) -> None:
    class Tunable(SkipOddStep):
        def __init__(self, level: int) -> None:
            self.level = level

        def provenance(self):  # type: ignore[no-untyped-def]
            return {"level": self.level}

    table = make_table(4)
    assert run_step(table, Tunable(1)).changed_settings == {}
    assert run_step(table, Tunable(2)).changed_settings == {"level": (1, 2)}


def test_steps_after_the_filter_skip_rejected_rows(make_table: Callable[..., Table]) -> None:
    class AfterFilter(SkipOddStep):
        name = "after"
        prerequisites = (KEPT,)

        def prepare(self, row):  # type: ignore[no-untyped-def]
            return row["id"]

    table = make_table(6)
    ids = sorted(_column(table, "id"))
    table.ensure_columns([FILTER_KEEP.field()])
    table.write_back(pa.table({"id": ids[:2], "filter_keep": [False, True]}))
    report = run_step(table, AfterFilter())
    assert report.done == 5 and _column(table, "after_status")[ids[0]] is None
