"""``greenprof recommend / optimize``: candidates from a run, and the closed loop."""

from __future__ import annotations

from pathlib import Path

import click

from greenprof.cli.common import fail, load_run, shown
from greenprof.cli.group import cli
from greenprof.cli.options import RUN_DIR, count_option, exclude_option, names, out_option
from greenprof.errors import ConfigError, GreenprofError
from greenprof.session import REPORT_FILE


@cli.command()
@click.argument("run_dir", type=RUN_DIR)
@count_option
@exclude_option
def recommend(run_dir: Path, n: int, exclude: tuple[str, ...]) -> None:
    """Rank compression candidates for the layers of RUN_DIR (from the saved run alone)."""
    from greenprof.recommend.rules import recommend as rank_candidates
    from greenprof.recommend.text import render_candidates

    session = load_run(run_dir)
    candidates = rank_candidates(session, exclude=names(exclude))
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
@exclude_option
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
@click.option(
    "--objective",
    default=None,
    help="What to make smaller: j-per-call (joules per workload call) or j-per-token (per new "
    "token the workload generates with generate() or greenprof.tokens) [default: the task's, "
    "else auto: per token when the workload generates text].",
)
@out_option("Output directory")
def optimize(
    task: str,
    max_metric_drop: str | None,
    lower_is_better: bool | None,
    exclude: tuple[str, ...],
    budget: int,
    profile_s: float,
    objective: str | None,
    out: Path | None,
) -> None:
    """Shrink the hottest layers of TASK's model, keeping only changes re-profiling proves.

    TASK is FILE.py:FUNCTION; the function returns (model, workload, evaluate), or a dict with
    those keys. workload(model) runs the work to make cheaper; evaluate(model) returns a score.
    """
    from greenprof import runner
    from greenprof.recommend.loop import optimize as run_optimize
    from greenprof.recommend.objective import check_objective
    from greenprof.recommend.task import load_task

    try:
        if objective is not None:
            check_objective(objective)  # before the task trains its model
        loaded = load_task(task)
        options = dict(loaded.options)
        if max_metric_drop is not None:
            options.update(_metric_drop(max_metric_drop))
        if lower_is_better is not None:
            options["higher_is_better"] = not lower_is_better
        options["exclude"] = [*options.get("exclude", ()), *names(exclude)]
        options.setdefault("max_metric_drop", 0.01)
        if objective is not None:
            options["objective"] = objective
        out_dir = runner.run_dir_for(runner.Target.script(task.rpartition(":")[0]), out)
    except GreenprofError as exc:
        fail(str(exc))
    try:
        result = run_optimize(
            loaded.model,
            loaded.workload,
            loaded.evaluate,
            budget=budget,
            min_profile_s=profile_s,
            out=out_dir,
            **options,
        )
    except ConfigError as exc:  # per token asked of a workload that generates nothing
        fail(str(exc))
    click.echo(result.summary())
    click.echo(f"greenprof: optimize report written to {shown(out_dir / REPORT_FILE)}", err=True)


def _metric_drop(text: str) -> dict[str, float | bool]:
    """``"0.01"`` -> absolute drop; ``"3%"`` -> relative drop of 0.03."""
    relative = text.strip().endswith("%")
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        fail(f"--max-metric-drop: {text!r} is not a number or a percentage")
    if value < 0:
        fail("--max-metric-drop must not be negative")
    return {"max_metric_drop": value / 100 if relative else value, "relative": relative}
