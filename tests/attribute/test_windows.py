import numpy as np
import pytest
from simulate import synthetic_run

from greenprof.attribute.windows import energy_windows, window_times
from greenprof.track import events as hooks
from greenprof.track.timeline import Timeline


def test_stepped_counter_windows_cut_at_midpoints_between_polls():
    t = np.arange(0, 11) * 10
    e = np.array([0, 0, 0, 5, 5, 5, 10, 10, 10, 15, 15], float)
    windows = energy_windows(t, e, 0, 100)
    np.testing.assert_allclose(windows.edge_lo_ns, [0, 20, 50, 80, 100])
    np.testing.assert_allclose(windows.edge_hi_ns, [0, 30, 60, 90, 100])
    np.testing.assert_allclose(windows.durations_s * 1e9, [25, 30, 30, 15])
    assert windows.energy_j.sum() == pytest.approx(100 * 5 / 30)
    assert windows.end_uncertainty_j > 0


def test_a_continuous_counter_cuts_at_every_poll():
    t = np.arange(0, 6) * 10
    windows = energy_windows(t, t * 2.0, 0, 50)
    np.testing.assert_allclose(windows.edge_lo_ns, windows.edge_hi_ns)
    np.testing.assert_allclose(windows.energy_j, [20.0] * 5)
    assert windows.end_uncertainty_j == 0


def test_time_in_an_edge_gap_is_shared_by_probability():
    t = np.arange(0, 11) * 10
    e = np.array([0, 0, 0, 5, 5, 5, 10, 10, 10, 15, 15], float)
    windows = energy_windows(t, e, 0, 100)  # first inner edge lies between 20 and 30
    timeline = Timeline(0, 1)
    timeline.feed([(20, hooks.FWD_ENTER, 0), (30, hooks.FWD_EXIT, 0)])
    table = timeline.finish(100)
    times = window_times(table, windows).toarray()
    column = table.columns.index((0, 0))
    # 10 ns in the gap: on average half before the edge, half after.
    assert times[0, column] == pytest.approx(5e-9)
    assert times[1, column] == pytest.approx(5e-9)
    assert times.sum() == pytest.approx(100e-9)


def test_merged_cells_leave_every_window_its_time():
    # A long run imitated: cells merge between the counter's updates, four times fewer cells,
    # yet every window sees exactly the seconds of every layer it saw before.
    layers = [(0.004, 50.0), (0.0007, 80.0), (0.009, 30.0), (0.002, 60.0)]
    full, series, _ = synthetic_run(layers, steps=400, seed=6)
    merged, _, _ = synthetic_run(layers, steps=400, seed=6, max_cells=len(full.bin_column) // 2)
    assert len(merged.bin_column) <= len(full.bin_column) // 4 + 10  # plus the open tail
    windows = energy_windows(series.t_ns, series.energy_j, full.t_start_ns, full.t_end_ns)
    np.testing.assert_allclose(
        window_times(merged, windows).toarray(), window_times(full, windows).toarray(), atol=1e-12
    )


def test_a_tight_cell_budget_passes_over_updates_but_keeps_every_second():
    layers = [(0.004, 50.0), (0.0007, 80.0), (0.009, 30.0), (0.002, 60.0)]
    full, series, _ = synthetic_run(layers, steps=400, seed=6)
    budget = len(full.bin_column) // 20
    merged, _, _ = synthetic_run(layers, steps=400, seed=6, max_cells=budget)
    assert len(merged.bin_column) <= budget
    windows = energy_windows(series.t_ns, series.energy_j, full.t_start_ns, full.t_end_ns)
    np.testing.assert_allclose(
        window_times(merged, windows).sum(axis=0), window_times(full, windows).sum(axis=0)
    )
