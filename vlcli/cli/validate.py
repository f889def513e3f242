"""`vl validate TABLE`: rules per generated Q/A item, optional judge and visual-dependency model checks."""

from __future__ import annotations

from typing import Annotated

import typer

from vlcli.cli.common import (
    ApiKeyEnv,
    BaseUrl,
    ImageSize,
    StepFlags,
    TableArg,
    handles_errors,
    step_flags,
)
from vlcli.cli.render import render
from vlcli.steps.validate.model_checks import CheckSettings
from vlcli.steps.validate.rules import ValidationRules
from vlcli.steps.validate.step import SPEC, run_validate
from vlcli.table.storage import Table


@handles_errors
@step_flags(SPEC.batch_size)
def command(
    table: TableArg,
    min_question_words: Annotated[int, typer.Option("--min-question-words", help="Shortest question.")] = 5,
    max_question_words: Annotated[int, typer.Option("--max-question-words", help="Longest question.")] = 200,
    min_answer_words: Annotated[int, typer.Option("--min-answer-words", help="Shortest answer.")] = 1,
    max_answer_words: Annotated[int, typer.Option("--max-answer-words", help="Longest answer.")] = 500,
    min_reasoning_words: Annotated[
        int, typer.Option("--min-reasoning-words", help="Shortest reasoning, in words.")
    ] = 10,
    min_overlap: Annotated[
        float,
        typer.Option(
            "--min-overlap", help="Share of the answer's content words the reasoning must use (0: off)."
        ),
    ] = 0.3,
    min_steps: Annotated[
        int, typer.Option("--min-steps", help="Numbered reasoning steps (1., 2., ...) an MCQ needs.")
    ] = 3,
    question_form: Annotated[
        bool,
        typer.Option(
            "--question-form/--no-question-form", help="Require a '?' or a question word at the start."
        ),
    ] = True,
    image_grounding: Annotated[
        bool,
        typer.Option(
            "--image-grounding/--no-image-grounding",
            help="Require the question or reasoning to mention an OCR word, object label or caption word.",
        ),
    ] = True,
    dedup: Annotated[
        bool, typer.Option("--dedup/--no-dedup", help="Mark repeated question+answer text as duplicates.")
    ] = True,
    judge: Annotated[bool, typer.Option("--judge", help="Score every item 1-5 with an LLM judge.")] = False,
    judge_threshold: Annotated[
        float, typer.Option("--judge-threshold", help="With --judge: items scored below this fail.")
    ] = 4.0,
    visual_dependency: Annotated[
        bool,
        typer.Option(
            "--visual-dependency",
            help="Ask a VLM each MCQ with and without the image; keep it only if the image is needed.",
        ),
    ] = False,
    rotations: Annotated[
        int, typer.Option("--rotations", help="With --visual-dependency: option orders asked (1-4).")
    ] = 4,
    image_size: ImageSize = 1024,
    backend: Annotated[
        str, typer.Option("--backend", help="Generator for the model checks: openai, vllm or transformers.")
    ] = "openai",
    model: Annotated[
        str | None, typer.Option("--model", help="Model name (hub id, folder or API name).")
    ] = None,
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="openai: requests in flight at once (default 16).")
    ] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="Longest reply of a model check, in tokens.")
    ] = 256,
    *,
    flags: StepFlags,
) -> None:
    """Validate Q/A items: lengths, question form, refusals, MCQ shape, grounding, duplicates.

    The rules are recomputed for the whole table from the stored Q/A on every run: rerun with other
    thresholds to change the verdicts, no --redo needed. The optional model checks (--judge,
    --visual-dependency) run once per row and resume where they stopped.
    """
    rules = ValidationRules(
        min_question_words=min_question_words,
        max_question_words=max_question_words,
        min_answer_words=min_answer_words,
        max_answer_words=max_answer_words,
        min_reasoning_words=min_reasoning_words,
        min_overlap=min_overlap,
        min_steps=min_steps,
        question_form=question_form,
        image_grounding=image_grounding,
        dedup=dedup,
        judge_threshold=judge_threshold,
    )
    checks = CheckSettings(
        judge=judge,
        visual_dependency=visual_dependency,
        backend=backend,
        model=model,
        base_url=base_url,
        api_key_env=api_key_env,
        concurrency=concurrency,
        rotations=rotations,
        image_size=image_size,
        max_tokens=max_tokens,
        device=flags.device,
        dtype=flags.dtype,
        trust_remote_code=flags.trust_remote_code,
    )
    opts = flags.options(SPEC.batch_size)
    step_report, _ = run_validate(Table.open(table), rules, checks, opts, flags.progress())
    render(step_report)  # and its ValidateReport
