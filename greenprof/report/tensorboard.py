"""A session as TensorBoard scalars, through ``torch.utils.tensorboard``.

Written once, when the profile ends: the figures of :func:`greenprof.report.scalars.energy_scalars`
(totals with their 95 % bounds, joules per step, per rank, region and top layer) at the run's
step count, and each sensor's cumulative joules over the run (one point per sample, at its wall
time). Tags start with ``greenprof/``; estimated figures say so in their tag.
"""

from __future__ import annotations

from pathlib import Path

from greenprof.report.scalars import energy_scalars, sensor_points, start_time
from greenprof.session import Session


def write_tensorboard(session: Session, logdir: str | Path, *, step: int | None = None) -> str:
    """Write ``session``'s energy figures as TensorBoard scalars into ``logdir``.

    Args:
        session: the profile.
        logdir: TensorBoard log folder (created when missing).
        step: global step of the totals; the session's step count when None.

    Returns:
        The log folder, as a string.
    """
    from torch.utils.tensorboard import SummaryWriter

    at = int((session.meta.get("steps") or 0) if step is None else step)
    started = start_time(session)
    writer = SummaryWriter(log_dir=str(logdir))
    try:
        for tag, value in energy_scalars(session).items():
            writer.add_scalar(tag, value, at)
        for point in sensor_points(session):
            writer.add_scalar(point.tag, point.energy_j, point.index, walltime=started + point.t_s)
    finally:
        writer.close()
    return str(logdir)
