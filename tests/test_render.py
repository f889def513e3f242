"""One render module: every report type has its renderer there, and no other CLI module formats one."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from vlcli.cli import render as render_cli
from vlcli.exports.export import ExportReport
from vlcli.ingestion.ingest import IngestReport
from vlcli.review.cards import ReviewReport
from vlcli.review.status import TableStatus
from vlcli.run.pipeline import PipelineReport, Plan
from vlcli.steps.base import StepReport
from vlcli.steps.bin.step import BinReport, Explanation
from vlcli.steps.filter.step import FilterReport
from vlcli.steps.validate.step import ValidateReport
from vlcli.table.repair import RepairReport

REPORTS: tuple[type, ...] = (
    StepReport,
    Explanation,
    FilterReport,
    BinReport,
    ValidateReport,
    IngestReport,
    PipelineReport,
    Plan,
    ExportReport,
    ReviewReport,
    RepairReport,
    TableStatus,
)
CLI = Path(render_cli.__file__).parent


def test_every_report_type_has_a_renderer() -> None:
    fallback = render_cli.render.dispatch(object)
    missing = [t.__name__ for t in REPORTS if render_cli.render.dispatch(t) is fallback]
    assert missing == []


def test_no_other_cli_module_formats_a_report() -> None:
    names = {t.__name__ for t in REPORTS}
    offenders = []
    for path in sorted(CLI.glob("*.py")):
        if path.name == "render.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                for arg in node.args.args:
                    if arg.annotation is not None and ast.unparse(arg.annotation) in names:
                        offenders.append(f"{path.name}:{node.name}")
    assert offenders == []


def test_a_step_report_renders_with_its_summary() -> None:
    summary = FilterReport(rows=5, kept=3, reasons=Counter({"too_small": 2}))
    report = StepReport(step="filter", pending=5, done=5, summary=summary)
    with render_cli.console.capture() as captured:
        render_cli.render(report)
    lines = captured.get().splitlines()
    assert lines[0].startswith("filter done: 5 ok, 0 skipped, 0 errors in 0.0s")
    assert lines[1:] == ["filter: 3 kept, 2 rejected of 5 rows", "  too_small            2"]


def test_an_interrupted_step_report_prints_its_counts_only() -> None:
    report = StepReport(step="crop", pending=4, done=1, interrupted=True)
    with render_cli.console.capture() as captured:
        render_cli.render(report)
    assert captured.get().splitlines() == ["crop interrupted: 1 ok, 0 skipped, 0 errors in 0.0s (0.0 rows/s)"]
