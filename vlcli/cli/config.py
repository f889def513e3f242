"""`vl config init [PATH]`: write a commented default vl.yaml; `vl config show`: the merged settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vlcli import config
from vlcli.cli.common import console, handles_errors
from vlcli.configfile import render
from vlcli.errors import UsageError

app = typer.Typer(help="Write or check a vl.yaml (settings for `vl run`).", no_args_is_help=True)


def _command_helps() -> tuple[dict[str, dict[str, str]], dict[str, dict[str, Any]]]:
    """Each step command's flag help and defaults, by section and parameter name."""
    from vlcli.cli.app import app as main_app

    group = typer.main.get_command(main_app)
    helps: dict[str, dict[str, str]] = {}
    defaults: dict[str, dict[str, Any]] = {}
    commands = getattr(group, "commands", {})
    for name in config.sections():
        command = commands.get(name)
        if command is None:
            continue
        helps[name] = {p.name: (getattr(p, "help", None) or "") for p in command.params if p.name}
        defaults[name] = {p.name: p.default for p in command.params if p.name}
    return helps, defaults


@app.command("init")
@handles_errors
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the file.")] = Path("vl.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a vl.yaml with every setting at its default, each with a comment."""
    if path.exists() and not force:
        raise UsageError(f"{path} exists: pass --force to replace it, or choose another PATH")
    helps, defaults = _command_helps()
    path.write_text(render(helps, defaults))
    console.print(f"wrote {path}: edit it, then `vl run SRC TABLE --config {path}`", highlight=False)


@app.command("check")
@handles_errors
def check(path: Annotated[Path, typer.Argument(help="The vl.yaml (or DCVLR config) to check.")]) -> None:
    """Validate a config file and print the settings it sets (and DCVLR keys it ignores)."""
    import yaml

    settings, ignored = config.load(path)
    console.print(yaml.safe_dump(settings, sort_keys=False) if settings else "(no settings)", highlight=False)
    if ignored:
        console.print("ignored DCVLR keys: " + ", ".join(ignored), highlight=False)
