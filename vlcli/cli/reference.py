"""Generate docs/cli.md from the commands' own help: `python -m vlcli.cli.reference > docs/cli.md`."""

from __future__ import annotations

from typing import Any

import typer

from vlcli.cli.app import app

try:  # typer >= 0.20 vendors click; older versions use click itself
    from typer._click import core as click_core
except ImportError:  # pragma: no cover
    import click.core as click_core  # type: ignore[no-redef]


def commands() -> dict[str, Any]:
    """Every `vl` command by name (click command objects)."""
    group = typer.main.get_command(app)
    ctx = click_core.Context(group, info_name="vl")
    # The group imports a command's module on first use: ask for each by name.
    return {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}  # type: ignore[attr-defined]


def _plain_help(command: Any, name: str) -> str:
    ctx = click_core.Context(command, info_name=name, terminal_width=100, max_content_width=100)
    formatter = ctx.make_formatter()
    # click's own formatter, not typer's rich one, so the text is stable and diff-friendly.
    click_core.Command.format_help(command, ctx, formatter)
    return str(formatter.getvalue()).rstrip()


def render_reference() -> str:
    """The CLI reference in Markdown: the top-level help, then every command's help."""
    parts = [
        "# CLI reference",
        "",
        "Generated from `--help` by `python -m vlcli.cli.reference > docs/cli.md`; a test keeps it current.",
        "",
        "```",
        _plain_help(typer.main.get_command(app), "vl"),
        "```",
    ]
    for name, command in sorted(commands().items()):
        if getattr(command, "hidden", False):
            continue  # aliases such as `vl synthesize`
        parts += ["", f"## vl {name}", "", "```", _plain_help(command, f"vl {name}"), "```"]
        for sub, subcommand in sorted(getattr(command, "commands", {}).items()):
            full = f"vl {name} {sub}"
            parts += ["", f"## {full}", "", "```", _plain_help(subcommand, full), "```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render_reference(), end="")
