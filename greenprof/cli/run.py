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
from greenprof.errors import GreenprofError, require_module
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
@click.option(
    "--tensorboard",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write the energy figures as TensorBoard scalars into this folder.",
)
@click.option(
    "--wandb",
    is_flag=True,
    help="Also log the energy figures to Weights & Biases (project $WANDB_PROJECT, default "
    "greenprof; needs wandb).",
)
@click.option(
    "--nproc-per-node",
    help="Launch this many processes per node through torch.distributed.run (as torchrun).",
)
@click.option(
    "--launcher-arg",
    "launcher_args",
    multiple=True,
    help="With --nproc-per-node: an argument for torch.distributed.run, e.g. "
    "--launcher-arg=--nnodes=2 (repeatable).",
)
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
    tensorboard: Path | None,
    wandb: bool,
    nproc_per_node: str | None,
    launcher_args: tuple[str, ...],
    target: str,
    args: tuple[str, ...],
) -> None:
    """Run TARGET (a script, or a module with -m) with ARGS under the energy profiler.

    The run directory (session files and report.html) is written however the script ends; the
    script's exit status is greenprof's.
    """
    from greenprof import runner

    what = runner.Target(target, args, as_module)
    if wandb:
        try:
            require_module("wandb", "--wandb", "wandb")
        except GreenprofError as exc:
            fail(str(exc))
    if nproc_per_node is not None:
        from greenprof import launch

        run_dir = runner.run_dir_for(what, out).absolute()
        mine = _forwarded(interval_ms, sensors, cpu_power_w, no_report, grid_g_per_kwh, tensorboard)
        if no_calibrate:
            mine.append("--no-calibrate")
        if calibrate_s is not None:
            mine.append(f"--calibrate-s={calibrate_s}")
        mine += ["-m", target] if as_module else [target]
        launcher = [f"--nproc-per-node={nproc_per_node}", *launcher_args]
        status = launch.launch_ranks(launcher, [*mine, *args], run_dir)
        if (run_dir / "session.json").is_file():
            click.echo(f"greenprof: merged run of all ranks written to {shown(run_dir)}", err=True)
            if wandb:  # the merged run, once, rather than one W&B run per rank
                _log_merged_to_wandb(run_dir, several_nodes=_several_nodes(launcher_args))
        raise SystemExit(status)
    elif launcher_args:
        fail("--launcher-arg needs --nproc-per-node")
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
        tensorboard=tensorboard,
        wandb=wandb,
    )
    try:
        result = runner.run(what, options)
    except GreenprofError as exc:
        fail(str(exc))
    _announce(result)
    raise SystemExit(result.exit_status)


def _forwarded(
    interval_ms: float,
    sensors: tuple[str, ...],
    cpu_power_w: float | None,
    no_report: bool,
    grid_g_per_kwh: float | None,
    tensorboard: Path | None,
) -> list[str]:
    """This command's own options, as every rank's ``greenprof run`` gets them."""
    out = [f"--interval-ms={interval_ms}", *(f"--sensor={s}" for s in sensors)]
    if cpu_power_w is not None:
        out.append(f"--cpu-power-w={cpu_power_w}")
    if no_report:
        out.append("--no-report")
    if grid_g_per_kwh is not None:
        out.append(f"--grid-g-per-kwh={grid_g_per_kwh}")
    if tensorboard is not None:
        out.append(f"--tensorboard={tensorboard.absolute()}")
    return out


def _several_nodes(launcher_args: tuple[str, ...]) -> bool:
    """True when the launcher arguments ask for more than one node (``--nnodes``)."""
    for index, arg in enumerate(launcher_args):
        name, _, value = arg.partition("=")
        if name == "--nnodes" and not value and index + 1 < len(launcher_args):
            value = launcher_args[index + 1]
        if name == "--nnodes" and value not in ("", "1", "1:1"):
            return True
    return False


def _log_merged_to_wandb(run_dir: Path, *, several_nodes: bool) -> None:
    """Log the merged run to W&B, once per run directory (every node's launcher gets here)."""
    import os

    from greenprof.report.wandb import log_wandb
    from greenprof.session import Session

    session = Session.load(run_dir)
    missing = session.meta.get("missing_ranks") or []
    if several_nodes and missing:
        click.echo(
            f"greenprof: not logged to W&B from this node: rank(s) {', '.join(map(str, missing))} "
            "wrote no part yet (the launcher that ends with every part present logs the run)",
            err=True,
        )
        return
    try:  # the first launcher to get here claims the run; creating a file is atomic
        os.close(os.open(run_dir / ".wandb-logged", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    try:
        run_id = log_wandb(session)
    except Exception as exc:  # the run directory is whole; only its copy in W&B is missing
        click.echo(f"greenprof: could not log the merged run to W&B ({exc})", err=True)
        return
    click.echo(f"greenprof: merged run logged to W&B run {run_id}", err=True)


def _announce(result: RunResult) -> None:
    click.echo("", err=True)
    click.echo(result.session.summary(n=5), err=True)
    for problem in result.problems:
        click.echo(f"greenprof: {problem}", err=True)
    where = shown(result.report or result.run_dir)
    click.echo(
        f"greenprof: {'report' if result.report else 'session'} written to {where}", err=True
    )
