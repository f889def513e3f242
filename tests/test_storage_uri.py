"""Tables named by Lance URIs: `file://` and plain paths agree, URIs are never mangled into local paths,
a table pickles into another process, and `--storage-option KEY=VALUE` reaches Lance."""

from __future__ import annotations

import multiprocessing
import operator
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import jpeg_bytes, table_rows
from fake_steps import DigestStep
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.errors import TableNotFoundError, UsageError
from vlcli.steps.base import RunOptions
from vlcli.steps.runner import run_step
from vlcli.table.query import query
from vlcli.table.schema import ingest_schema
from vlcli.table.storage import (
    Table,
    local_path,
    parse_storage_option,
    set_default_storage_options,
    table_exists,
)

runner = CliRunner()
# A dead endpoint, explicit credentials (no metadata-service lookup) and no retries: fails in seconds.
BOGUS_S3 = {
    "aws_endpoint": "http://127.0.0.1:9",
    "allow_http": "true",
    "aws_access_key_id": "test",
    "aws_secret_access_key": "test",
    "aws_region": "us-east-1",
    "client_max_retries": "0",
}


@pytest.fixture(autouse=True)
def no_default_options() -> Iterator[None]:
    """`--storage-option` sets process-wide defaults: leave none behind for other tests."""
    yield
    set_default_storage_options({})


def build(uri: str) -> Table:
    table = Table.create(uri, ingest_schema())
    table.append(table_rows([jpeg_bytes(i) for i in range(12)]))
    return table


def test_a_file_uri_and_a_plain_path_give_the_same_table(tmp_path: Path) -> None:
    results = []
    for uri in (str(tmp_path / "plain.lance"), (tmp_path / "uri.lance").as_uri()):
        build(uri)
        table = Table.open(uri)
        report = run_step(table, DigestStep(), RunOptions(workers=1))
        assert report.done == 12
        sql = "SELECT id, digest_sha1, digest_pixels FROM images ORDER BY id"
        results.append(query(Table.open(uri), sql).rows())
        assert table_exists(uri) and table.local_path == str(tmp_path / Path(uri).name)
        assert table.size_on_disk() > sum(len(jpeg_bytes(i)) for i in range(12))
    assert results[0] == results[1] and len(results[0]) == 12


def test_commands_take_a_file_uri(tmp_path: Path) -> None:
    uri = (tmp_path / "t.lance").as_uri()
    build(uri)
    result = runner.invoke(app, ["status", uri])
    assert result.exit_code == 0, result.output
    assert "12 rows" in result.output and uri in result.output


def test_a_table_pickles_into_a_spawned_process_at_its_version(tmp_path: Path) -> None:
    uri = (tmp_path / "t.lance").as_uri()
    build(uri)
    table = Table.open(uri, {"timeout": "60s"})
    pinned = table.snapshot()
    table.append(table_rows([jpeg_bytes(100 + i) for i in range(3)]))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        counts = pool.map(operator.methodcaller("count"), [pinned, table])
        options = pool.apply(operator.attrgetter("storage_options"), (pinned,))
    assert counts == [12, 15]
    assert options == {"timeout": "60s"}


def test_object_storage_uris_are_not_mangled_into_local_paths() -> None:
    uri = "s3://bucket/t.lance"
    assert local_path(uri) is None
    with pytest.raises(TableNotFoundError) as caught:
        Table.open(uri, BOGUS_S3)
    message = str(caught.value)
    assert f"{uri!r}" in message and "\n" not in message
    assert "127.0.0.1:9" in message  # Lance was asked, with the options: not a local `s3:/bucket` folder


def test_storage_options_on_the_command_line_reach_lance() -> None:
    options = [arg for key, value in BOGUS_S3.items() for arg in ("--storage-option", f"{key}={value}")]
    result = runner.invoke(app, [*options, "status", "s3://bucket/t.lance"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "'s3://bucket/t.lance'" in result.stderr and "127.0.0.1:9" in result.stderr


def test_a_storage_option_without_equals_is_a_usage_error(tmp_path: Path) -> None:
    assert parse_storage_option("region=us-east-1") == ("region", "us-east-1")
    assert parse_storage_option("token=a=b") == ("token", "a=b")
    with pytest.raises(UsageError):
        parse_storage_option("region")
    result = runner.invoke(app, ["--storage-option", "region", "status", str(tmp_path / "t.lance")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "KEY=VALUE" in result.stderr
