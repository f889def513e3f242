"""`vl backends`: each capability, its backends (built-in and plugins) and whether their libraries are installed."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table as RichTable

from vlcli.backends.registry import catalog
from vlcli.cli.common import handles_errors
from vlcli.cli.render import console


@handles_errors
def command(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List the model backends of every capability, the installed plugins, and what each backend still needs.

    A backend is ready when the libraries it imports are installed (checked without importing them);
    otherwise the line says what to pip install. Plugins are packages with an entry point in the
    `vlcli.backends` group.
    """
    info = catalog()
    if as_json:
        print(json.dumps(info, indent=2))
        return
    render(info)


def render(info: dict[str, Any]) -> None:
    """Print the catalog as a rich table and the plugin list."""
    table = RichTable("capability", "backend", "from", "ready", box=None)
    for cap in info["capabilities"]:
        label = f"{cap['capability']} ({cap['protocol']})" if cap["protocol"] else cap["capability"]
        for row in cap["backends"]:
            ready = "[green]yes[/]" if row["ready"] else f"[red]no[/]: {escape(row['install'])}"
            if row.get("note"):
                ready += f": {escape(row['note'])}"
            table.add_row(escape(label), escape(row["name"]), escape(row["origin"]), ready)
            label = ""
    console.print(table)
    plugins = info["plugins"]
    if not plugins:
        console.print("plugins: none installed (entry-point group vlcli.backends)", highlight=False)
    for plugin in plugins:
        console.print(f"plugin {escape(plugin['name'])}: {escape(plugin['module'])}", highlight=False)
