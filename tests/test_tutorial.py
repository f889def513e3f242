"""docs/tutorial.md: every console block runs as printed, in order, offline, and its sample output is what
the commands print now (timings, dates and sizes aside)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlcli.cli.tutorial import TUTORIAL, _home, commands, render, scratch, volatile
from vlcli.errors import UsageError


@pytest.mark.timeout(900)  # the whole demo on its default 48 images: about a minute, more on a busy machine
def test_sample_output_is_current() -> None:
    doc = TUTORIAL.read_text()
    assert "```console\n$ vl demo\n" in doc and doc.count("```console") >= 4  # the sessions are there
    with scratch() as folder:
        fresh = render(doc, folder)  # raises if a command fails
    assert volatile(fresh) == volatile(doc), "run: python -m vlcli.cli.tutorial"


def test_commands_continue_lines_and_drop_comments() -> None:
    block = ["$ vl run a b \\", "      --set x=1   # why", "sample output", '$ vl query t "SELECT 1"']
    parsed = commands(block)
    assert [c.argv for c in parsed] == [["run", "a", "b", "--set", "x=1"], ["query", "t", "SELECT 1"]]
    assert parsed[0].lines == block[:2]
    with pytest.raises(UsageError, match="only vl commands"):
        commands(["$ rm -rf x"])


def test_the_scratch_folder_is_shown_as_home_keeping_columns() -> None:
    folder = Path("/tmp/a-long-scratch-folder")
    row = f" {folder}/data/x.jpg  error: truncated"
    shown = _home(row, folder)
    assert shown == " /home/you/data/x.jpg" + " " * (len(str(folder)) - 9 + 2) + "error: truncated"
    assert shown.index("error") == row.index("error")
    assert _home(f"source {folder}/data, seen 4", folder) == "source /home/you/data, seen 4"


def test_volatile_masks_what_changes_between_runs() -> None:
    one = "done in 1.5s (3.0 rows/s); 2.1 MB on disk, version 26 (17 table versions kept); crop-v11"
    two = "done in 12.0s (0.3 rows/s); 2.2 MB on disk, version 27 (18 table versions kept); crop-v12"
    assert volatile(one) == volatile(two)
    assert volatile("45 of 80 items valid") != volatile("28 of 80 items valid")
