import numpy as np
import pandas as pd
import pytest

from greenprof.report.power import phase_intervals, power_w, update_period_s


def test_power_holds_exactly_the_energy_the_counter_moved() -> None:
    rng = np.random.default_rng(1)
    t_s = np.cumsum(rng.uniform(0.005, 0.015, 2000))
    energy_j = np.cumsum(rng.uniform(0, 2, 2000))
    edges_s, watts = power_w(t_s, energy_j, max_points=100)
    assert len(edges_s) == len(watts) + 1 <= 101
    assert np.sum(watts * np.diff(edges_s)) == pytest.approx(energy_j[-1] - energy_j[0])


def test_a_slow_counter_polled_fast_gives_flat_power_not_spikes() -> None:
    # 50 W, polled every 10 ms, counter updating every 100 ms (like NVML).
    t_s = np.arange(0, 10, 0.01)
    energy_j = 50.0 * np.floor(t_s / 0.1) * 0.1
    assert update_period_s(t_s, energy_j) == pytest.approx(0.1)
    _, watts = power_w(t_s, energy_j, max_points=1000)
    assert len(watts) <= 100
    # Without plateau handling bins alternate between 0 W and 100 W; the time each update is seen
    # is only known within one poll, so some jitter remains.
    assert np.all(np.abs(watts[1:-1] - 50.0) < 6.0)
    assert np.mean(watts) == pytest.approx(50.0, rel=0.02)


def test_a_long_idle_plateau_stays_idle() -> None:
    t_s = np.arange(0, 20, 0.01)
    energy_j = np.where(t_s < 10, 0.0, (t_s - 10) * 100.0)
    edges_s, watts = power_w(t_s, energy_j, max_points=40)
    centres = (edges_s[:-1] + edges_s[1:]) / 2
    assert np.all(watts[centres < 9.5] < 1.0)
    assert np.allclose(watts[centres > 10.5], 100.0, rtol=0.02)


def test_power_of_too_few_samples_is_empty() -> None:
    edges_s, watts = power_w(np.array([1.0]), np.array([3.0]), max_points=10)
    assert len(edges_s) == len(watts) == 0


def test_phase_intervals_merge_nested_and_touching_spans() -> None:
    spans = pd.DataFrame(
        [
            ("", "forward", 0.0, 1.0, 0),
            ("a", "forward", 0.2, 0.5, 1),
            ("", "forward", 1.0, 1.5, 0),
            ("", "forward", 2.0, 2.5, 0),
            ("", "backward", 1.5, 2.0, 0),
        ],
        columns=["module", "phase", "t0_s", "t1_s", "depth"],
    )
    got = phase_intervals(spans, ("forward", "backward", "optimizer"))
    assert got["forward"].tolist() == [[0.0, 1.5], [2.0, 0.5]]
    assert got["backward"].tolist() == [[1.5, 0.5]]
    assert got["optimizer"].shape == (0, 2)
