"""Run a user's script or module under the profiler, as ``python script.py`` / ``python -m`` would.

The script runs as ``__main__`` through :mod:`runpy` with ``sys.argv`` and ``sys.path[0]`` set as
Python sets them, both restored afterwards. Its exit status becomes greenprof's, and the run
directory is written whatever way the script ended: normally, ``sys.exit(n)``, an exception,
Ctrl-C (status 130) or SIGTERM (status 143, as from a scheduler's preemption). A second Ctrl-C
while greenprof attributes the energy still saves the run, with the sensors' totals and samples
but no per-layer split (which cannot be redone later: the time table is not saved).

Example:
    >>> target = Target.script("train.py", ["--epochs", "1"])
    >>> result = run(target, RunOptions(out=Path("reports/try")))  # doctest: +SKIP
    >>> result.exit_status, result.report  # doctest: +SKIP
    (0, PosixPath('reports/try/report.html'))
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenprof import launch
from greenprof.errors import ConfigError, GreenprofError, Terminated
from greenprof.session import Session
from greenprof.target import Target, check, command_of, execute, print_exception

__all__ = ["RunOptions", "RunResult", "Target", "check", "print_exception", "run", "run_dir_for"]

logger = logging.getLogger(__name__)

#: Exit status of a script stopped by Ctrl-C, as shells report it (128 + SIGINT).
EXIT_INTERRUPTED = 130
#: Exit status of a script stopped by SIGTERM (a scheduler's preemption, a launcher), 128 + 15.
EXIT_TERMINATED = 143

#: Where run directories go unless ``--out`` says otherwise.
REPORTS_DIR = Path("reports")


@dataclass
class RunOptions:
    """How to profile and where to write.

    Attributes:
        interval_s: sensor sampling interval.
        sensors: sensor kinds to use (``"nvml"``, ``"rapl"``, ``"estimate"``); auto when empty.
        rated_cpu_power_w: rated CPU power for the CPU estimate.
        out: run directory; ``reports/<stem>-<timestamp>/`` when ``None``.
        report: write ``report.html`` (the session files are written either way).
        grid_g_per_kwh: grid carbon intensity stored with the run for its CO2 estimate.
        command: the command line stored in the session, as the user typed it.
        calibrate: replay layers after the run to measure their power (see ``profile``).
        calibrate_s: the calibration's time budget; None for the default.
        tensorboard, wandb: also log the figures as TensorBoard scalars there, or to W&B.
    """

    interval_s: float = 0.01
    sensors: Sequence[str] = ()
    rated_cpu_power_w: float | None = None
    out: Path | None = None
    report: bool = True
    grid_g_per_kwh: float | None = None
    command: str = ""
    calibrate: bool = True
    calibrate_s: float | None = None
    tensorboard: Path | None = None
    wandb: bool = False


@dataclass
class RunResult:
    """How a profiled run ended and where its files are.

    Attributes:
        exit_status: the script's exit status (130 after Ctrl-C, 143 after SIGTERM, 1 after an
            exception).
        run_dir: the directory holding the session files.
        report: the HTML report, or ``None`` when none was written.
        session: the profile.
        problems: what went wrong writing the report, if anything (the session was saved).
    """

    exit_status: int
    run_dir: Path
    report: Path | None
    session: Session
    problems: list[str] = field(default_factory=list)


def run(target: Target, options: RunOptions) -> RunResult:
    """Profile ``target`` to the end, however it ends, and save the run directory.

    Call :func:`check` first: errors in the target itself then show before any profiling.

    Returns:
        The exit status and the files written. Exceptions from the script are printed to
        stderr as Python prints them and turned into exit status 1.

    Raises:
        GreenprofError: the profiler could not start (e.g. a requested sensor is unavailable).
    """
    from greenprof.profiler import profile

    ranks = launch.rank_info()
    run_dir = _shared_run_dir(target, options.out, ranks)
    if ranks is not None:
        run_dir = _make_run_dir(target, launch.part_dir(run_dir, ranks.rank)).parent
    else:
        run_dir = _make_run_dir(target, run_dir)
    meta = {"command": options.command or command_of(target)}
    if options.grid_g_per_kwh is not None:
        meta["grid_g_per_kwh"] = options.grid_g_per_kwh
    prof = profile(
        sensors=list(options.sensors) or None,
        interval_s=options.interval_s,
        rated_cpu_power_w=options.rated_cpu_power_w,
        meta=meta,
        calibrate=options.calibrate,
        calibrate_s=options.calibrate_s,
        tensorboard=launch.rank_folder(options.tensorboard, ranks),
        wandb=options.wandb or None,
    )
    outcome = _Outcome()
    with launch.terminate_as_exit(lambda: outcome.running):
        return _profile_and_save(prof, outcome, target, run_dir, ranks, options)


def _profile_and_save(
    prof: Any,
    outcome: _Outcome,
    target: Target,
    run_dir: Path,
    ranks: launch.RankInfo | None,
    options: RunOptions,
) -> RunResult:
    try:
        with prof:
            outcome.run(target)
    except KeyboardInterrupt as exc:
        if exc is outcome.error:
            print_exception(exc)
        elif prof.session is None:
            raise
        else:  # Ctrl-C while greenprof finished: save the session it kept (sensor totals)
            outcome.error = exc
            _say("interrupted while attributing; saving the sensors' totals, no per-layer split")
    except Terminated as exc:
        _say(f"{exc}; saving what was measured")
    except BaseException as exc:
        if exc is not outcome.error:  # greenprof's own failure, not the script's
            _remove_if_empty(run_dir)  # e.g. a refused sensor: no empty run directory behind
            raise
        print_exception(exc)
    exit_status = outcome.exit_status
    if prof.session is None:  # the profiler failed while stopping; it logged why
        raise GreenprofError("the profiler produced no session; see the messages above")
    session = prof.session
    session.meta["exit_status"] = exit_status
    session.meta["interrupted"] = exit_status in (EXIT_INTERRUPTED, EXIT_TERMINATED)
    if ranks is not None:
        result = RunResult(exit_status, run_dir, None, session)

        def report(merged: Session) -> None:
            result.session = merged
            _report(result, options)

        launch.save_part_and_merge(session, run_dir, ranks, then=report)
        return result
    return _save(session, run_dir, options)


def _say(message: str) -> None:
    print(f"greenprof: {message}", file=sys.stderr, flush=True)


def _shared_run_dir(target: Target, out: Path | None, ranks: launch.RankInfo | None) -> Path:
    """The run directory; every rank of a job must name the same one."""
    if ranks is None or out is not None:
        return run_dir_for(target, out)
    if ranks.run_id:
        return REPORTS_DIR / f"{target.stem}-{ranks.run_id}"
    raise ConfigError(
        "several processes are profiled at once (WORLD_SIZE > 1) without --out: give every "
        "rank the same run directory with --out DIR, or launch with greenprof run "
        "--nproc-per-node"
    )


class _Outcome:
    """How the script ended: its exit status, or the exception that escaped it."""

    def __init__(self) -> None:
        self.status = 0
        self.error: BaseException | None = None
        self.running = False

    def run(self, target: Target) -> None:
        self.running = True
        try:
            self.status = execute(target)
        except BaseException as exc:
            self.error = exc
            raise  # on through the profiler, which records what stopped the run
        finally:
            self.running = False

    @property
    def exit_status(self) -> int:
        if self.error is None:
            return self.status
        if isinstance(self.error, Terminated):
            return int(self.error.code)
        return EXIT_INTERRUPTED if isinstance(self.error, KeyboardInterrupt) else 1


def _make_run_dir(target: Target, out: Path | None) -> Path:
    """Create the run directory now, so that a bad ``--out`` fails before the script runs.

    The path is made absolute: the script may change the working directory.
    """
    path = run_dir_for(target, out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot create the run directory ({exc.strerror or exc})"
        ) from None
    return path.absolute()


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()  # only succeeds when nothing was written into it
    except OSError:
        pass


def run_dir_for(target: Target, out: Path | None) -> Path:
    """The run directory: ``out``, else ``reports/<script>-<time>`` (never an existing one)."""
    if out is not None:
        return out
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = REPORTS_DIR / f"{target.stem}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():  # two runs in the same second must not share a directory
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _save(session: Session, run_dir: Path, options: RunOptions) -> RunResult:
    session.save(run_dir)
    return _report(RunResult(session.meta["exit_status"], run_dir, None, session), options)


def _report(result: RunResult, options: RunOptions) -> RunResult:
    """Write ``report.html`` of ``result.session`` into its run directory, when asked."""
    session, run_dir = result.session, result.run_dir
    if not options.report:
        return result
    from greenprof.report.html import write_html
    from greenprof.session import REPORT_FILE

    try:
        result.report = write_html(session, run_dir / REPORT_FILE)
    except Exception as exc:  # the session is saved; `greenprof report` can retry later
        logger.debug("report failed", exc_info=True)
        result.problems.append(f"could not write the report ({type(exc).__name__}: {exc})")
    return result
