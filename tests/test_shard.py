"""`--shard K/N`: a process takes only whole fragments of its shard and does none of the once-only work."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from conftest import jpeg_bytes, table_rows
from fake_steps import DigestStep
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.errors import UsageError
from vlcli.steps.base import RunOptions, Shard, Summary
from vlcli.steps.runner import parse_gpus, run_step, scale_options
from vlcli.table.schema import ingest_schema
from vlcli.table.storage import Table

runner = CliRunner()


class FinishingDigest(DigestStep):
    """A digest step whose global part leaves a mark on the table."""

    def finish(self, table: Table) -> Summary | None:
        table.set_metadata("digest_finishes", table.metadata().get("digest_finishes", 0) + 1)
        return None


def fragmented(path: Path, fragments: int = 4, per_fragment: int = 5) -> Table:
    """A table whose rows sit in `fragments` fragments (one per append)."""
    table = Table.create(path, ingest_schema())
    for f in range(fragments):
        table.append(table_rows([jpeg_bytes(f * per_fragment + i) for i in range(per_fragment)]))
    return table


def columns(table: Table) -> dict[str, tuple[object, ...]]:
    table.refresh()
    rows = table.lazy().select("id", "digest_sha1", "digest_pixels", "digest_status").collect().sort("id")
    return {name: tuple(rows[name].to_list()) for name in rows.columns}


def test_shards_together_equal_one_run_and_each_takes_whole_fragments(tmp_path: Path) -> None:
    whole = fragmented(tmp_path / "whole.lance")
    run_step(whole, FinishingDigest(), RunOptions(workers=1))

    split = fragmented(tmp_path / "split.lance")
    run_step(split, FinishingDigest(), RunOptions(limit=0))  # the once-only part: columns
    logs = [tmp_path / f"shard{k}.log" for k in range(2)]
    for k in range(2):
        report = run_step(split, FinishingDigest(log=str(logs[k])), RunOptions(workers=1, shard=Shard(k, 2)))
        assert report.done == 10 and report.summary is None
    assert columns(split) == columns(whole)
    taken = [set(log.read_text().split()) for log in logs]
    assert not taken[0] & taken[1] and len(taken[0] | taken[1]) == 20
    ids_by_fragment = [
        set(pa.concat_arrays(list(f.to_table(columns=["id"]).column("id").chunks)).to_pylist())
        for f in split._ds.get_fragments()
    ]
    for ids in taken:  # each shard took whole fragments only
        assert all(frag <= ids or not frag & ids for frag in ids_by_fragment)


def test_a_shard_does_no_once_only_work(tmp_path: Path) -> None:
    table = fragmented(tmp_path / "t.lance")
    run_step(table, FinishingDigest(), RunOptions(limit=0))  # adds the columns, runs the global part
    tags_before = dict(table.tags())
    run_step(table, FinishingDigest(), RunOptions(shard=Shard(0, 2)))
    table.refresh()
    meta = table.metadata()
    assert meta["digest_finishes"] == 1 and "provenance.digest" not in meta
    assert dict(table.tags()) == tags_before
    # the unsharded run afterwards does the rest: the other shard's rows, provenance, the global part
    report = run_step(table, FinishingDigest())
    assert report.done == 10
    table.refresh()
    assert table.metadata()["digest_finishes"] == 2 and "provenance.digest" in table.metadata()


def test_a_shard_on_a_table_without_the_columns_says_how_to_add_them(tmp_path: Path) -> None:
    table = fragmented(tmp_path / "t.lance")
    with pytest.raises(UsageError, match=r"--limit 0.*without --shard"):
        run_step(table, DigestStep(), RunOptions(shard=Shard(1, 2)))
    assert "digest_status" not in table.schema.names


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/2", "0/0", "1/2/3"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="K/N"):
        Shard.parse(text)


def test_scale_flags_are_checked_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_gpus("0, 1") == ("0", "1")
    with pytest.raises(UsageError, match="distinct device ids"):
        parse_gpus("0,0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(UsageError, match=r"no GPU found.*--procs"):
        parse_gpus("all")
    with pytest.raises(UsageError, match="go with --engine ray"):
        scale_options(None, 1, None, "local", "auto", None)
    with pytest.raises(UsageError, match="leave out --procs"):
        RunOptions(**scale_options("0/2", 2, None, "local", None, None))
    with pytest.raises(UsageError, match="leave out --procs and --gpus"):
        RunOptions(**scale_options(None, 2, None, "ray", None, None))


def test_the_cli_refuses_a_bad_shard_in_one_line(tmp_path: Path) -> None:
    fragmented(tmp_path / "t.lance")
    result = runner.invoke(app, ["filter", str(tmp_path / "t.lance"), "--nsfw", "none", "--shard", "2/2"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "K/N" in result.output


def test_the_cli_runs_one_shard_then_the_rest(tmp_path: Path) -> None:
    table = fragmented(tmp_path / "t.lance")
    path = str(tmp_path / "t.lance")
    assert runner.invoke(app, ["filter", path, "--nsfw", "none", "--limit", "0", "-q"]).exit_code == 0
    result = runner.invoke(app, ["filter", path, "--nsfw", "none", "--shard", "0/2", "-q"])
    assert result.exit_code == 0, result.output
    table.refresh()
    assert table.count("filter_status IS NOT NULL") == 10
    assert table.count("filter_keep IS NOT NULL") == 0  # the global part waits for the unsharded run
    assert runner.invoke(app, ["filter", path, "--nsfw", "none", "-q"]).exit_code == 0
    table.refresh()
    assert table.count("filter_status IS NOT NULL") == 20 and table.count("filter_keep IS NOT NULL") == 20
