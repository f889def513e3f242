"""Domain exceptions; the CLI turns each into one line on stderr and an exit code."""

from __future__ import annotations


class VlError(Exception):
    """Base class for every error `vl` reports to a user."""

    exit_code = 1


class TableNotFoundError(VlError):
    """The table path holds no Lance dataset."""


class TableExistsError(VlError):
    """A table was to be created where one already exists."""


class SourceError(VlError):
    """An ingest source cannot be read or understood."""


class QueryError(VlError):
    """A SQL query or predicate is invalid."""


class ExportError(VlError):
    """An export target or option is invalid."""


class UsageError(VlError):
    """A bad option value; the message names the option to change."""

    exit_code = 2


class MissingDependencyError(VlError):
    """An optional library is needed; the message names the extra to install."""


class StepInterrupted(VlError):
    """A step stopped on Ctrl-C after committing what it had finished."""

    exit_code = 130

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report
