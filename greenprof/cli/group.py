"""The ``greenprof`` click group every command registers on."""

from __future__ import annotations

import click

from greenprof.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="greenprof")
def cli() -> None:
    """Energy profiler for PyTorch: joules per layer."""
