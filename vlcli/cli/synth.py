"""`vl synth TABLE`: questions, answers and reasoning per image from an LLM (also `vl synthesize`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vlcli.cli.common import (
    ApiKeyEnv,
    BaseUrl,
    ImageSize,
    StepFlags,
    choice,
    handles_errors,
    step_flags,
)
from vlcli.cli.render import render
from vlcli.steps.synth.replies import MODES
from vlcli.steps.synth.step import DEFAULT_MODEL, SPEC, SynthSettings, run_synth
from vlcli.table.storage import Table


def _key_values(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--backend-option")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value  # a plain string
    return out


@handles_errors
@step_flags(None, "Rows per generate() call (default: 8 x --concurrency, at least 64).")
def command(
    table: Annotated[
        str,
        typer.Argument(help="The vl table: a .lance folder or a Lance URI (s3://, gs://, az://, file://)."),
    ],
    mode: Annotated[
        str,
        typer.Option(
            help="mcq (hard 4-option questions, one-letter answers) or qa (open questions, one template per bin)."
        ),
    ] = "mcq",
    per_image: Annotated[
        int | None,
        typer.Option("--per-image", min=1, help="Questions per image (default: 2 for mcq, 1 for qa)."),
    ] = None,
    all_rows: Annotated[
        bool, typer.Option("--all", help="Every kept row, not only the rows vl bin selected.")
    ] = False,
    backend: Annotated[
        str,
        typer.Option(
            help="openai (any OpenAI-compatible server), vllm (in-process), transformers, or null (no model)."
        ),
    ] = "openai",
    model: Annotated[str, typer.Option(help="Model name as the backend knows it (hub id or folder).")] = (
        DEFAULT_MODEL
    ),
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = None,
    concurrency: Annotated[int, typer.Option(min=1, help="openai: requests in flight at once.")] = 16,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature.")] = 0.7,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Longest reply, in tokens.")] = 2048,
    seed: Annotated[int | None, typer.Option(help="Sampling seed, where the backend supports one.")] = None,
    max_retries: Annotated[
        int,
        typer.Option("--max-retries", min=0, help="Ask again this many times when a reply does not parse."),
    ] = 2,
    describe: Annotated[
        bool,
        typer.Option("--describe", help="First have a VLM describe each image; the questions use it."),
    ] = False,
    describe_model: Annotated[
        str | None,
        typer.Option("--describe-model", help="The VLM for --describe (default: --model)."),
    ] = None,
    send_image: Annotated[
        bool,
        typer.Option("--send-image", help="Also show the image to the model that writes the questions."),
    ] = False,
    image_size: ImageSize = 1024,
    prompt: Annotated[
        Path | None,
        typer.Option(help="Template file replacing the built-in question template(s); see docs/synth.md."),
    ] = None,
    describe_prompt: Annotated[
        Path | None, typer.Option("--describe-prompt", help="Template file replacing the --describe prompt.")
    ] = None,
    backend_option: Annotated[
        list[str] | None,
        typer.Option(
            "--backend-option",
            metavar="KEY=VALUE",
            help="More backend settings, e.g. timeout=300 or max_model_len=8192 (repeatable; JSON values).",
        ),
    ] = None,
    *,
    flags: StepFlags,
) -> None:
    """Write questions, answers and reasoning for each image with an LLM.

    Works on the rows vl bin selected (or every kept row with --all), resumably: rows done stay done,
    --retry-errors asks again where it failed, --redo recomputes everything. The API key is read from the
    environment variable named by --api-key-env and is never stored.
    """
    settings = SynthSettings(
        mode=choice(mode, MODES, "--mode"),
        per_image=per_image,
        backend=backend,
        model=model,
        base_url=base_url,
        api_key_env=api_key_env,
        concurrency=concurrency,
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        max_retries=max_retries,
        describe=describe,
        describe_model=describe_model,
        send_image=send_image,
        image_size=image_size,
        prompt=str(prompt) if prompt is not None else None,
        describe_prompt=str(describe_prompt) if describe_prompt is not None else None,
        all_rows=all_rows,
        device=flags.device,
        dtype=flags.dtype,
        trust_remote_code=flags.trust_remote_code,
        backend_options=_key_values(backend_option or []),
    )
    opts = flags.options(SPEC.default_batch(settings))
    report = run_synth(Table.open(table), settings, opts, flags.progress())
    render(report)
