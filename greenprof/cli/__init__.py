"""The ``greenprof`` command: a thin click layer over the library, one module per command group."""

from __future__ import annotations

from greenprof.cli import optimize, reports, run, sensors  # noqa: F401 - each registers its commands
from greenprof.cli.group import cli

__all__ = ["cli", "main"]


def main() -> None:
    """Entry point of the console script."""
    cli(prog_name="greenprof")
