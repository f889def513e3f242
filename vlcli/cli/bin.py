"""`vl bin TABLE`: OCR, objects, caption and CLIP score per image; bins A/B/C balanced to a ratio."""

from __future__ import annotations

from typing import Annotated

import typer

from vlcli.cli.common import StepFlags, choice, handles_errors, step_flags
from vlcli.cli.render import render
from vlcli.steps.bin.rules import RULES, BinRules
from vlcli.steps.bin.step import FEATURES, SPEC, BinSettings, explain, run_bin
from vlcli.table.storage import Table


def _criteria(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, predicate = item.partition("=")
        if not sep or not name.strip() or not predicate.strip():
            raise typer.BadParameter(f"expected NAME=SQL predicate, got {item!r}", param_hint="--criterion")
        out[name.strip()] = predicate.strip()
    return out


@handles_errors
@step_flags(SPEC.batch_size)
def command(
    table: Annotated[
        str,
        typer.Argument(help="The vl table: a .lance folder or a Lance URI (s3://, gs://, az://, file://)."),
    ],
    features: Annotated[
        str, typer.Option(help="full (OCR, objects, caption, CLIP) or caption-only.")
    ] = "full",
    ocr: Annotated[
        str, typer.Option(help="OCR backend: rapidocr (offline), paddleocr, null (no model), or none.")
    ] = "rapidocr",
    detector: Annotated[
        str, typer.Option(help="Ultralytics model name or path (e.g. yolo11s.pt), null (no model), or none.")
    ] = ("yolo11s.pt"),
    captioner: Annotated[str, typer.Option(help="BLIP / BLIP-2 model (hub id or folder), null, or none.")] = (
        "Salesforce/blip-image-captioning-base"
    ),
    clip: Annotated[
        str, typer.Option(help="open_clip architecture (e.g. ViT-B-32), null, or none.")
    ] = "ViT-B-32",
    clip_pretrained: Annotated[
        str,
        typer.Option("--clip-pretrained", help="open_clip weights: a tag like openai, or a checkpoint path."),
    ] = "openai",
    ratios: Annotated[
        tuple[float, float, float], typer.Option(help="Fractions of the dataset for bins A B C.")
    ] = (0.4, 0.4, 0.2),
    dataset_size: Annotated[
        int | None,
        typer.Option("--dataset-size", min=0, help="Quotas are fractions of this (default: all kept rows)."),
    ] = None,
    rule: Annotated[
        str, typer.Option(help="rank (the seed's quotas by ranking) or threshold (its rules).")
    ] = "rank",
    text_boxes: Annotated[
        int, typer.Option("--text-boxes", help="Threshold rule: A if more text lines than this.")
    ] = 2,
    text_area: Annotated[
        float, typer.Option("--text-area", help="Threshold rule: A if text area above this.")
    ] = 0.2,
    unique_classes: Annotated[
        int, typer.Option("--unique-classes", help="Threshold rule: B if more classes than this.")
    ] = 3,
    objects: Annotated[int, typer.Option(help="Threshold rule: B if more objects than this.")] = 5,
    dispersion: Annotated[float, typer.Option(help="Threshold rule: B if dispersion above this.")] = 0.3,
    explain_id: Annotated[
        str | None,
        typer.Option("--explain", metavar="ID", help="Show every criterion for one image; runs nothing."),
    ] = None,
    criterion: Annotated[
        list[str] | None,
        typer.Option(help="With --explain: NAME=SQL predicate on the stored features (repeatable)."),
    ] = None,
    *,
    flags: StepFlags,
) -> None:
    """Bin images: A (text), B (objects), C (commonsense), balanced to --ratios.

    Computes each pending row's features once (resumable), then recomputes bin and bin_selected for
    every kept row from the stored features: rerun with other --ratios or --rule to rebalance in seconds.
    """
    rules = BinRules(
        ratios=ratios,
        dataset_size=dataset_size,
        rule=choice(rule, RULES, "--rule"),
        text_boxes=text_boxes,
        text_area=text_area,
        unique_classes=unique_classes,
        objects=objects,
        dispersion=dispersion,
    )
    handle = Table.open(table)
    if explain_id is not None:
        render(explain(handle, explain_id, rules, _criteria(criterion or [])))
        return
    if criterion:
        raise typer.BadParameter("only with --explain ID", param_hint="--criterion")
    settings = BinSettings(
        features=choice(features, FEATURES, "--features"),
        ocr=ocr,
        detector=detector,
        captioner=captioner,
        clip=clip,
        clip_pretrained=clip_pretrained,
        device=flags.device,
        dtype=flags.dtype,
        trust_remote_code=flags.trust_remote_code,
    )
    step_report, _ = run_bin(handle, settings, rules, flags.options(SPEC.batch_size), flags.progress())
    render(step_report)  # and its BinReport
