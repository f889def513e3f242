"""Generate docs/cli.md from the commands' own help: `python -m vlcli.cli.reference > docs/cli.md`."""

from __future__ import annotations

import click
import typer

from vlcli.cli.app import app


def _plain_help(command: click.Command, name: str) -> str:
    ctx = click.Context(command, info_name=name, terminal_width=100, max_content_width=100)
    formatter = ctx.make_formatter()
    # click's own formatter, not typer's rich one, so the text is stable and diff-friendly.
    click.Command.format_help(command, ctx, formatter)
    return formatter.getvalue().rstrip()


def render_reference() -> str:
    """The CLI reference in Markdown: the top-level help, then every command's help."""
    root = typer.main.get_command(app)
    assert isinstance(root, click.Group)
    parts = [
        "# CLI reference",
        "",
        "Generated from `--help` by `python -m vlcli.cli.reference > docs/cli.md`; a test keeps it current.",
        "",
        "```",
        _plain_help(root, "vl"),
        "```",
    ]
    for name in sorted(root.commands):
        parts += ["", f"## vl {name}", "", "```", _plain_help(root.commands[name], f"vl {name}"), "```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render_reference(), end="")
