"""Option groups shared by several commands, each defined once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from greenprof.report.units import DEFAULT_GRID_G_PER_KWH

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: A run directory argument or option (it may not exist yet where a command writes one).
RUN_DIR = click.Path(file_okay=False, path_type=Path)

cpu_power_option = click.option(
    "--cpu-power-w",
    type=click.FloatRange(min=0, min_open=True),
    help="Rated power of the whole CPU, for the CPU estimate "
    "[default: $GREENPROF_CPU_POWER_W, else 10 W per busy logical CPU].",
)
grid_option = click.option(
    "--grid-g-per-kwh",
    type=click.FloatRange(min=0),
    help=f"Grid CO2 intensity, g/kWh [default: the run's, else {DEFAULT_GRID_G_PER_KWH:g}].",
)
count_option = click.option(
    "-n", type=click.IntRange(min=1), default=20, show_default=True, help="How many modules."
)
exclude_option = click.option(
    "--exclude", multiple=True, help="Module name never to touch (repeatable, or comma-separated)."
)


def calibrate_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--no-calibrate`` and ``--calibrate-s``: calibration by replay after the run."""
    command = click.option(
        "--calibrate-s",
        type=click.FloatRange(min=0),
        help="Seconds to spend replaying layers after the run to measure each one's power "
        "[default: the larger of 10 s and 10 % of the run, when the sensors update more slowly "
        "than the layers run].",
    )(command)
    return click.option(
        "--no-calibrate",
        is_flag=True,
        help="Do not replay layers after the run (per-layer joules then come from the run's "
        "own windows alone).",
    )(command)


def out_option(what: str) -> Decorator:
    """``--out DIR``: where a command writes its directory (default under ``reports/``)."""
    return click.option("--out", type=RUN_DIR, help=f"{what} [default: reports/NAME-TIME].")


def output_option(default: str) -> Decorator:
    """``-o/--output FILE``: one output file, by default inside the run directory."""
    return click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"Output file [default: RUN_DIR/{default}].",
    )


def names(values: tuple[str, ...]) -> list[str]:
    """Flatten repeatable, comma-separated name options into one list."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]
