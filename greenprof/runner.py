"""Run a user's script or module under the profiler, as ``python script.py`` / ``python -m`` would.

The script runs as ``__main__`` through :mod:`runpy` with ``sys.argv`` and ``sys.path[0]`` set as
Python sets them, both restored afterwards. Its exit status becomes greenprof's, and the run
directory is written whatever way the script ended: normally, ``sys.exit(n)``, an exception or
Ctrl-C.

Example:
    >>> target = Target.script("train.py", ["--epochs", "1"])
    >>> result = run(target, RunOptions(out=Path("reports/try")))  # doctest: +SKIP
    >>> result.exit_status, result.report  # doctest: +SKIP
    (0, PosixPath('reports/try/report.html'))
"""

from __future__ import annotations

import datetime as dt
import importlib.machinery
import importlib.util
import logging
import os
import runpy
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenprof import launch
from greenprof.errors import ConfigError, GreenprofError
from greenprof.session import Session

logger = logging.getLogger(__name__)

#: Exit status of a script stopped by Ctrl-C, as shells report it (128 + SIGINT).
EXIT_INTERRUPTED = 130

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: Where run directories go unless ``--out`` says otherwise.
REPORTS_DIR = Path("reports")


@dataclass(frozen=True)
class Target:
    """What to run: a script file or a module, and the arguments it gets.

    Attributes:
        name: the script path or the module name, as the user wrote it.
        args: arguments after it, passed untouched as ``sys.argv[1:]``.
        is_module: True for ``-m module``.
    """

    name: str
    args: tuple[str, ...] = ()
    is_module: bool = False

    @classmethod
    def script(cls, path: str, args: Sequence[str] = ()) -> Target:
        """Return the target ``python path args...`` would run."""
        return cls(path, tuple(args), False)

    @classmethod
    def module(cls, name: str, args: Sequence[str] = ()) -> Target:
        """Return the target ``python -m name args...`` would run."""
        return cls(name, tuple(args), True)

    @property
    def stem(self) -> str:
        """Short name for the run directory: the script's stem or the module's name."""
        return self.name if self.is_module else Path(self.name).stem


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
        exit_status: the script's exit status (130 after Ctrl-C, 1 after an exception).
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


def check(target: Target) -> None:
    """Fail early, before profiling starts, when the target cannot run at all.

    Raises:
        ConfigError: the script file or module does not exist.
        SyntaxError: the script does not compile; display it with :func:`print_exception`.
    """
    if target.is_module:
        _module_code(target.name)
        return
    path = Path(target.name)
    if not path.is_file():
        raise ConfigError(f"{target.name}: no such file")
    compile(path.read_bytes(), os.path.abspath(path), "exec")  # the name Python shows


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
    meta = {"command": options.command or _command_of(target)}
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
    with launch.terminate_as_exit(ranks is not None, lambda: outcome.running):
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
    session.meta["interrupted"] = exit_status == EXIT_INTERRUPTED
    if ranks is not None:
        result = RunResult(exit_status, run_dir, None, session)

        def report(merged: Session) -> None:
            result.session = merged
            _report(result, options)

        launch.save_part_and_merge(session, run_dir, ranks, then=report)
        return result
    return _save(session, run_dir, options)


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


def print_exception(exc: BaseException) -> None:
    """Print ``exc`` to stderr as Python would: without greenprof's and runpy's own frames.

    A syntax error in the script itself is then shown without a traceback, as Python shows it.
    """
    tb = exc.__traceback__
    while tb is not None and _is_ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)
    sys.stderr.flush()


def _is_ours(filename: str) -> bool:
    return (
        filename.startswith(_PACKAGE_DIR)
        or filename == runpy.__file__
        or filename.startswith("<frozen ")
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
            self.status = _execute(target)
        except BaseException as exc:
            self.error = exc
            raise  # on through the profiler, which records what stopped the run
        finally:
            self.running = False

    @property
    def exit_status(self) -> int:
        if self.error is None:
            return self.status
        return EXIT_INTERRUPTED if isinstance(self.error, KeyboardInterrupt) else 1


def _execute(target: Target) -> int:
    """Run the target as ``__main__``; return its exit status (``sys.exit`` included)."""
    try:
        with _python_like_sys(target):
            if target.is_module:
                runpy.run_module(target.name, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(target.name, run_name="__main__")
    except SystemExit as exc:
        return _exit_status(exc)
    return 0


def _exit_status(exc: SystemExit) -> int:
    """Return the status Python's interpreter would exit with for ``exc``."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)  # sys.exit("message") prints the message and exits 1
    return 1


@contextmanager
def _path0(value: str) -> Iterator[None]:
    """Set ``sys.path[0]`` (where the interpreter looks first) for the block, then restore it."""
    saved = sys.path[0] if sys.path else None
    if sys.path:
        sys.path[0] = value
    else:
        sys.path.insert(0, value)
    try:
        yield
    finally:
        if saved is not None and sys.path:
            sys.path[0] = saved


@contextmanager
def _python_like_sys(target: Target) -> Iterator[None]:
    """Set ``sys.argv`` and ``sys.path[0]`` as the interpreter would; restore them and the cwd."""
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    # run_module replaces argv[0] with the module's file; a script's folder comes first on the path.
    path0 = os.getcwd() if target.is_module else str(Path(target.name).resolve().parent)
    sys.argv = [target.name, *target.args]
    try:
        with _path0(path0):
            yield
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)


def _module_code(name: str) -> None:
    """Find and compile a module (a package's ``__main__``) as ``python -m`` would."""
    try:
        with _path0(os.getcwd()):  # python -m finds modules in the current directory
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.submodule_search_locations is not None:
                spec = importlib.util.find_spec(f"{name}.__main__")
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot import ({exc})") from None
    if spec is None or spec.loader is None:
        raise ConfigError(f"{name}: no such module")
    get_code = getattr(spec.loader, "get_code", None)
    if isinstance(spec.loader, importlib.machinery.SourceFileLoader) and get_code:
        get_code(spec.name)  # raises SyntaxError like the interpreter would


def _command_of(target: Target) -> str:
    import shlex

    prefix = ["greenprof", "run", "-m"] if target.is_module else ["greenprof", "run"]
    return shlex.join([*prefix, target.name, *target.args])


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
