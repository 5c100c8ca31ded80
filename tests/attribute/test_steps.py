import numpy as np

from greenprof.attribute.steps import MAX_WINDOWS, window_edges
from greenprof.attribute.windows import cumulative_at


def test_windows_last_a_few_sensor_updates_and_stay_few() -> None:
    marks = np.arange(0, 500) * 5_000_000  # a step every 5 ms
    edges, group = window_edges(marks, period_s=0.02)
    assert group == 8  # 2 updates of 20 ms = 40 ms = 8 steps
    assert (np.diff(edges) == 40_000_000).all()
    edges, group = window_edges(np.arange(0, 100_000) * 5_000_000, period_s=0.001)
    assert len(edges) - 1 <= MAX_WINDOWS
    assert len(window_edges(marks[:2], 0.01)[0]) == 0  # too few steps: no windows


def test_a_stepped_counter_read_between_polls_has_bounds_from_the_polls_around() -> None:
    t_ns = np.arange(0, 11) * 10_000_000  # polled every 10 ms
    energy_j = np.floor(np.arange(0, 11) / 2) * 2.0  # updates every 20 ms by 2 J
    mid, lo, hi = cumulative_at(t_ns, energy_j, np.array([15_000_000, 40_000_000]))
    assert list(lo) == [0.0, 4.0] and list(hi) == [2.0, 4.0]
    assert (lo <= mid).all() and (mid <= hi).all()
