"""The `vl` application: one command per module, each imported only when it runs or shows its help."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import CommandInfo, TyperInfo


def tidy_help(command: Any, ctx: Any) -> None:
    """Help for `command` and its subcommands: no value type for flags, no hard line breaks in paragraphs."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # typer's rich help shows `<bool>` for a flag, which takes no value
    if command.help:
        command.help = unwrap(command.help)
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub, ctx)


def unwrap(text: str) -> str:
    """Each paragraph on one line, so the terminal wraps it (a paragraph starting with \\b keeps its lines)."""
    paragraphs = text.strip().split("\n\n")
    return "\n\n".join(
        p if p.lstrip().startswith("\b") else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


# Every command: its module in vlcli.cli and the first paragraph of its help, so `vl --help` lists them
# without importing any (a command's module imports the stack it drives: Lance, Arrow, polars, torch...).
# tests/test_startup.py checks this table against the commands' own help.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "Run the whole pipeline: ingest SRC (when given), then every step in order."),
    "ingest": ("ingest", "Add the images of SRC to TABLE, one row each; rerunning adds only what is new."),
    "filter": (
        "filter",
        "Filter: bounds on size and aspect, NSFW score, perceptual-hash near-duplicates (kept: largest image).",
    ),
    "crop": (
        "crop",
        "Smart crop: embed N candidate crops and the full image, keep the crop most like the whole.",
    ),
    "bin": ("bin", "Bin images: A (text), B (objects), C (commonsense), balanced to --ratios."),
    "synth": ("synth", "Write questions, answers and reasoning for each image with an LLM."),
    "synthesize": ("synth", ""),  # an alias, hidden
    "validate": (
        "validate",
        "Validate Q/A items: lengths, question form, refusals, MCQ shape, grounding, duplicates.",
    ),
    "status": (
        "status",
        "Show how far every step has got: done, pending, blocked, skipped and errors with top reasons.",
    ),
    "query": (
        "query",
        "Run polars SQL over the table (as `images`), reading only the columns it names; bytes show as <N bytes>.",
    ),
    "repair": (
        "repair",
        "Remove duplicate rows (same id, from ingests that ran at once) and temporary files left by killed runs.",
    ),
    "optimize": (
        "optimize",
        "Free space: delete the files of versions older than the retention window, and compact on request.",
    ),
    "similar": (
        "similar",
        "Images most similar to ID by the embedding `vl crop` stores (cosine distance, smaller is closer).",
    ),
    "export": (
        "export",
        "Export rows, each image as its crop view where crop_box is set (the original bytes elsewhere); "
        "by default only rows with ingest_status = 'ok'. Q/A exports (--jsonl, --llava, --sharegpt, and --hf "
        "on a table with Q/A: one row per item) take rows kept by the filter and items that passed validation.",
    ),
    "show": ("show", "Write one self-contained HTML page to review the table in a browser."),
    "demo": (
        "demo",
        "Run the whole pipeline on generated samples: scenes, charts, documents, duplicates, a broken file.",
    ),
    "backends": (
        "backends",
        "List the model backends of every capability, the installed plugins, and what each backend still needs.",
    ),
    "config": ("config", "Write or check a vl.yaml (settings for `vl run`)."),
}
HIDDEN = frozenset({"synthesize"})
GROUPS = frozenset({"config"})  # modules exposing a Typer `app` of subcommands instead of a `command`


class VlGroup(TyperGroup):
    """The `vl` command group: each command's module is imported only when that command is asked for
    (`vl --help` lists them from COMMANDS), and its help is tidied as `tidy_help` says."""

    listing = False  # True while the group's own help lists its commands: no module is imported then

    def list_commands(self, ctx: Any) -> list[str]:
        """Every command's name, in the order `vl --help` lists them."""
        return [*COMMANDS, *(name for name in super().list_commands(ctx) if name not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The subcommand `cmd_name` (its module imported on first use), its help tidied."""
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            if self.listing:
                return TyperCommand(cmd_name, help=COMMANDS[cmd_name][1], hidden=cmd_name in HIDDEN)
            self.commands[cmd_name] = load_command(cmd_name)
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            tidy_help(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The group's own help, tidied, its commands listed without importing them."""
        tidy_help(self, ctx)
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False


def load_command(name: str) -> Any:
    """Import `vlcli.cli.<module>` of command `name` and build its click command."""
    module = importlib.import_module(f"vlcli.cli.{COMMANDS[name][0]}")
    if name in GROUPS:
        return typer.main.get_group_from_info(
            TyperInfo(module.app, name=name),
            pretty_exceptions_short=app.pretty_exceptions_short,
            suggest_commands=app.suggest_commands,
            rich_markup_mode=app.rich_markup_mode,
        )
    return typer.main.get_command_from_info(
        CommandInfo(name=name, callback=module.command, hidden=name in HIDDEN),
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
    )


app = typer.Typer(
    cls=VlGroup,
    name="vl",
    help="Turn a pile of raw images into a curated vision-language training set, one Lance table.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def options(
    storage_option: Annotated[
        list[str] | None,
        typer.Option(
            "--storage-option",
            metavar="KEY=VALUE",
            help="A Lance storage option for a table on object storage, e.g. region=us-east-1 or "
            "aws_endpoint=http://minio:9000 (repeatable; credentials are better left to the usual "
            "environment variables).",
        ),
    ] = None,
) -> None:
    """Turn a pile of raw images into a curated vision-language training set, one Lance table."""
    if storage_option or "vlcli.table.storage" in sys.modules:  # else there is nothing to set or reset
        from vlcli.cli.common import handles_errors

        handles_errors(_set_storage_options)(storage_option or [])


def _set_storage_options(options: list[str]) -> None:
    from vlcli.table.storage import parse_storage_option, set_default_storage_options

    set_default_storage_options(dict(parse_storage_option(o) for o in options))


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    app()
