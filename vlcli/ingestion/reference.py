"""Reference tables for `vl filter --against EVAL`: an evaluation set ingested once beside the main table
(`<table>.refs/<name>-<hash>.lance`), hashed by its crop grid and, for semantic matching, embedded by the
main table's own crop model and settings."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, fields, replace
from typing import Any

import pyarrow as pa

from vlcli.errors import UsageError
from vlcli.ingestion.ingest import IngestOptions, ingest
from vlcli.steps.base import Progress, RunOptions
from vlcli.steps.crop.step import CropSettings, CropStep
from vlcli.steps.filter.contamination import REFERENCE_KEY, ReferenceStep, reference_name
from vlcli.steps.filter.step import FilterRules
from vlcli.steps.runner import run_step
from vlcli.table.schema import INGEST_COLUMNS, ingest_schema
from vlcli.table.storage import Table, local_path, table_exists


@dataclass(frozen=True)
class Reference:
    """An evaluation set as a reference table."""

    name: str
    source: str
    path: str
    rows: int
    added: int  # images ingested by this call (0: the table was reused)


def _resolved(source: str) -> str:
    local = local_path(source)
    return os.path.realpath(local) if local is not None and os.path.exists(local) else source


def reference_path(table: Table, source: str) -> tuple[str, str]:
    """The reference table's name and path for `source`: beside `table`, keyed by the source's resolved
    path or URI (so two folders both called `test` get two tables)."""
    resolved = _resolved(source)
    stem = os.path.basename(resolved.rstrip("/")).removesuffix(".lance")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "eval"
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:8]
    return name, f"{table.path.rstrip('/')}.refs/{name}-{digest}.lance"


def build_reference(
    table: Table,
    source: str,
    *,
    semantic: bool = False,
    options: RunOptions | None = None,
    progress: Progress | None = None,
    device: str = "auto",
) -> Reference:
    """Ingest `source` (anything `vl ingest` reads, or a vl table) into its reference table, once, and
    fill its crop-grid hashes; with `semantic`, also its embeddings from `table`'s crop model."""
    name, path = reference_path(table, source)
    if _resolved(source).startswith(f"{_resolved(table.path).rstrip('/')}.refs/"):
        name, path = reference_name(source), source  # already one of this table's reference tables
    crop_params = _crop_params(table) if semantic else None
    ref = Table.open(path) if table_exists(path) else None
    added = 0
    if ref is None or not ref.metadata().get(REFERENCE_KEY, {}).get("complete"):
        added = _fill(source, path, name, progress)
        ref = Table.open(path)
    run_step(ref, ReferenceStep(), options, progress)
    if not ref.metadata().get(REFERENCE_KEY, {}).get("complete"):
        ref.set_metadata(REFERENCE_KEY, {"name": name, "source": _resolved(source), "complete": True})
    if crop_params is not None:
        _embed(ref, crop_params, options, progress, device)
    return Reference(name, _resolved(source), path, ref.count(), added)


def resolve_against(
    table: Table,
    rules: FilterRules,
    *,
    progress: Progress | None = None,
    device: str = "auto",
) -> tuple[FilterRules, list[Reference]]:
    """`rules` with each evaluation set of `rules.against` replaced by its reference table (built or
    reused), and those references: what `vl filter --against` and `vl run`'s `filter.against` do first."""
    refs = [
        build_reference(
            table, src, semantic=rules.semantic_threshold is not None, progress=progress, device=device
        )
        for src in rules.against
    ]
    return replace(rules, against=tuple(ref.path for ref in refs)), refs


def _fill(source: str, path: str, name: str, progress: Progress | None) -> int:
    if not table_exists(source):
        return ingest(source, path, IngestOptions(dataset=name), progress).added
    # an existing vl table: copy its rows (image bytes included) so the main table's steps never touch it
    src, ref = Table.open(source), Table.open_or_create(path, ingest_schema())
    names = [c.name for c in INGEST_COLUMNS if c.name in src.schema.names]
    added = 0
    for batch in src.scan(names, batch_size=256):
        added += ref.insert_new(pa.Table.from_batches([batch]))
    return added


def _crop_params(table: Table) -> dict[str, Any]:
    recorded = table.metadata().get("provenance.crop")
    if not recorded:
        raise UsageError(
            "--semantic-threshold with --against needs the crop step's embeddings: run `vl crop TABLE` first"
        )
    return {k: v for k, v in recorded["params"].items() if k != "embedder"}


def _settings(params: dict[str, Any], device: str) -> CropSettings:
    known = {f.name for f in fields(CropSettings) if f.init}
    values = {k: v for k, v in params.items() if k in known}
    values["aspects"] = tuple(tuple(a) for a in values.get("aspects", ((1, 1),)))
    values["scales"] = tuple(values.get("scales", (1.0,)))
    return CropSettings(**{**values, "keep_embedding": True, "device": device})


def _embed(
    ref: Table, params: dict[str, Any], options: RunOptions | None, progress: Progress | None, device: str
) -> None:
    recorded = ref.metadata().get("provenance.crop")
    if recorded:
        theirs = {k: v for k, v in recorded["params"].items() if k != "embedder"}
        if theirs != params:
            raise UsageError(
                f"reference table {ref.path} holds embeddings from {theirs.get('model')!r}, the table's crop "
                f"used {params.get('model')!r}: delete {ref.path} to rebuild it with {params.get('model')!r}"
            )
    run_step(ref, CropStep(_settings(params, device)), options, progress)
