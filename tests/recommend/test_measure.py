"""Per-call energy: median of the repeats with an interval, or the session mean."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from recommend_fakes import Meter

from greenprof.recommend.measure import _repeat_energies, measure, median_interval
from greenprof.session import Session


def test_median_interval_uses_order_statistics():
    assert median_interval([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0]) == (5.0, 2.0, 8.0)
    median, lo, hi = median_interval([1.0] * 9 + [100.0])
    assert median == 1.0 and hi == 1.0  # one burst of load does not move it


def test_repeat_energies_follow_each_sensors_windows_and_add_sensors_up():
    samples = pd.DataFrame(
        {
            "sensor": ["a"] * 5 + ["b"] * 5,
            "t_s": [0.0, 1.0, 2.0, 3.0, 4.0] * 2,
            "energy_j": [0.0, 2.0, 4.0, 6.0, 8.0, 0.0, 1.0, 2.0, 3.0, 4.0],
        }
    )
    session = Session({}, samples=samples)
    marks_ns = np.array([0, 1_000_000_000, 3_000_000_000])
    assert _repeat_energies(session, marks_ns) == pytest.approx([3.0, 6.0])


def test_joules_per_call_across_a_counter_slower_than_the_calls():
    # A 100 ms counter at 50 W, polled every 10 ms; calls of 10 ms. Read at the call boundaries
    # nearly every call would see 0 J; the counter's own windows give 0.5 J per call.
    polls_s = np.arange(0.0, 3.0, 0.01)
    energy = 50.0 * np.floor(polls_s / 0.1 + 0.37) * 0.1
    session = Session(
        {}, samples=pd.DataFrame({"sensor": "gpu", "t_s": polls_s, "energy_j": energy})
    )
    marks_ns = (np.arange(0.05, 2.9, 0.01) * 1e9).astype(np.int64)
    per_call = _repeat_energies(session, marks_ns)
    assert len(per_call) >= 20
    assert np.median(per_call) == pytest.approx(0.5, rel=0.05)
    boundaries = np.interp(marks_ns * 1e-9, polls_s, energy)
    assert np.median(np.diff(boundaries)) == 0.0  # what reading at the boundaries would give


def test_measure_without_samples_uses_the_session_mean(blocks, tokens):
    meter = Meter(tokens)
    result = measure(blocks, meter.workload, profiler=meter.profiler, min_seconds=0.0)
    assert result.repeats == 10
    assert meter.calls == 11  # one warm-up outside the profile
    assert result.energy_j == pytest.approx(result.session.total_energy_j / 10)
    assert result.energy_lo_j == result.energy_hi_j == result.energy_j


def test_measure_with_the_real_profiler(blocks, tokens):
    def workload(model):
        with torch.inference_mode():
            for _ in range(20):
                model(tokens)

    result = measure(blocks, workload, min_seconds=0.2)
    assert result.repeats >= 10
    assert result.energy_j > 0
    assert result.energy_lo_j <= result.energy_j <= result.energy_hi_j
    assert "blocks.0.0" in set(result.session.layers()["module"])
