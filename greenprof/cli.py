"""The ``greenprof`` command: a thin click layer over the library.

Each command lives in a small function; the work is done by the modules they call.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from greenprof import __version__
from greenprof.errors import GreenprofError
from greenprof.renderers.units import DEFAULT_GRID_G_PER_KWH
from greenprof.sensors import SENSOR_KINDS
from greenprof.session import PHASES, REPORT_FILE

if TYPE_CHECKING:
    from greenprof.runner import RunResult
    from greenprof.session import Session


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="greenprof")
def cli() -> None:
    """Energy profiler for PyTorch: joules per layer."""


# --- sensors command (owned by the sensors work) ---


_cpu_power_option = click.option(
    "--cpu-power-w",
    type=click.FloatRange(min=0, min_open=True),
    help="Rated power of the whole CPU, for the CPU estimate "
    "[default: $GREENPROF_CPU_POWER_W, else 10 W per logical CPU].",
)


@cli.command("sensors")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="How long to measure each sensor's power.",
)
@_cpu_power_option
@click.option("--powercap-root", default="/sys/class/powercap", hidden=True)
def sensors_command(seconds: float, cpu_power_w: float | None, powercap_root: str) -> None:
    """Show what can be measured here, with a live reading, and why the rest cannot."""
    from greenprof.errors import ConfigError
    from greenprof.sampler import mean_power_w
    from greenprof.sensors import (
        CpuEstimateSensor,
        availability,
        available_sensors,
        default_selection,
    )

    try:
        results = availability(rated_cpu_power_w=cpu_power_w, powercap_root=powercap_root)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    found = available_sensors(results)
    try:
        readings = mean_power_w(found, seconds)
        click.echo(f"Sensors found (power over {seconds:g} s):")
        for sensor in found:
            kind = "MEASURED" if sensor.measured else "ESTIMATED"
            reading = readings[sensor.name]
            shown = f"{reading:9.2f} W" if isinstance(reading, float) else f"failed: {reading}"
            if isinstance(sensor, CpuEstimateSensor):
                shown += f"  ({sensor.watts_per_cpu_w:g} W per busy logical CPU; this process)"
            click.echo(f"  {sensor.name:<22} {sensor.device:<10} {kind:<10} {shown}")
        missing = [exc for _, exc in results if not isinstance(exc, list)]
        if missing:
            click.echo("Not available:")
        for exc in missing:
            click.echo(f"  {exc.kind:<8} {exc.reason}")
            if exc.fix:
                click.echo(f"  {'':<8} fix: {exc.fix}")
        chosen = ", ".join(s.name for s in default_selection(results))
        click.echo(f"Profiling uses by default: {chosen}")
    finally:
        for sensor in found:
            sensor.close()


# --- run / report / top / compare / export commands (owned by the reports work) ---

_RUN_SETTINGS = {"ignore_unknown_options": True, "allow_interspersed_args": False}
_run_dir_arg = click.Path(file_okay=False, path_type=Path)


def _output_option(default: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"Output file [default: RUN_DIR/{default}].",
    )


_grid_option = click.option(
    "--grid-g-per-kwh",
    type=click.FloatRange(min=0),
    help=f"Grid CO2 intensity, g/kWh [default: the run's, else {DEFAULT_GRID_G_PER_KWH:g}].",
)
_count_option = click.option(
    "-n", type=click.IntRange(min=1), default=20, show_default=True, help="How many modules."
)


def _fail(message: str, status: int = 2) -> NoReturn:
    """Print a one-line error (no traceback) and exit."""
    click.echo(f"greenprof: error: {message}", err=True)
    raise SystemExit(status)


def _load(run_dir: Path) -> Session:
    """Load a run directory, turning every way it can be broken into a one-line error."""
    from greenprof.session import Session

    try:
        return Session.load(run_dir)
    except GreenprofError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.filename or run_dir}: {exc.strerror or exc}")


def _write(render: Callable[[Path], Path], path: Path, what: str) -> None:
    """Write an output file, turning a filesystem error into a one-line message."""
    try:
        written = render(path)
    except OSError as exc:
        _fail(f"{exc.filename or path}: {exc.strerror or exc}")
    click.echo(f"greenprof: {what} written to {written}")


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
@_cpu_power_option
@click.option("--out", type=_run_dir_arg, help="Run directory [default: reports/NAME-TIME].")
@click.option("--no-report", is_flag=True, help="Save the session files but no HTML report.")
@_grid_option
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
        _fail(str(exc))
    options = runner.RunOptions(
        interval_s=interval_ms / 1000.0,
        sensors=sensors,
        rated_cpu_power_w=cpu_power_w,
        out=out,
        report=not no_report,
        grid_g_per_kwh=grid_g_per_kwh,
        command=shlex.join(["greenprof", *sys.argv[1:]]),
    )
    try:
        result = runner.run(what, options)
    except GreenprofError as exc:
        _fail(str(exc))
    _announce(result)
    raise SystemExit(result.exit_status)


def _announce(result: RunResult) -> None:
    click.echo("", err=True)
    click.echo(result.session.summary(n=5), err=True)
    for problem in result.problems:
        click.echo(f"greenprof: {problem}", err=True)
    where = _shown(result.report or result.run_dir)
    click.echo(
        f"greenprof: {'report' if result.report else 'session'} written to {where}", err=True
    )


def _shown(path: Path) -> str:
    """Return ``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@cli.command()
@click.argument("run_dir", type=_run_dir_arg)
@_output_option("report.html")
@_grid_option
def report(run_dir: Path, output: Path | None, grid_g_per_kwh: float | None) -> None:
    """Write the HTML report of RUN_DIR."""
    from greenprof.renderers.html import write_html

    session = _load(run_dir)
    _write(
        lambda path: write_html(session, path, grid_g_per_kwh=grid_g_per_kwh),
        output or run_dir / REPORT_FILE,
        "report",
    )


@cli.command()
@click.argument("run_dir", type=_run_dir_arg)
@_count_option
@click.option(
    "--phase",
    "phases",
    multiple=True,
    type=click.Choice(PHASES),
    help="Only this phase (repeatable).",
)
def top(run_dir: Path, n: int, phases: tuple[str, ...]) -> None:
    """Print the modules of RUN_DIR that use the most energy."""
    from greenprof.renderers.console import render_summary

    click.echo(render_summary(_load(run_dir), n=n, phases=phases or None))


@cli.command()
@click.argument("run_a", type=_run_dir_arg)
@click.argument("run_b", type=_run_dir_arg)
@_count_option
@click.option(
    "--fail-on-regression", is_flag=True, help="Exit 1 when a module got worse beyond uncertainty."
)
@click.option(
    "--threshold-pct",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="With --fail-on-regression: ignore regressions of less than this many percent.",
)
def compare(
    run_a: Path, run_b: Path, n: int, fail_on_regression: bool, threshold_pct: float
) -> None:
    """Compare per-module energy of RUN_A (before) and RUN_B (after)."""
    from greenprof.compare import compare_sessions
    from greenprof.renderers.console import render_comparison

    comparison = compare_sessions(_load(run_a), _load(run_b), str(run_a), str(run_b))
    click.echo(render_comparison(comparison, n=n))
    if fail_on_regression and len(comparison.worse(threshold_pct)):
        raise SystemExit(1)


@cli.command()
@click.argument("run_dir", type=_run_dir_arg)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["chrome"]),
    default="chrome",
    show_default=True,
    help="Chrome/Perfetto trace event JSON.",
)
@_output_option("trace.json")
def export(run_dir: Path, fmt: str, output: Path | None) -> None:
    """Export RUN_DIR's span trace and power tracks (for ui.perfetto.dev or about:tracing)."""
    from greenprof.renderers.chrome import TRACE_FILE, write_chrome_trace

    session = _load(run_dir)
    _write(lambda path: write_chrome_trace(session, path), output or run_dir / TRACE_FILE, "trace")


# --- recommend / optimize commands (owned by the recommend work) ---

_exclude_option = click.option(
    "--exclude", multiple=True, help="Module name never to touch (repeatable, or comma-separated)."
)


@cli.command()
@click.argument("run_dir", type=_run_dir_arg)
@_count_option
@_exclude_option
def recommend(run_dir: Path, n: int, exclude: tuple[str, ...]) -> None:
    """Rank compression candidates for the layers of RUN_DIR (from the saved run alone)."""
    from greenprof.recommend.rules import recommend as rank_candidates
    from greenprof.recommend.text import render_candidates

    session = _load(run_dir)
    candidates = rank_candidates(session, exclude=_names(exclude))
    click.echo(
        render_candidates(
            candidates, total_energy_j=session.total_energy_j, estimated=session.estimated, n=n
        )
    )


@cli.command()
@click.argument("task")
@click.option(
    "--max-metric-drop",
    help="Largest metric loss allowed: a number in the metric's units, or a percentage of it "
    "(e.g. 3%) [default: the task's, else 0.01].",
)
@click.option("--lower-is-better", is_flag=True, default=None, help="The metric is a loss.")
@_exclude_option
@click.option(
    "--budget",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    help="How many changes to try (each variant counts).",
)
@click.option(
    "--profile-s",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Repeat the workload until each profile lasts this long (tighter intervals).",
)
@click.option("--out", type=_run_dir_arg, help="Output directory [default: reports/NAME-TIME].")
def optimize(
    task: str,
    max_metric_drop: str | None,
    lower_is_better: bool | None,
    exclude: tuple[str, ...],
    budget: int,
    profile_s: float,
    out: Path | None,
) -> None:
    """Shrink the hottest layers of TASK's model, keeping only changes re-profiling proves.

    TASK is FILE.py:FUNCTION; the function returns (model, workload, evaluate), or a dict with
    those keys. workload(model) runs the work to make cheaper; evaluate(model) returns a score.
    """
    from greenprof import runner
    from greenprof.recommend.loop import optimize as run_optimize
    from greenprof.recommend.task import load_task

    try:
        loaded = load_task(task)
        options = dict(loaded.options)
        if max_metric_drop is not None:
            options.update(_metric_drop(max_metric_drop))
        if lower_is_better is not None:
            options["higher_is_better"] = not lower_is_better
        options["exclude"] = [*options.get("exclude", ()), *_names(exclude)]
        options.setdefault("max_metric_drop", 0.01)
        out_dir = runner.run_dir_for(runner.Target.script(task.rpartition(":")[0]), out)
    except GreenprofError as exc:
        _fail(str(exc))
    result = run_optimize(
        loaded.model,
        loaded.workload,
        loaded.evaluate,
        budget=budget,
        min_profile_s=profile_s,
        out=out_dir,
        **options,
    )
    click.echo(result.summary())
    click.echo(f"greenprof: optimize report written to {_shown(out_dir / REPORT_FILE)}", err=True)


def _names(values: tuple[str, ...]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _metric_drop(text: str) -> dict[str, float | bool]:
    """``"0.01"`` -> absolute drop; ``"3%"`` -> relative drop of 0.03."""
    relative = text.strip().endswith("%")
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        _fail(f"--max-metric-drop: {text!r} is not a number or a percentage")
    if value < 0:
        _fail("--max-metric-drop must not be negative")
    return {"max_metric_drop": value / 100 if relative else value, "relative": relative}


def main() -> None:
    """Entry point of the console script."""
    cli(prog_name="greenprof")
