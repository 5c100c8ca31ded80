"""A session as TensorBoard scalars, through ``torch.utils.tensorboard``.

Written once, when the profile ends: the totals (joules, joules per step, with their 95 % bounds),
each sensor's cumulative joules over the run (one point per sample, at its wall time), and the
joules of the top layers. Tags start with ``greenprof/``; estimated figures say so in their tag.
"""

from __future__ import annotations

from pathlib import Path

from greenprof.report.tables import display_name, module_rows
from greenprof.session import Session

#: Layers written as scalars, most energy first.
TOP_LAYERS = 10


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

    kind = "estimated_" if session.estimated else ""
    steps = session.meta.get("steps") or 0
    at = int(steps if step is None else step)
    started = _start_time(session)
    writer = SummaryWriter(log_dir=str(logdir))
    try:
        writer.add_scalar(f"greenprof/{kind}energy_j", session.total_energy_j, at)
        writer.add_scalar(f"greenprof/{kind}energy_lo_j", session.total_energy_lo_j, at)
        writer.add_scalar(f"greenprof/{kind}energy_hi_j", session.total_energy_hi_j, at)
        writer.add_scalar("greenprof/duration_s", session.duration_s, at)
        if steps:
            writer.add_scalar(
                f"greenprof/{kind}energy_per_step_j", session.total_energy_j / steps, at
            )
        samples = session.samples()
        for sensor, rows in samples.groupby("sensor", sort=True):
            for index, (t_s, energy_j) in enumerate(
                zip(rows["t_s"], rows["energy_j"], strict=True)
            ):
                writer.add_scalar(
                    f"greenprof/sensor/{sensor}_j", float(energy_j), index, walltime=started + t_s
                )
        for row in module_rows(session).head(TOP_LAYERS).itertuples():
            writer.add_scalar(f"greenprof/layer/{display_name(row.module)}_j", row.energy_j, at)
    finally:
        writer.close()
    return str(logdir)


def _start_time(session: Session) -> float:
    import datetime as dt

    started = session.meta.get("started_at")
    try:
        return dt.datetime.fromisoformat(str(started)).timestamp()
    except ValueError:
        return 0.0
