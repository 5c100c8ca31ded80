"""What every command does the same way: one-line errors, loading runs, writing files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from greenprof.errors import GreenprofError

if TYPE_CHECKING:
    from greenprof.session import Session


def fail(message: str, status: int = 2) -> NoReturn:
    """Print a one-line error (no traceback) and exit."""
    click.echo(f"greenprof: error: {message}", err=True)
    raise SystemExit(status)


def load_run(run_dir: Path) -> Session:
    """Load a run directory, turning every way it can be broken into a one-line error."""
    from greenprof.session import Session

    try:
        return Session.load(run_dir)
    except GreenprofError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or run_dir}: {exc.strerror or exc}")


def write_output(render: Callable[[Path], Path], path: Path, what: str) -> None:
    """Write an output file, turning a filesystem error into a one-line message."""
    try:
        written = render(path)
    except OSError as exc:
        fail(f"{exc.filename or path}: {exc.strerror or exc}")
    click.echo(f"greenprof: {what} written to {shown(written)}")


def shown(path: Path) -> str:
    """Return ``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
