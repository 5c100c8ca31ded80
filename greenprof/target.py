"""What ``greenprof run`` runs, and running it as ``python script.py`` / ``python -m`` would.

The script runs as ``__main__`` through :mod:`runpy` with ``sys.argv`` and ``sys.path[0]`` set as
Python sets them, both restored afterwards, as is the working directory.

Example:
    >>> target = Target.script("train.py", ["--epochs", "1"])
    >>> check(target)  # doctest: +SKIP
    >>> execute(target)  # doctest: +SKIP
    0
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import runpy
import shlex
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from greenprof.errors import ConfigError, Terminated

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


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


def execute(target: Target) -> int:
    """Run the target as ``__main__``; return its exit status (``sys.exit`` included)."""
    try:
        with _python_like_sys(target):
            if target.is_module:
                runpy.run_module(target.name, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(target.name, run_name="__main__")
    except Terminated:
        raise  # the signal's, not the script's: on through the profiler, which stops early
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


def command_of(target: Target) -> str:
    """The ``greenprof run`` command line that runs ``target``, quoted for a shell."""
    prefix = ["greenprof", "run", "-m"] if target.is_module else ["greenprof", "run"]
    return shlex.join([*prefix, target.name, *target.args])
