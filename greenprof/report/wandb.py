"""A session logged to Weights & Biases, through the ``wandb`` package.

Logged once, when the profile ends: the figures of :func:`greenprof.report.scalars.energy_scalars`
(totals with their 95 % bounds, joules per step, per rank, region and top layer) as one history
row and in the run's summary, and the top layers as a table (``greenprof/top_layers``). Into the
active run when there is one (``wandb.init`` in the user's script), else into a run of its own in
project ``$WANDB_PROJECT`` (default ``greenprof``), finished afterwards; ``WANDB_MODE=offline``
works as everywhere in wandb.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from greenprof.errors import require_module
from greenprof.report.scalars import energy_scalars, top_layers
from greenprof.report.tables import display_name
from greenprof.session import Session

#: Columns of the ``greenprof/top_layers`` table.
TABLE_COLUMNS = ["module", "type", "energy_j", "energy_lo_j", "energy_hi_j", "time_s", "calls"]


def import_wandb() -> ModuleType:
    """Return the ``wandb`` module.

    Raises:
        ConfigError: wandb is not installed, with the command that installs it.
    """
    require_module("wandb", "logging to W&B", "wandb")
    import wandb

    return wandb


def log_wandb(session: Session, target: Any = True) -> str:
    """Log ``session``'s energy figures to W&B.

    Args:
        session: the profile.
        target: ``True`` for the active run (or a new one), a project name for a new run in that
            project (unless a run is active), or a ``wandb`` run object to log into.

    Returns:
        The id of the run logged into.

    Raises:
        ConfigError: wandb is not installed.
    """
    wandb = import_wandb()
    run = target if hasattr(target, "log") else wandb.run
    own = run is None
    if own:
        project = target if isinstance(target, str) else None
        run = wandb.init(job_type="greenprof", reinit="create_new", **_run_names(project))
    try:
        figures = energy_scalars(session)
        rows = top_layers(session)
        table = wandb.Table(
            columns=TABLE_COLUMNS,
            data=[
                [display_name(r.module), r.type, r.energy_j, r.energy_lo_j, r.energy_hi_j]
                + [r.time_s, int(r.calls)]
                for r in rows.itertuples()
            ],
        )
        # No step: inside the user's run, the figures land at its current step.
        run.log({**figures, "greenprof/top_layers": table})
        run.summary.update(figures)
    finally:
        if own:
            run.finish()
    return str(run.id)


def _run_names(project: str | None) -> dict[str, str]:
    """Project, and under a launcher one run per rank grouped by the job's id."""
    names = {"project": project or os.environ.get("WANDB_PROJECT") or "greenprof"}
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE", "1")
    if rank is not None and world.isdigit() and int(world) > 1:
        names["name"] = f"rank{rank}"
        group = os.environ.get("TORCHELASTIC_RUN_ID")
        if group and group != "none":
            names["group"] = group
    return names
