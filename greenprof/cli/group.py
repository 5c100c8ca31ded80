"""The ``greenprof`` click group every command registers on."""

from __future__ import annotations

import click

from greenprof.version import __version__


class _Group(click.Group):
    """A group whose command list shows each description whole (wrapped, never cut off)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="greenprof")
def cli() -> None:
    """Energy profiler for PyTorch: joules per layer."""
