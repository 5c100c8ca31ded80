"""``greenprof run``: a script or module under the profiler, its exit status kept."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from greenprof.cli.common import fail, shown
from greenprof.cli.group import cli
from greenprof.cli.options import calibrate_options, cpu_power_option, grid_option, out_option
from greenprof.errors import GreenprofError
from greenprof.sensors import SENSOR_KINDS

if TYPE_CHECKING:
    from greenprof.runner import RunResult

_RUN_SETTINGS = {"ignore_unknown_options": True, "allow_interspersed_args": False}


@cli.command(context_settings=_RUN_SETTINGS)
@click.option("-m", "as_module", is_flag=True, help="Run a library module, like python -m.")
@click.option(
    "--interval-ms",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Sensor sampling interval.",
)
@click.option(
    "--sensor",
    "sensors",
    multiple=True,
    type=click.Choice(SENSOR_KINDS),
    help="Use this kind of sensor (repeatable) [default: whatever works here].",
)
@cpu_power_option
@out_option("Run directory")
@click.option("--no-report", is_flag=True, help="Save the session files but no HTML report.")
@grid_option
@calibrate_options
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(
    as_module: bool,
    interval_ms: float,
    sensors: tuple[str, ...],
    cpu_power_w: float | None,
    out: Path | None,
    no_report: bool,
    grid_g_per_kwh: float | None,
    no_calibrate: bool,
    calibrate_s: float | None,
    target: str,
    args: tuple[str, ...],
) -> None:
    """Run TARGET (a script, or a module with -m) with ARGS under the energy profiler.

    The run directory (session files and report.html) is written however the script ends; the
    script's exit status is greenprof's.
    """
    from greenprof import runner

    what = runner.Target(target, args, as_module)
    try:
        runner.check(what)
    except SyntaxError as exc:
        runner.print_exception(exc)
        raise SystemExit(1) from None
    except GreenprofError as exc:
        fail(str(exc))
    options = runner.RunOptions(
        interval_s=interval_ms / 1000.0,
        sensors=sensors,
        rated_cpu_power_w=cpu_power_w,
        out=out,
        report=not no_report,
        grid_g_per_kwh=grid_g_per_kwh,
        calibrate=not no_calibrate,
        calibrate_s=calibrate_s,
        command=shlex.join(["greenprof", *sys.argv[1:]]),
    )
    try:
        result = runner.run(what, options)
    except GreenprofError as exc:
        fail(str(exc))
    _announce(result)
    raise SystemExit(result.exit_status)


def _announce(result: RunResult) -> None:
    click.echo("", err=True)
    click.echo(result.session.summary(n=5), err=True)
    for problem in result.problems:
        click.echo(f"greenprof: {problem}", err=True)
    where = shown(result.report or result.run_dir)
    click.echo(
        f"greenprof: {'report' if result.report else 'session'} written to {where}", err=True
    )
