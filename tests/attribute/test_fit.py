import numpy as np
import pytest
from simulate import synthetic_run

from greenprof.attribute.fit import POWER_FIT, TIME_SPLIT, SensorSeries, attribute
from greenprof.track import events as hooks
from greenprof.track.timeline import FORWARD, Timeline


def rel_err(estimate, truth):
    return np.abs(estimate - truth) / np.maximum(truth, 1e-12)


def test_rows_add_up_to_the_measured_total():
    table, series, _truth = synthetic_run([(0.003, 50), (0.01, 80), (0.002, 20)], steps=200)
    result = attribute(table, [series])
    assert result.energy_j.sum() == pytest.approx(result.total_j, rel=1e-9)
    assert result.total_j == pytest.approx(series.energy_j[-1] - series.energy_j[0], rel=0.05)


def test_equal_power_layers_get_their_time_share():
    layers = [(0.002, 60.0), (0.007, 60.0), (0.0005, 60.0), (0.004, 60.0)]
    table, series, truth = synthetic_run(layers, steps=400, seed=1)
    result = attribute(table, [series])
    assert result.sensors[0].method == TIME_SPLIT
    assert result.total_j == pytest.approx(truth.sum(), rel=0.01)
    big = truth > 0.05 * truth.sum()
    assert rel_err(result.energy_j, truth)[big].max() < 0.03


def test_power_fit_recovers_layers_drawing_three_times_the_power():
    # Steps longer than the counter's update period, layers shorter: windows see different mixes.
    layers = [(0.03, 90.0), (0.03, 30.0), (0.02, 90.0), (0.04, 30.0), (0.01, 90.0), (0.05, 30.0)]
    table, series, truth = synthetic_run(layers, steps=200, noise=0.01, seed=2)
    fitted = attribute(table, [series])
    assert fitted.sensors[0].method == POWER_FIT
    fit_err = rel_err(fitted.energy_j, truth)[1:]
    time_share = table.self_ns / table.self_ns.sum() * fitted.total_j
    split_err = rel_err(time_share, truth)[1:]
    assert split_err.max() > 0.3  # the time split is badly biased here...
    assert fit_err.max() < 0.1  # ...and the fit is not
    # The interval covers the truth for most layers.
    inside = (fitted.energy_lo_j[1:] <= truth[1:] * 1.02) & (
        truth[1:] <= fitted.energy_hi_j[1:] * 1.02
    )
    assert inside.mean() >= 0.8


def test_no_evidence_keeps_the_time_split():
    # Layers far shorter than a window, identical steps: power differences cannot be seen.
    layers = [(0.0002, 90.0), (0.0003, 30.0)]
    table, series, _truth = synthetic_run(layers, steps=3000, seed=3)
    assert attribute(table, [series]).sensors[0].method == TIME_SPLIT


def test_noisy_sensor_gives_wider_intervals():
    layers = [(0.03, 60.0), (0.004, 60.0), (0.05, 60.0)]
    table, series, _ = synthetic_run(layers, steps=30, noise=0.0, seed=4)
    quiet = attribute(table, [series])
    table, series, _ = synthetic_run(layers, steps=30, noise=0.3, seed=4)
    noisy = attribute(table, [series])
    width = lambda r: (r.energy_hi_j - r.energy_lo_j).sum()  # noqa: E731
    assert width(noisy) > 1.2 * width(quiet)


def test_layers_the_steps_cannot_resolve_are_listed_with_the_steps_needed():
    layers = [(0.03, 60.0), (0.004, 60.0), (0.05, 60.0)]
    table, series, _ = synthetic_run(layers, steps=8, noise=0.5, seed=4)
    result = attribute(table, [series])
    assert result.unresolved
    column, rel, needed = result.unresolved[0]
    assert rel > 0.2 and needed > table.steps
    lo, hi = result.energy_lo_j[column], result.energy_hi_j[column]
    assert (hi - lo) / 2 > 0.2 * result.energy_j[column]


def test_layers_the_windows_cannot_separate_get_the_doubt_not_a_step_count():
    # Steps far shorter than the counter's windows: each window sees the same mix, so the 3:1
    # power difference is invisible. The time split is then wrong by ~50%, and the intervals
    # must say so, with no promise that more steps like these would help.
    layers = [(0.0002, 90.0), (0.0003, 30.0)]
    table, series, truth = synthetic_run(layers, steps=3000, seed=3)
    result = attribute(table, [series])
    assert result.sensors[0].method == TIME_SPLIT
    busy = truth > 0
    assert rel_err(result.energy_j, truth)[busy].max() > 0.3
    assert np.all(result.energy_lo_j[busy] <= truth[busy])
    assert np.all(truth[busy] <= result.energy_hi_j[busy])
    # Nothing was seen of either power: the prior's whole band, not the resolved layers' spread.
    assert np.all(result.energy_hi_j[busy] >= 1.9 * result.energy_j[busy])
    assert {c for c, _rel, _n in result.unresolved} == set(np.flatnonzero(busy))
    assert all(n == 0 or n > 1000 * table.steps for _c, _rel, n in result.unresolved)


def test_resolved_layers_keep_narrow_intervals():
    layers = [(0.03, 90.0), (0.03, 30.0), (0.02, 90.0), (0.04, 30.0)]
    table, series, truth = synthetic_run(layers, steps=200, noise=0.01, seed=2)
    result = attribute(table, [series])
    busy = truth > 0
    half_width = (result.energy_hi_j - result.energy_lo_j)[busy] / 2
    assert np.all(half_width < 0.15 * truth[busy])
    assert not result.unresolved


def test_a_failed_sensor_is_attributed_over_the_time_it_covered():
    tl = Timeline(0, 5)
    tl.feed(
        [
            (0, hooks.FWD_ENTER, 0),
            (50, hooks.FWD_EXIT, 0),
            (50, hooks.FWD_ENTER, 1),
            (100, hooks.FWD_EXIT, 1),
        ]
    )
    table = tl.finish(100)
    t = np.arange(0, 51, 5, dtype=np.int64)
    series = SensorSeries("dead", "cpu", True, t, t * 1.0, failed="gone")
    result = attribute(table, [series])
    col0 = table.columns.index((0, 0))
    col1 = table.columns.index((1, 0))
    assert result.energy_j[col0] == pytest.approx(50.0)
    assert result.energy_j[col1] == pytest.approx(0.0)


def test_several_sensors_add_up():
    table, a, _ = synthetic_run([(0.01, 50), (0.02, 50)], steps=50, seed=5)
    b = SensorSeries("b", "gpu:0", True, a.t_ns, a.energy_j * 2)
    result = attribute(table, [a, b])
    assert result.total_j == pytest.approx(3 * result.sensors[0].total_j)
    assert result.energy_j.sum() == pytest.approx(result.total_j)


def test_short_columns_share_a_power_with_their_class():
    from scipy import sparse

    from greenprof.attribute.power_model import MIN_FIT_SHARE, fit_groups

    long_s, short_s = 1.0, MIN_FIT_SHARE / 10
    times = sparse.csr_matrix(np.array([[long_s, long_s, short_s, short_s, short_s]]))
    classes = np.array([0, 1, 2, 2, 3])
    n_groups, group_of = fit_groups(times, classes)
    assert group_of[0] != group_of[1]  # long columns: a power each
    assert group_of[2] == group_of[3] != group_of[4]  # short ones: one power per class
    assert n_groups == 4
    _, pooled = fit_groups(times, None)
    assert pooled[2] == pooled[3] == pooled[4]


@pytest.mark.parametrize("weights", [[3.0, 1.0, 2.0], [3.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
def test_power_deviations_never_move_the_total(weights):
    from greenprof.attribute.uncertainty import _complement_basis

    w = np.array(weights)
    basis = _complement_basis(w)
    assert basis.shape == (3, 2)
    assert np.allclose(w @ basis, 0.0)
    assert np.allclose(basis.T @ basis, np.eye(2))


def test_exact_data_does_not_pass_for_a_resolved_split():
    # Two layers always in the same proportion in every window: no amount of exact data can
    # tell their powers apart, and a noiseless counter must not make it look as if it could.
    from scipy import sparse

    from greenprof.attribute.power_model import FitModel, choose_power, design_matrix, fit_groups
    from greenprof.attribute.uncertainty import posterior_interval

    durations = np.full(200, 0.1)
    times = sparse.csr_matrix(np.column_stack([np.zeros(200), durations * 0.6, durations * 0.4]))
    energy = 100.0 * durations
    n_groups, group_of = fit_groups(times, None)
    design = design_matrix(times, group_of, n_groups)
    model = FitModel(times, design, energy, durations, group_of, None, 0.0)
    choice = choose_power(design, energy, durations)
    posterior = posterior_interval(model, choice, energy.sum(), np.random.default_rng(0))
    assert np.all(posterior.unseen[1:])
    assert np.all(np.isinf(posterior.more_steps[1:]))
    assert np.all(posterior.energy_hi_j[1:] - posterior.energy_lo_j[1:] > 0.5 * energy.sum() / 2)


def two_clocks_tables():
    """Module A then B, launched by the host at 0-20 ms and run by the GPU 20 ms later."""
    ms = 1_000_000

    def table(lag_ns):
        timeline = Timeline(0, ms)
        timeline.feed(
            [
                (lag_ns, hooks.FWD_ENTER, 0),
                (lag_ns + 10 * ms, hooks.FWD_EXIT, 0),
                (lag_ns + 10 * ms, hooks.FWD_ENTER, 1),
                (lag_ns + 20 * ms, hooks.FWD_EXIT, 1),
            ]
        )
        return timeline.finish(40 * ms)

    return table(20 * ms), table(0)


def series(name, device, joules_at_ms):
    t_ns = np.array([t * 1_000_000 for t, _j in joules_at_ms], np.int64)
    return SensorSeries(name, device, True, t_ns, np.array([j for _t, j in joules_at_ms], float))


def test_cpu_sensors_are_priced_on_the_host_clock_and_gpu_sensors_on_the_device_clock():
    device_table, host_table = two_clocks_tables()
    assert device_table.columns == host_table.columns
    a = device_table.columns.index((0, FORWARD))
    # The CPU drew 1 J while launching A (0-10 ms); the GPU 2 J while running A (20-30 ms).
    cpu = series("rapl:package-0", "cpu", [(0, 0.0), (10, 1.0), (20, 1.0), (30, 1.0), (40, 1.0)])
    gpu = series("nvml:0", "gpu:0", [(0, 0.0), (10, 0.0), (20, 0.0), (30, 2.0), (40, 2.0)])

    both = attribute(device_table, [cpu, gpu], bootstrap=0, host_table=host_table)
    gpu_only_clock = attribute(device_table, [cpu, gpu], bootstrap=0)

    assert both.sensors[0].energy_j[a] == pytest.approx(1.0)
    assert both.sensors[1].energy_j[a] == pytest.approx(2.0)
    assert both.energy_j[a] == pytest.approx(3.0)
    assert gpu_only_clock.energy_j[a] == pytest.approx(2.0)  # the CPU's joule went outside


def test_tables_of_different_columns_are_refused():
    device_table, host_table = two_clocks_tables()
    host_table.columns = host_table.columns[:-1]
    cpu = series("cpu-estimate", "cpu", [(0, 0.0), (40, 1.0)])
    with pytest.raises(ValueError, match="same columns|device table's columns"):
        attribute(device_table, [cpu], bootstrap=0, host_table=host_table)
