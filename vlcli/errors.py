"""Domain exceptions; the CLI turns each into one line on stderr and an exit code."""

from __future__ import annotations

from vlcli.text import first_line


class RowSkipped(Exception):
    """A row a step deliberately does not process; stored as `skipped: <message>`, not an error."""


class VlError(Exception):
    """Base class for every error `vl` reports to a user."""

    exit_code = 1


class TableNotFoundError(VlError):
    """The table path holds no Lance dataset."""


class TableExistsError(VlError):
    """A table was to be created where one already exists."""


class TableWriteError(VlError):
    """The table (or an output folder) cannot be written: read-only, deleted during the run, or full."""


class DuplicateIdsError(VlError):
    """The table holds several rows with one id; `vl repair` removes the extra copies."""


class SourceError(VlError):
    """An ingest source cannot be read or understood."""


class QueryError(VlError):
    """A SQL query or predicate is invalid."""


class ExportError(VlError):
    """An export target or option is invalid."""


class UsageError(VlError):
    """A bad option value; the message names the option to change."""

    exit_code = 2


class ModelLoadError(VlError):
    """A model or its processor could not be loaded."""

    @classmethod
    def wrap(cls, what: str, model: str, exc: BaseException) -> ModelLoadError:
        """One line naming what failed to load, the first line of why, and how to fix it."""
        return cls(
            f"cannot load {what} {model!r}: {first_line(exc)} (check the name or path; offline, the model must already "
            "be in the Hugging Face cache)"
        )


class MissingDependencyError(VlError):
    """An optional library is needed; the message names the extra to install."""


class StepInterrupted(VlError):
    """A step stopped on Ctrl-C after committing what it had finished."""

    exit_code = 130

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class WorkerFailed(VlError):
    """A worker process of a step run failed or was killed; what every worker committed is kept."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class Notice(UserWarning):
    """Something the user should know that is not an error (e.g. a model runs on the CPU although a GPU
    is present): warned once; the CLI prints it as one `note:` line."""
