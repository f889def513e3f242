"""Loading Hugging Face transformers checkpoints, the same way for every backend that uses them.

A checkpoint is checked against the hub once (an unreachable hub fails in seconds, a cached model loads
from the cache), each part loads through one call whose failure is one `ModelLoadError` line, and
`in_batches` is the loop that bounds how many items go through the model at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from vlcli.backends.base import require
from vlcli.errors import ModelLoadError
from vlcli.hub import before_hf_load

T = TypeVar("T")
R = TypeVar("R")


class Checkpoint:
    """A transformers checkpoint (hub id or folder) whose config, processor and model load by class name."""

    def __init__(
        self, model: str, revision: str | None = None, trust_remote_code: bool = False, flag: str = "--model"
    ) -> None:
        self.transformers = require("transformers")
        self.transformers.utils.logging.disable_progress_bar()  # its per-shard loading bar is noise in a CLI
        self.model = model
        self.revision = revision
        self.trust_remote_code = trust_remote_code
        before_hf_load(model, revision, flag)

    def load(self, auto_class: str, what: str, **kwargs: Any) -> Any:
        """`transformers.<auto_class>.from_pretrained(model)`; a failure names `what` did not load."""
        try:
            return getattr(self.transformers, auto_class).from_pretrained(
                self.model, revision=self.revision, trust_remote_code=self.trust_remote_code, **kwargs
            )
        except Exception as exc:
            raise ModelLoadError.wrap(what, self.model, exc) from exc


def in_batches(run: Callable[[list[T]], list[R]], items: Sequence[T], size: int) -> list[R]:
    """`run` over consecutive chunks of at most `size` items, the results joined in input order."""
    out: list[R] = []
    for start in range(0, len(items), size):
        out.extend(run(list(items[start : start + size])))
    return out
