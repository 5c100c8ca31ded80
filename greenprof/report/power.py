"""Power over time from cumulative energy samples, and phase intervals from the span trace."""

from __future__ import annotations

import numpy as np
import pandas as pd


def sensor_series(samples: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split a samples frame into ``{sensor: (t_s, cumulative energy_j)}``, each sorted by time."""
    series = {}
    for sensor, rows in samples.groupby("sensor", sort=True):
        rows = rows.sort_values("t_s")
        series[str(sensor)] = (
            rows["t_s"].to_numpy(dtype=float),
            rows["energy_j"].to_numpy(dtype=float),
        )
    return series


def update_period_s(t_s: np.ndarray, energy_j: np.ndarray) -> float:
    """Return the median time between changes of a counter (how often the sensor updates).

    NVML energy moves every 20-100 ms even when sampled every 10 ms; a power curve finer than that
    would show the counter's steps, not the device's power.
    """
    changed = t_s[1:][np.diff(energy_j) != 0]
    if len(changed) < 2:
        return float(t_s[-1] - t_s[0]) if len(t_s) > 1 else 0.0
    return float(np.median(np.diff(changed)))


def power_w(
    t_s: np.ndarray,
    energy_j: np.ndarray,
    *,
    max_points: int,
    start_s: float | None = None,
    stop_s: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return mean power per bin as the derivative of cumulative energy, at most ``max_points``.

    Energy at each bin edge is interpolated from the counter, so the bins together hold exactly the
    joules the counter moved: downsampling never loses or invents energy.

    Args:
        t_s: sample times, sorted.
        energy_j: cumulative joules at those times.
        max_points: the most bins to return.
        start_s: window start; the first sample when ``None``.
        stop_s: window end; the last sample when ``None``.

    Returns:
        ``(bin edges in s, mean power in W per bin)``, one more edge than bins; both empty when
        there are fewer than two samples.
    """
    if len(t_s) < 2:
        return np.empty(0), np.empty(0)
    start = float(t_s[0]) if start_s is None else start_s
    stop = float(t_s[-1]) if stop_s is None else stop_s
    if stop <= start:
        return np.empty(0), np.empty(0)
    finest_s = max(update_period_s(t_s, energy_j), float(np.median(np.diff(t_s))))
    t_s, energy_j = _update_points(t_s, energy_j, finest_s)
    bins = int(max(1, min(max_points, (stop - start) / finest_s if finest_s > 0 else max_points)))
    edges = np.linspace(start, stop, bins + 1)
    at_edges = np.interp(edges, t_s, energy_j)
    return edges, np.diff(at_edges) / np.diff(edges)


def _update_points(
    t_s: np.ndarray, energy_j: np.ndarray, period_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the samples where the counter moved, the last one, and the ends of long plateaus.

    Between two updates a counter is flat however often it is polled; interpolating over those
    plateaus would put all of an update's joules into whichever bin holds the step, drawing spikes
    and gaps that the device never had. A plateau much longer than the update period is real idle
    time, so its end is kept.
    """
    keep = np.concatenate(([True], np.diff(energy_j) != 0))
    keep[-1] = True
    moved = np.flatnonzero(keep)
    idle = moved[1:][np.diff(t_s[moved]) > 2 * period_s]
    keep[idle - 1] = True
    return t_s[keep], energy_j[keep]


def phase_intervals(spans: pd.DataFrame, phases: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Return, per phase, the merged ``(start_s, width_s)`` intervals its spans cover.

    Args:
        spans: a frame shaped like :meth:`greenprof.Session.spans`.
        phases: the phases wanted; absent phases map to an empty array.
    """
    intervals = {}
    for phase in phases:
        rows = spans[spans["phase"] == phase]
        intervals[phase] = _merge(rows["t0_s"].to_numpy(float), rows["t1_s"].to_numpy(float))
    return intervals


def _merge(t0_s: np.ndarray, t1_s: np.ndarray) -> np.ndarray:
    if len(t0_s) == 0:
        return np.empty((0, 2))
    order = np.argsort(t0_s, kind="stable")
    t0_s, t1_s = t0_s[order], t1_s[order]
    reach = np.maximum.accumulate(t1_s)
    # A new interval starts where a span begins after everything before it has ended.
    starts = np.concatenate(([True], t0_s[1:] > reach[:-1]))
    begin = t0_s[starts]
    end = np.maximum.reduceat(t1_s, np.flatnonzero(starts))
    return np.column_stack((begin, end - begin))
