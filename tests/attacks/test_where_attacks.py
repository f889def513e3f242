"""`--where` under attack: one condition, parsed once, that cannot escape what it is combined with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.cli.reference import commands
from vlcli.errors import QueryError
from vlcli.exports.export import row_filter
from vlcli.table.predicate import conjoin, parse_where
from vlcli.table.storage import Table

GOOD_ROWS = 6


@pytest.fixture
def table(make_table: Callable[..., Table]) -> Table:
    """Six good rows and two whose ingest failed (no image)."""
    t = make_table(GOOD_ROWS)
    t.append(
        pa.table(
            {
                "id": ["bad1", "bad2"],
                "source": ["mem://bad1", "mem://bad2"],
                "ingest_status": ["error: not an image", "error: truncated"],
            }
        )
    )
    return t


# Each command that takes --where, with the arguments it needs besides the table and --where.
WHERE_COMMANDS: dict[str, Callable[[Path], list[str]]] = {
    "export": lambda out: ["--parquet", str(out / "export")],
    "show": lambda out: ["--out", str(out / "review.html")],
}

ATTACKS = [
    ("1=1; DROP TABLE images", "remove the ';'"),
    ("format = 'JPEG'; SELECT 1", "remove the ';'"),
    ("1=1) OR (1=1", "a ')' closes a parenthesis that was never opened"),
    ("(format = 'JPEG'", "unclosed '('"),
    ("format = 'JPEG' LIMIT 1", "LIMIT is not part of a condition"),
    ("format = 'JPEG' ORDER BY id", "ORDER BY is not part of a condition"),
    ("1=1 -- ) OR (1=1", "comments"),
    ("format = 'JPEG", "unterminated string"),
    ("format = $$JPEG$$", "'$' is not supported"),  # Lance's planner panics on these
    ("format = N'JPEG'", "prefixed strings"),
]


def test_every_command_with_where_is_covered() -> None:
    with_where = {
        name
        for name, command in commands().items()
        if any("--where" in getattr(p, "opts", []) for p in command.params)
    }
    assert with_where == set(WHERE_COMMANDS)


@pytest.mark.parametrize("name", sorted(WHERE_COMMANDS))
@pytest.mark.parametrize(("where", "message"), ATTACKS)
def test_commands_reject_what_is_not_one_condition(
    table: Table, tmp_path: Path, name: str, where: str, message: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(app, [name, table.path, "--where", where, *WHERE_COMMANDS[name](out)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--where" in lines[0] and message in lines[0], result.stderr
    assert not any(out.iterdir())  # nothing written


def test_show_does_not_drop_text_after_a_semicolon(table: Table, tmp_path: Path) -> None:
    out = tmp_path / "review.html"
    result = CliRunner().invoke(
        app, ["show", table.path, "--where", "1=1; DROP TABLE images", "-o", str(out)]
    )
    assert result.exit_code == 1 and "one condition only" in result.stderr
    assert not out.exists()
    ok = CliRunner().invoke(app, ["show", table.path, "--where", "ingest_status = 'ok'", "-o", str(out)])
    assert ok.exit_code == 0, ok.output
    assert f"of {GOOD_ROWS} selected rows" in ok.output


def test_export_where_cannot_reach_failed_ingest_rows(table: Table, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="never opened"):
        row_filter("1=1) OR (1=1")
    assert table.count(row_filter("1=1")) == GOOD_ROWS
    assert table.count(row_filter("source LIKE 'mem://bad%' OR 1=1")) == GOOD_ROWS
    # for Lance a backslash escapes nothing: the string ends at "x\\'" and the ')' after it is code
    with pytest.raises(QueryError, match="never opened"):
        row_filter("source = 'x\\' ) OR ( 1=1 OR source = '")
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", table.path, "--parquet", str(out), "--where", "1=1) OR (1=1"])
    assert result.exit_code == 1 and not out.exists()
    result = CliRunner().invoke(app, ["export", table.path, "--parquet", str(out), "--where", "1=1"])
    assert result.exit_code == 0, result.output
    assert f"exported {GOOD_ROWS} rows" in result.output


@pytest.mark.parametrize(
    "where",
    [
        "dataset = 'test' OR format = 'PNG'",
        "source = 'a;b' OR source LIKE '%(%' OR source = 'it''s'",
        "source LIKE '%#%' OR \"format\" = 'PNG'",
        "width IN (64, 65) AND NOT (height < 10)",
        "source = 'x\\' OR source LIKE '%\\' OR source = '(\\'",
    ],
)
def test_a_checked_condition_stays_inside_its_parentheses(table: Table, where: str) -> None:
    condition = parse_where(where)
    assert condition is not None
    # if the text escaped its parentheses, `(false) AND (text)` could match rows
    assert table.count(conjoin("false", condition)) == 0
    assert table.count(conjoin(condition)) == table.count(f"({where})")


def test_lance_reads_quotes_as_the_check_does(table: Table) -> None:
    # a backslash escapes nothing and '' is a quote: if Lance changes that, the check must change too
    assert table.count("source = 'x\\' OR source = 'it''s'") == 0
    with pytest.raises(QueryError, match="Unterminated string"):
        table.count("source = 'x\\' OR 1=1 OR source = '")
    with pytest.raises(QueryError, match="unterminated string"):
        parse_where("source = 'x\\' OR 1=1 OR source = '")


def test_empty_where_means_no_condition() -> None:
    assert parse_where("   ") is None and parse_where(None) is None
    assert row_filter("  ") == "ingest_status = 'ok'"
    assert conjoin("a = 1", None, parse_where("b = 2 OR c = 3")) == "(a = 1) AND (b = 2 OR c = 3)"
