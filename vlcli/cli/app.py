"""The `vl` application: registers one command per module."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from vlcli.cli.common import handles_errors
from vlcli.table.storage import parse_storage_option, set_default_storage_options


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


class VlGroup(TyperGroup):
    """The `vl` command group: its help and its commands' help tidied as `tidy_help` says."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The subcommand `cmd_name`, its help tidied."""
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            tidy_help(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The group's own help, tidied."""
        tidy_help(self, ctx)
        super().format_help(ctx, formatter)


app = typer.Typer(
    cls=VlGroup,
    name="vl",
    help="Turn a pile of raw images into a curated vision-language training set, one Lance table.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
@handles_errors
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
    set_default_storage_options(dict(parse_storage_option(o) for o in storage_option or []))


def _register() -> None:
    # One module per command; each exposes `command`. Imported here so `vl --help` lists them all.
    from vlcli.cli import (
        backends,
        bin,
        config,
        crop,
        demo,
        export,
        filter,
        ingest,
        optimize,
        query,
        repair,
        run,
        show,
        similar,
        status,
        synth,
        validate,
    )

    app.command("run")(run.command)
    app.command("ingest")(ingest.command)
    app.command("filter")(filter.command)
    app.command("crop")(crop.command)
    app.command("bin")(bin.command)
    app.command("synth")(synth.command)
    app.command("synthesize", hidden=True)(synth.command)
    app.command("validate")(validate.command)
    app.command("status")(status.command)
    app.command("query")(query.command)
    app.command("repair")(repair.command)
    app.command("optimize")(optimize.command)
    app.command("similar")(similar.command)
    app.command("export")(export.command)
    app.command("show")(show.command)
    app.command("demo")(demo.command)
    app.command("backends")(backends.command)
    app.add_typer(config.app, name="config")


_register()


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    app()
