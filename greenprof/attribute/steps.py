"""The run cut at its step boundaries: energy and self time per window of consecutive steps.

This is the run's own evidence of how much a step varies, which ``greenprof compare`` resamples
to tell a change of the code from run-to-run noise. A window holds one or more consecutive steps:
enough that it lasts a few sensor updates (a shorter one would only see the counter's steps) and
that a long run keeps at most :data:`MAX_WINDOWS` of them. The first step (warm-up) is left out.

Window energy is every sensor's cumulative reading interpolated at the window's edges (as the
power fit reads it), with bounds from the readings just before and just after each edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from greenprof.attribute.windows import Windows, cumulative_at, window_times
from greenprof.schema import TimeTable

#: At most this many windows per run (a bootstrap needs no more; the table stays small).
MAX_WINDOWS = 100
#: A window lasts at least this many sensor update periods.
MIN_PERIODS = 2.0


@dataclass
class StepWindows:
    """Energy and time per window of consecutive steps.

    Attributes:
        edges_ns: ``n + 1`` window edges (step boundaries) on the profile's clock.
        steps: steps in each window.
        energy_j: joules in each window, all sensors together, with bounds ``energy_lo_j`` and
            ``energy_hi_j``.
        self_s: self seconds per (window, time-table column).
    """

    edges_ns: np.ndarray
    steps: np.ndarray
    energy_j: np.ndarray
    energy_lo_j: np.ndarray
    energy_hi_j: np.ndarray
    self_s: sparse.csr_matrix

    @property
    def durations_s(self) -> np.ndarray:
        """Wall time of each window, seconds."""
        return np.diff(self.edges_ns.astype(np.float64)) * 1e-9


def window_edges(
    marks_ns: np.ndarray, period_s: float, max_windows: int = MAX_WINDOWS
) -> tuple[np.ndarray, int]:
    """Group step boundaries into window edges: every ``g``-th mark; returns ``(edges, g)``.

    The run before the first mark (startup, the first step's warm-up) is in no window.

    Args:
        marks_ns: times at which steps ended, sorted.
        period_s: the sensors' update period (a window lasts at least :data:`MIN_PERIODS`).
        max_windows: most windows to return.
    """
    marks = np.asarray(marks_ns, np.int64)
    if len(marks) < 3:
        return marks[:0], 1
    gaps_s = np.diff(marks) * 1e-9
    typical_s = float(np.median(gaps_s)) or float(gaps_s.mean()) or 1e-9
    group = max(
        1,
        int(np.ceil(len(gaps_s) / max_windows)),
        int(np.ceil(MIN_PERIODS * period_s / typical_s)),
    )
    return marks[::group], group


def step_windows(
    edges_ns: np.ndarray,
    steps_per_window: float,
    series: Sequence[tuple[np.ndarray, np.ndarray]],
    table: TimeTable,
) -> StepWindows:
    """Energy and self time of each window between consecutive ``edges_ns``.

    Args:
        edges_ns: window edges (from :func:`window_edges`).
        steps_per_window: steps between two edges (the marks grouped into a window, times steps
            per mark when forward and optimizer boundaries were recorded together).
        series: each sensor's ``(t_ns, cumulative energy_j)``.
        table: the run's time table (self time per column, binned).
    """
    edges = np.asarray(edges_ns, np.float64)
    n = max(len(edges) - 1, 0)
    mid, lo, hi = np.zeros(len(edges)), np.zeros(len(edges)), np.zeros(len(edges))
    for t_ns, energy_j in series:
        if len(t_ns) >= 2:
            m, low, high = cumulative_at(np.asarray(t_ns), np.asarray(energy_j), edges)
            mid, lo, hi = mid + m, lo + low, hi + high
    energy = np.maximum(np.diff(mid), 0.0)
    energy_lo = np.minimum(np.maximum(lo[1:] - hi[:-1], 0.0), energy)
    energy_hi = np.maximum(hi[1:] - lo[:-1], energy)
    if n == 0:
        self_s = sparse.csr_matrix((0, len(table.columns)))
    else:
        self_s = window_times(table, Windows(edges, edges.copy(), energy))
    steps = np.full(n, float(steps_per_window))
    return StepWindows(edges.astype(np.int64), steps, energy, energy_lo, energy_hi, self_s)
