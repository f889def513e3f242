"""`vl optimize`: clean old versions on demand and, when asked, compact fragments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from vlcli.table.storage import Cleanup, CompactionPlan, Table, keep_versions


@dataclass
class OptimizeReport:
    """What `vl optimize` found and did."""

    table: str
    older_than: timedelta
    cleanup: Cleanup | None = None
    compaction: CompactionPlan | None = None
    compacted: bool = False
    fragments_removed: int = 0


def optimize(
    table: Table,
    older_than: timedelta | None = None,
    compact: bool = False,
    confirm: Callable[[CompactionPlan], bool] = lambda plan: True,
) -> OptimizeReport:
    """Compact when asked and `confirm(plan)` agrees, then clean versions older than `older_than`
    (default: the retention window); a declined compaction cleans nothing either."""
    report = OptimizeReport(
        table=table.path, older_than=keep_versions() if older_than is None else older_than
    )
    if compact:
        report.compaction = table.plan_compaction()
        if report.compaction.fragments:
            if not confirm(report.compaction):
                return report
            report.fragments_removed = table.compact(report.compaction)
            report.compacted = True
    report.cleanup = table.cleanup(report.older_than)
    return report
