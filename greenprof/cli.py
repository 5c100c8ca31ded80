"""The ``greenprof`` command: a thin click layer over the library.

Each command lives in a small function; the work is done by the modules they call.
"""

from __future__ import annotations

import click

from greenprof import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="greenprof")
def cli() -> None:
    """Energy profiler for PyTorch: joules per layer."""


# --- sensors command (owned by the sensors work) ---


# --- run / report / top / compare / export commands (owned by the reports work) ---


def main() -> None:
    """Entry point of the console script."""
    cli(prog_name="greenprof")
