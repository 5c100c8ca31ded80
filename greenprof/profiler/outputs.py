"""What a profile hands on besides its session: the decorator's wrapper, tracker logs."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greenprof.errors import ConfigError, require_module
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


def to_trackers(session: Session, *, tensorboard: str | Path | None, wandb: Any) -> None:
    """Log ``session``'s figures to TensorBoard and/or W&B; a failure is logged, never raised."""
    from greenprof.presenters import present

    wanted = [("tensorboard", {"logdir": tensorboard}, tensorboard is not None)]
    wanted.append(("wandb", {"target": wandb}, wandb is not None and wandb is not False))
    for name, options, on in wanted:
        if not on:
            continue
        try:
            present(name, session, **options)
        except Exception:  # the session is whole; only its copy in the tracker is missing
            logger.warning("greenprof: could not log the figures to %s", name, exc_info=True)


def check_wandb(wandb: Any) -> None:
    """Fail before anything runs when W&B logging is asked for but wandb is not installed.

    Raises:
        ConfigError: wandb is not installed, with the command that installs it.
    """
    if wandb is not None and wandb is not False:
        require_module("wandb", "profile(wandb=...)", "wandb")
