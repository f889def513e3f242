"""vl: turn a pile of raw images into a curated vision-language training set, one Lance table.

import vlcli
report = vlcli.ingestion.ingest("photos/", "photos.lance")
table = vlcli.open_table("photos.lance")
print(vlcli.table.query(table, "SELECT format, count(*) AS n FROM images GROUP BY format"))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names, imported on first use so `import vlcli` (and `vl --help`) stays fast.
_EXPORTS = {
    "Table": "vlcli.table.storage",
    "open_table": "vlcli.api",
    "create_table": "vlcli.api",
    "Step": "vlcli.steps.base",
    "StepReport": "vlcli.steps.base",
    "RunOptions": "vlcli.steps.base",
    "RowSkipped": "vlcli.steps.base",
    "run_step": "vlcli.steps.runner",
    "Column": "vlcli.table.schema",
    "ingest": "vlcli.ingestion.ingest",
    "IngestOptions": "vlcli.ingestion.ingest",
    "IngestReport": "vlcli.ingestion.ingest",
    "table_status": "vlcli.review.status",
    "query": "vlcli.table.query",
    "export": "vlcli.exports.export",
    "similar": "vlcli.table.similar",
    "VlError": "vlcli.errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'vlcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
