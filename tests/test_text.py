"""The one helper that flattens and cuts texts, and the one that takes an exception's first line."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vlcli.errors import ModelLoadError
from vlcli.images import ImageProblem
from vlcli.steps.base import error_status
from vlcli.text import MAX_REASON_CHARS, first_line, one_line


@given(st.text(), st.integers(min_value=1, max_value=400))
def test_one_line_is_one_line_within_the_limit(text: str, limit: int) -> None:
    out = one_line(text, limit)
    flat = " ".join(text.split())
    assert len(out) <= limit and "\n" not in out and "  " not in out
    assert out == flat if len(flat) <= limit else (out.endswith("…") and flat.startswith(out[:-1]))


def test_first_line_falls_back_to_the_type_name() -> None:
    assert first_line(ValueError("  bad thing\nstack trace\n")) == "bad thing"
    assert first_line(KeyError()) == "KeyError"


def test_stored_reasons_and_load_errors_use_the_shared_helpers() -> None:
    long = "why\n" + "x" * 1000
    assert error_status(ImageProblem(long)) == "error: " + one_line(long)
    assert len(error_status(ImageProblem(long))) == len("error: ") + MAX_REASON_CHARS
    message = str(ModelLoadError.wrap("model", "m", OSError("")))
    assert "'m': OSError (check" in message
