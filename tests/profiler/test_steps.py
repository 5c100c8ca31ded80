import os

import numpy as np
import pytest
import torch
from torch import nn

import greenprof
from greenprof.profiler.steps import MAX_MARKS, PROC_STAT, LoadProbe, StepMarks
from greenprof.sensors import ReplaySensor
from greenprof.session import OUTSIDE_MODULE, STEPS_FILE, Session


def train(model: nn.Module, steps: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(steps):
        model(torch.randn(16, 8)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()


@pytest.fixture(scope="module")
def session() -> Session:
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    sensor = ReplaySensor([0.0, 3600.0], [0.0, 50.0 * 3600.0], name="const")
    with greenprof.profile(sensors=[sensor], interval_s=0.002, calibrate=False) as prof:
        train(model, 60)
    return prof.session


def test_a_profile_keeps_energy_and_time_per_window_of_steps(session) -> None:
    steps = session.steps()
    assert len(steps) >= 4
    assert steps["steps"].sum() <= session.meta["steps"]
    assert (np.diff(steps["t0_s"]) > 0).all()
    np.testing.assert_allclose(steps["t1_s"].to_numpy()[:-1], steps["t0_s"].to_numpy()[1:])
    # A constant 50 W: each window's joules are 50 W times its length, within its bounds.
    np.testing.assert_allclose(steps["energy_j"], 50.0 * steps["time_s"], rtol=0.1)
    assert (steps["energy_lo_j"] <= steps["energy_j"]).all()
    assert (steps["energy_hi_j"] >= steps["energy_j"]).all()
    assert (steps["cpu_s"] >= 0).all() and steps["cpu_s"].sum() > 0


def test_self_time_per_window_names_the_modules_and_fits_in_the_window(session) -> None:
    modules = session.step_modules()
    assert {"0", "1", "2", "optimizer:SGD", OUTSIDE_MODULE} <= set(modules["module"])
    per_window = modules.groupby("window")["time_s"].sum()
    window_s = session.steps().set_index("window")["time_s"]
    np.testing.assert_allclose(per_window, window_s.loc[per_window.index], rtol=0.02)


def test_load_evidence_is_in_the_meta(session) -> None:
    load = session.meta["load"]
    assert load["wall_s"] > 0 and load["cpu_s"] > 0
    assert load["cpu_per_wall"] == pytest.approx(load["cpu_s"] / load["wall_s"])
    assert load["logical_cpus"] >= 1 and load["involuntary_switches"] >= 0


def test_windows_round_trip_and_an_older_run_directory_still_loads(session, tmp_path) -> None:
    loaded = Session.load(session.save(tmp_path / "run"))
    np.testing.assert_allclose(loaded.steps()["energy_j"], session.steps()["energy_j"])
    assert loaded.step_modules()["module"].tolist() == session.step_modules()["module"].tolist()
    (tmp_path / "run" / STEPS_FILE).unlink()
    older = Session.load(tmp_path / "run")
    assert older.steps().empty and "energy_j" in older.steps().columns


def test_step_marks_stay_bounded_on_a_long_run() -> None:
    marks = StepMarks()
    for t_ns in range(0, 3 * MAX_MARKS * 1000, 1000):
        marks.add(t_ns)
    assert marks.count == 3 * MAX_MARKS
    assert len(marks.times_ns) <= MAX_MARKS and len(marks.cpu_ns) == len(marks.times_ns)
    assert marks.stride == 4
    # Every kept mark is a whole number of strides from the first.
    assert set(np.diff(marks.times_ns)) == {marks.stride * 1000}


def _stat(path, busy_jiffies: int) -> None:
    path.write_text(f"cpu  {busy_jiffies} 0 0 5000 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n")


def test_the_share_of_other_processes_comes_from_the_kernels_cpu_counters(tmp_path) -> None:
    stat = tmp_path / "stat"
    _stat(stat, 1000)
    probe = LoadProbe(str(stat))
    assert probe.facts()["others_cpu_share"] == 0.0  # the machine did no more than this process
    _stat(stat, 1000 + 1_000_000)  # far more than all CPUs could do since: clipped
    assert probe.facts()["others_cpu_share"] == 1.0
    assert LoadProbe(str(tmp_path / "missing")).facts()["others_cpu_share"] is None
    stat.write_text("garbage\n")
    assert LoadProbe(str(stat)).facts()["others_cpu_share"] is None


@pytest.mark.skipif(not os.path.exists(PROC_STAT), reason="no /proc/stat")
def test_the_share_of_other_processes_is_recorded_on_linux(session) -> None:
    assert 0.0 <= session.meta["load"]["others_cpu_share"] <= 1.0
