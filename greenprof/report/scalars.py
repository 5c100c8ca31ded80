"""What a session logs to experiment trackers (TensorBoard, W&B): one list of named figures.

Every tracker logs the same figures under the same names; only how it writes them differs
(``report/tensorboard.py``, ``report/wandb.py``). Names start with ``greenprof/``; estimated
figures say so in their name (``greenprof/estimated_energy_j``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import pandas as pd

from greenprof.report.tables import display_name, module_rows, region_rows
from greenprof.session import Session

#: Layers logged, most energy first.
TOP_LAYERS = 10


class SensorPoint(NamedTuple):
    """One sample of a sensor's cumulative joules, for trackers that plot series."""

    tag: str
    index: int
    energy_j: float
    t_s: float


def energy_scalars(session: Session) -> dict[str, float]:
    """The run's figures, by name: totals with bounds, per step, per rank, region and layer.

    Returns:
        ``{name: value}``: ``greenprof/{estimated_}energy_j`` (and ``_lo_j``, ``_hi_j``),
        ``greenprof/duration_s``, ``greenprof/steps`` and ``greenprof/{estimated_}
        energy_per_step_j`` (with bounds) when steps were counted,
        ``greenprof/rank/<N>/{energy_j,duration_s}`` for several ranks,
        ``greenprof/region/<name>_j`` when there are regions, and
        ``greenprof/layer/<module>_j`` for the :data:`TOP_LAYERS` modules with most self energy.
    """
    kind = "estimated_" if session.estimated else ""
    total = (session.total_energy_j, session.total_energy_lo_j, session.total_energy_hi_j)
    out: dict[str, float] = {}
    for suffix, value in zip(("", "_lo", "_hi"), total, strict=True):
        out[f"greenprof/{kind}energy{suffix}_j"] = float(value)
    out["greenprof/duration_s"] = session.duration_s
    steps = session.meta.get("steps")
    if isinstance(steps, int) and steps > 0:
        out["greenprof/steps"] = float(steps)
        for suffix, value in zip(("", "_lo", "_hi"), total, strict=True):
            out[f"greenprof/{kind}energy_per_step{suffix}_j"] = float(value) / steps
    for row in session.by_rank().itertuples():
        out[f"greenprof/rank/{row.rank}/{kind}energy_j"] = float(row.energy_j)
        out[f"greenprof/rank/{row.rank}/duration_s"] = float(row.duration_s)
    for row in region_rows(session).itertuples():
        out[f"greenprof/region/{row.region or '(none)'}_{kind}j"] = float(row.energy_j)
    for row in top_layers(session).itertuples():
        out[f"greenprof/layer/{display_name(row.module)}_{kind}j"] = float(row.energy_j)
    return out


def top_layers(session: Session, n: int = TOP_LAYERS) -> pd.DataFrame:
    """The ``n`` modules with most self energy (columns of :func:`module_rows`)."""
    return module_rows(session).head(n)


def sensor_points(session: Session) -> Iterator[SensorPoint]:
    """Each sensor's cumulative joules, sample by sample (tag ``greenprof/sensor/<name>_j``)."""
    for sensor, rows in session.samples().groupby("sensor", sort=True):
        for index, (t_s, energy_j) in enumerate(zip(rows["t_s"], rows["energy_j"], strict=True)):
            yield SensorPoint(f"greenprof/sensor/{sensor}_j", index, float(energy_j), float(t_s))


def start_time(session: Session) -> float:
    """The run's start as a POSIX timestamp (0 when it was not recorded)."""
    import datetime as dt

    started = session.meta.get("started_at")
    try:
        return dt.datetime.fromisoformat(str(started)).timestamp()
    except ValueError:
        return 0.0
