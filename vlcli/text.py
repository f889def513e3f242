"""Short texts for messages and stored reasons: one line, cut to a length."""

from __future__ import annotations

# The longest reason a status column or report keeps: enough to say why, short enough to group by.
MAX_REASON_CHARS = 300


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` on one line (each run of whitespace one space), cut to `limit` characters ending in '…'."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)] + "…"


def first_line(exc: BaseException) -> str:
    """The first line of `exc`'s message, or its type's name when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
