"""``greenprof report / top / compare / export``: reading saved run directories."""

from __future__ import annotations

from pathlib import Path

import click

from greenprof.cli.common import fail, load_run, write_output
from greenprof.cli.group import cli
from greenprof.cli.options import RUN_DIR, count_option, grid_option, output_option
from greenprof.errors import GreenprofError
from greenprof.report import registry
from greenprof.schema import PHASES
from greenprof.session import REPORT_FILE


@cli.command()
@click.argument("run_dir", type=RUN_DIR)
@output_option("report.html")
@grid_option
def report(run_dir: Path, output: Path | None, grid_g_per_kwh: float | None) -> None:
    """Write the HTML report of RUN_DIR."""
    session = load_run(run_dir)
    renderer = registry.get("html")
    write_output(
        lambda path: renderer.write(session, path, grid_g_per_kwh=grid_g_per_kwh),
        output or run_dir / REPORT_FILE,
        "report",
    )


@cli.command()
@click.argument("run_dir", type=RUN_DIR)
@count_option
@click.option(
    "--phase",
    "phases",
    multiple=True,
    type=click.Choice(PHASES),
    help="Only this phase (repeatable).",
)
@click.option(
    "--region",
    "regions",
    multiple=True,
    help='Only this region (repeatable; "" for time outside any region).',
)
@click.option(
    "--by-rank", is_flag=True, help="One row per rank and module (runs of several ranks)."
)
def top(
    run_dir: Path, n: int, phases: tuple[str, ...], regions: tuple[str, ...], by_rank: bool
) -> None:
    """Print the modules of RUN_DIR that use the most energy."""
    session = load_run(run_dir)
    known = set(session.layers()["region"])
    unknown = [r for r in regions if r not in known]
    if unknown:
        shown_known = ", ".join(repr(r) for r in sorted(known))
        fail(f"{run_dir}: no region {unknown[0]!r} in this run (regions: {shown_known})")
    text = registry.get("console").text(
        session, n=n, phases=phases or None, regions=regions or None, by_rank=by_rank
    )
    click.echo(text)
    ran = set(session.layers()["phase"])
    for phase in phases:
        if phase not in ran:
            click.echo(f"note: no {phase} phase in this run (nothing ran in it)")


@cli.command()
@click.argument("run_a", type=RUN_DIR)
@click.argument("run_b", type=RUN_DIR)
@count_option
@click.option(
    "--fail-on-regression", is_flag=True, help="Exit 1 when a module got worse beyond uncertainty."
)
@click.option(
    "--threshold-pct",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="A module got worse only when it rose by more than this many percent (and beyond "
    "uncertainty).",
)
@click.option("--force", is_flag=True, help="Compare runs that share no module (totals only).")
def compare(
    run_a: Path, run_b: Path, n: int, fail_on_regression: bool, threshold_pct: float, force: bool
) -> None:
    """Compare per-module energy of RUN_A (before) and RUN_B (after), per step if counts differ."""
    from greenprof.report.compare import NoCommonModules, compare_sessions
    from greenprof.report.console import render_comparison

    try:
        comparison = compare_sessions(
            load_run(run_a),
            load_run(run_b),
            str(run_a),
            str(run_b),
            force=force,
            threshold_pct=threshold_pct,
        )
    except NoCommonModules as exc:
        fail(str(exc))
    click.echo(render_comparison(comparison, n=n))
    if fail_on_regression and len(comparison.worse()):
        raise SystemExit(1)


_EXPORTS = [name for name in registry.names(files=True) if name != "html"]
_TABLE_FORMATS = ("csv", "parquet")


@cli.command(
    epilog="Formats: " + "; ".join(f"{name}: {registry.get(name).description}" for name in _EXPORTS)
)
@click.argument("run_dir", type=RUN_DIR)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_EXPORTS),
    default="chrome",
    show_default=True,
    help="What to write (see the list below).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Output file (chrome) or folder (csv, parquet) [default: inside RUN_DIR].",
)
@click.option(
    "--by-rank",
    is_flag=True,
    help="csv, parquet: the layers table with one row per rank (a rank column first).",
)
def export(run_dir: Path, fmt: str, output: Path | None, by_rank: bool) -> None:
    """Export RUN_DIR: a span trace with power tracks, or its tables as data files."""
    if by_rank and fmt not in _TABLE_FORMATS:
        fail(f"--by-rank applies to the table formats ({', '.join(_TABLE_FORMATS)}), not {fmt}")
    session = load_run(run_dir)
    renderer = registry.get(fmt)
    assert renderer.default_file is not None
    options = {"by_rank": True} if by_rank else {}
    try:
        write_output(
            lambda path: renderer.write(session, path, **options),
            output or run_dir / renderer.default_file,
            fmt,
        )
    except GreenprofError as exc:
        fail(str(exc))
