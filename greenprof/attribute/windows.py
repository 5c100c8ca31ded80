"""Cut a sensor's cumulative energy into windows and find who ran in each.

A counter that updates every 20-100 ms holds its value between updates, so only its changes carry
timing information: windows run from one change to the next. Each change happened somewhere between
two polls; time in that gap is shared between the neighbouring windows by probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from greenprof.schema import TimeTable


@dataclass
class Windows:
    """A sensor's energy cut at its update points.

    Window ``w`` runs from edge ``w`` to edge ``w + 1``. An edge is known only to lie between two
    polls (``edge_lo_ns`` .. ``edge_hi_ns``): the counter changed somewhere in between. Time in that
    gap is shared between the two windows by the probability that the update came before it.

    Attributes:
        edge_lo_ns: earliest time of each edge.
        edge_hi_ns: latest time of each edge.
        energy_j: joules in each window (one fewer than edges).
        end_uncertainty_j: how uncertain the two ends of the interval are, for a counter that
            updates slower than it is polled.
    """

    edge_lo_ns: np.ndarray
    edge_hi_ns: np.ndarray
    energy_j: np.ndarray
    end_uncertainty_j: float = 0.0

    @property
    def durations_s(self) -> np.ndarray:
        """Expected length of each window, seconds."""
        middle = 0.5 * (self.edge_lo_ns + self.edge_hi_ns)
        return np.diff(middle) * 1e-9


def energy_windows(
    t_ns: np.ndarray, energy_j: np.ndarray, t_start_ns: int, t_end_ns: int
) -> Windows:
    """Cut a cumulative energy series into windows at its update points.

    Args:
        t_ns: sample times.
        energy_j: cumulative joules at each sample.
        t_start_ns: start of the interval to cover.
        t_end_ns: end of the interval to cover.

    Returns:
        The windows covering ``t_start_ns`` .. ``t_end_ns``.
    """
    t = np.asarray(t_ns, np.float64)
    e = np.asarray(energy_j, np.float64)
    if len(t) < 2 or t_end_ns <= t_start_ns:
        ends = np.array([t_start_ns, max(t_end_ns, t_start_ns + 1)], np.float64)
        return Windows(ends, ends.copy(), np.zeros(1))
    lo, hi, points_e = update_gaps(t, e)
    stepped = bool(np.any(hi > lo))
    # The midpoint of the gap is the unbiased guess of when the counter changed.
    points_t = 0.5 * (lo + hi)
    inner = (lo > t_start_ns) & (hi < t_end_ns)
    edge_lo = np.concatenate([[float(t_start_ns)], lo[inner], [float(t_end_ns)]])
    edge_hi = np.concatenate([[float(t_start_ns)], hi[inner], [float(t_end_ns)]])
    curve = _interp_linear(0.5 * (edge_lo + edge_hi), points_t, points_e)
    window_j = np.maximum(np.diff(curve), 0.0)
    end_uncertainty = 0.5 * float(window_j[0] + window_j[-1]) if stepped else 0.0
    return Windows(edge_lo, edge_hi, window_j, end_uncertainty)


def update_gaps(
    t_ns: np.ndarray, energy_j: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where a sensor's reading changed: ``(lo_ns, hi_ns, energy_j after the change)``.

    A counter that holds its value between updates changed somewhere between the last poll that
    saw the old value (``lo``) and the first that saw the new one (``hi``). A counter that changes
    at (nearly) every poll is read as exact at each poll: ``lo == hi``.
    """
    t = np.asarray(t_ns, np.float64)
    e = np.asarray(energy_j, np.float64)
    changed = np.flatnonzero(np.diff(e) != 0) + 1
    if len(changed) >= 2 and len(changed) < 0.9 * (len(t) - 1):
        return t[changed - 1], t[changed], e[changed]
    return t, t, e


def cumulative_at(
    t_ns: np.ndarray, energy_j: np.ndarray, at_ns: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A cumulative reading at times ``at_ns``: ``(estimate, lower bound, upper bound)``.

    The estimate interpolates between the counter's update points, as :func:`energy_windows`
    does; the bounds are the readings of the polls just before and just after each time.
    """
    t = np.asarray(t_ns, np.float64)
    e = np.asarray(energy_j, np.float64)
    at = np.asarray(at_ns, np.float64)
    lo, hi, points_e = update_gaps(t, e)
    estimate = _interp_linear(at, 0.5 * (lo + hi), points_e)
    before = np.clip(np.searchsorted(t, at, "right") - 1, 0, len(t) - 1)
    after = np.clip(np.searchsorted(t, at, "left"), 0, len(t) - 1)
    low, high = e[before], e[after]
    return np.clip(estimate, low, np.maximum(high, low)), low, np.maximum(high, low)


def union_of_gaps(gaps: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Merge several sensors' update gaps into sorted, disjoint ``(lo_ns, hi_ns)`` intervals."""
    lo = np.concatenate([g[0] for g in gaps]) if gaps else np.zeros(0)
    hi = np.concatenate([g[1] for g in gaps]) if gaps else np.zeros(0)
    if not len(lo):
        return lo, hi
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], np.maximum.accumulate(hi[order])
    # A new interval starts where it begins after everything before it has ended.
    starts = np.ones(len(lo), bool)
    starts[1:] = lo[1:] > hi[:-1]
    at = np.flatnonzero(starts)
    ends = np.r_[at[1:] - 1, len(lo) - 1]
    return lo[at], hi[ends]


def _interp_linear(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Linear interpolation that extrapolates the end segments' slopes (np.interp clamps)."""
    y = np.interp(x, xp, fp)
    if len(xp) >= 2:
        left = x < xp[0]
        right = x > xp[-1]
        if left.any():
            slope = (fp[1] - fp[0]) / max(xp[1] - xp[0], 1.0)
            y[left] = fp[0] + slope * (x[left] - xp[0])
        if right.any():
            slope = (fp[-1] - fp[-2]) / max(xp[-1] - xp[-2], 1.0)
            y[right] = fp[-1] + slope * (x[right] - xp[-1])
    return y


def window_times(table: TimeTable, windows: Windows) -> sparse.csr_matrix:
    """Return self seconds per (window, column).

    Each time bin is spread uniformly over its span and cut at every edge bound; a piece inside an
    edge's uncertainty gap goes to the later window with the probability that the edge came first.
    """
    starts, ends, self_ns = table.binned()
    lo, hi = windows.edge_lo_ns, windows.edge_hi_ns
    n_windows = len(lo) - 1
    n_columns = len(table.columns)
    if len(starts) == 0 or n_windows <= 0:
        return sparse.csr_matrix((max(n_windows, 0), n_columns))
    starts = starts.astype(np.float64)
    ends = np.maximum(ends.astype(np.float64), starts)
    cuts = np.unique(np.concatenate([lo, hi]))
    first = np.searchsorted(cuts, starts, "right")
    last = np.searchsorted(cuts, ends, "left")
    pieces = np.maximum(last - first, 0) + 1
    cell = np.repeat(np.arange(len(starts)), pieces)
    offset = np.arange(len(cell)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    cut_before = cuts[np.clip(first[cell] + offset - 1, 0, len(cuts) - 1)]
    cut_after = cuts[np.clip(first[cell] + offset, 0, len(cuts) - 1)]
    piece_start = np.where(offset == 0, starts[cell], cut_before)
    piece_end = np.where(offset == pieces[cell] - 1, ends[cell], cut_after)
    seconds = self_ns[cell] * (piece_end - piece_start) / np.maximum(ends - starts, 1.0)[cell]
    seconds *= 1e-9
    middle = 0.5 * (piece_start + piece_end)
    # Pieces outside the sensor's coverage (e.g. after it failed) belong to no window.
    keep = (middle >= lo[0]) & (middle <= hi[-1])
    middle, seconds, column = middle[keep], seconds[keep], table.bin_column[cell][keep]
    passed = np.searchsorted(hi, middle, "right")  # edges certainly behind this piece
    nxt = np.minimum(passed, len(lo) - 1)
    in_gap = (passed < len(lo)) & (middle >= lo[nxt]) & (middle < hi[nxt])
    gap = np.maximum(hi[nxt] - lo[nxt], 1.0)
    after = np.where(in_gap, (middle - lo[nxt]) / gap, 1.0)
    window_after = np.clip(np.where(in_gap, nxt, passed - 1), 0, n_windows - 1)
    window_before = np.clip(window_after - 1, 0, n_windows - 1)
    rows = np.concatenate([window_after, window_before])
    values = np.concatenate([seconds * after, seconds * (1.0 - after)])
    matrix = sparse.coo_matrix(
        (values, (rows, np.concatenate([column, column]))), shape=(n_windows, n_columns)
    )
    return matrix.tocsr()
