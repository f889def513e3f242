"""`vl filter TABLE`: size and aspect bounds, NSFW score, near-duplicates; keep flag and reason per row."""

from __future__ import annotations

from typing import Annotated

import typer

from vlcli.cli.common import StepFlags, handles_errors, step_flags
from vlcli.cli.render import render, render_forgotten
from vlcli.ingestion.reference import resolve_against
from vlcli.steps.filter.contamination import forget
from vlcli.steps.filter.step import SPEC, FilterRules, ScoreSettings, run_filter
from vlcli.table.storage import Table


@handles_errors
@step_flags(SPEC.batch_size)
def command(
    table: Annotated[
        str,
        typer.Argument(help="The vl table: a .lance folder or a Lance URI (s3://, gs://, az://, file://)."),
    ],
    min_side: Annotated[
        int, typer.Option("--min-side", min=0, help="Reject images whose short side is smaller.")
    ] = 256,
    max_side: Annotated[
        int | None, typer.Option("--max-side", min=1, help="Reject images whose long side is larger.")
    ] = None,
    min_aspect: Annotated[
        float | None, typer.Option("--min-aspect", help="Reject width/height below this.")
    ] = None,
    max_aspect: Annotated[
        float | None, typer.Option("--max-aspect", help="Reject width/height above this.")
    ] = None,
    nsfw: Annotated[
        str, typer.Option(help="NSFW backend: nudenet (offline), hf, null (no model), or none.")
    ] = "nudenet",
    nsfw_model: Annotated[
        str | None,
        typer.Option("--nsfw-model", help="Model for --nsfw hf (default AdamCodd/vit-base-nsfw-detector)."),
    ] = None,
    nsfw_threshold: Annotated[
        float, typer.Option("--nsfw-threshold", help="Reject when P(nsfw) is above this.")
    ] = 0.5,
    phash_distance: Annotated[
        int,
        typer.Option("--phash-distance", help="Near-duplicates: pHash Hamming distance below this (0: off)."),
    ] = 8,
    dedup_scope: Annotated[
        str, typer.Option("--dedup-scope", help="all: across the table; dataset: within each dataset.")
    ] = "all",
    semantic_threshold: Annotated[
        float | None,
        typer.Option(
            "--semantic-threshold",
            help="Also drop images whose embeddings have cosine >= this (needs vl crop).",
        ),
    ] = None,
    against: Annotated[
        list[str] | None,
        typer.Option(
            "--against",
            help="An evaluation set (folder, dataset, Parquet or vl table): reject training images matching "
            "one of its images (reason contaminated). Repeat for several; remembered for later runs.",
        ),
    ] = None,
    against_distance: Annotated[
        int | None,
        typer.Option(
            "--against-distance",
            min=0,
            max=64,
            help="Contaminated: pHash distance to an evaluation crop below this (default --phash-distance).",
        ),
    ] = None,
    forget_against: Annotated[
        bool,
        typer.Option("--forget-against", help="Stop checking against the evaluation sets remembered so far."),
    ] = False,
    *,
    flags: StepFlags,
) -> None:
    """Filter: bounds on size and aspect, NSFW score, perceptual-hash near-duplicates (kept: largest image).

    Scores each pending row once (phash, nsfw_score; resumable), then recomputes filter_keep,
    filter_reason and dup_of for every row from the stored scores: rerun with other thresholds to
    change the decision without decoding anything. With --against, each evaluation set is ingested once
    into a reference table beside TABLE and its matches rejected as contaminated (contam_of).
    """
    settings = ScoreSettings(
        nsfw=nsfw,
        nsfw_model=nsfw_model,
        device=flags.device,
        dtype=flags.dtype,
        trust_remote_code=flags.trust_remote_code,
    )
    rules = FilterRules(
        min_side=min_side,
        max_side=max_side,
        min_aspect=min_aspect,
        max_aspect=max_aspect,
        nsfw_threshold=nsfw_threshold,
        phash_distance=phash_distance,
        dedup_scope=dedup_scope,
        semantic_threshold=semantic_threshold,
        against=tuple(against or ()),
        against_distance=against_distance,
    )
    opts = flags.options(SPEC.batch_size)
    tbl = Table.open(table)
    if forget_against:
        render_forgotten(forget(tbl))
    rules, refs = resolve_against(tbl, rules, progress=flags.progress(), device=flags.device)
    for ref in refs:
        render(ref)
    step_report, _ = run_filter(tbl, settings, rules, opts, flags.progress())
    render(step_report)  # and its FilterReport
