"""A vl Notice (e.g. OCR on the CPU although a GPU is present) reaches the terminal as one `note:` line."""

from __future__ import annotations

import warnings

import pytest

from vlcli.backends.ocr import DeviceNotice
from vlcli.cli.common import handles_errors


def test_a_notice_is_one_note_line_and_other_warnings_are_untouched(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @handles_errors
    def command() -> None:
        warnings.warn("OCR runs on the CPU", DeviceNotice, stacklevel=1)

    command()
    assert capsys.readouterr().err.strip() == "note: OCR runs on the CPU"

    @handles_errors
    def other() -> None:
        warnings.warn("something else", RuntimeWarning, stacklevel=1)

    with pytest.warns(RuntimeWarning, match="something else"):  # shown as Python shows it, not as a note
        other()
    assert "note:" not in capsys.readouterr().err
