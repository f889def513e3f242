"""The `vl` application: registers one command per module."""

from __future__ import annotations

import os

import typer

app = typer.Typer(
    name="vl",
    help="Turn a pile of raw images into a curated vision-language training set, one Lance table.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # One module per command; each exposes `command`. Imported here so `vl --help` lists them all.
    from vlcli.cli import (
        bin,
        config,
        crop,
        demo,
        export,
        filter,
        ingest,
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
    app.command("similar")(similar.command)
    app.command("export")(export.command)
    app.command("show")(show.command)
    app.command("demo")(demo.command)
    app.add_typer(config.app, name="config")


_register()


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    app()
