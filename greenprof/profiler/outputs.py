"""What a profile hands on besides its session: the decorator's wrapper, TensorBoard scalars."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greenprof.errors import ConfigError
from greenprof.session import Session

logger = logging.getLogger(__name__)


def decorated(prof: Any, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` profiled by ``prof`` at every call; the latest session is ``wrapper.session``.

    Raises:
        ConfigError: ``func`` is not callable.
    """
    if not callable(func):
        raise ConfigError(f"profile() decorates a function, got {func!r}")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with prof:
                return func(*args, **kwargs)
        finally:
            wrapper.session = prof.session  # type: ignore[attr-defined]

    wrapper.profile = prof  # type: ignore[attr-defined]
    wrapper.session = None  # type: ignore[attr-defined]
    return wrapper


def write_tensorboard(session: Session, logdir: str | Path) -> None:
    """Write ``session``'s figures as TensorBoard scalars; a failure is logged, never raised."""
    from greenprof.presenters import present

    try:
        present("tensorboard", session, logdir=logdir)
    except Exception:  # the session is whole; only its copy in TensorBoard is missing
        logger.warning(
            "greenprof: could not write TensorBoard scalars to %s", logdir, exc_info=True
        )
