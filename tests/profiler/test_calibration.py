import numpy as np
import pytest
import torch
from simulate import Busy, GroundTruthSensor
from torch import nn

import greenprof
from greenprof.sensors import ReplaySensor


def _run(model, sim, steps, **options):
    sim.install()
    try:
        with torch.no_grad(), greenprof.profile(sensors=[sim], **options) as prof:
            sim.start_truth()
            for _ in range(steps):
                model(torch.zeros(1))
            truth = sim.finish()
    finally:
        sim.close()
    return prof.session, truth


def test_replays_measure_short_layers_a_slow_counter_cannot_tell_apart():
    # Layers of 1-3 ms under a 100 ms counter: every window holds the same mix, so the run's own
    # windows cannot split them; replaying each alone can.
    model = nn.Sequential(Busy(0.001), Busy(0.003), Busy(0.002), Busy(0.001))
    watts = {"0": 120.0, "1": 30.0, "2": 90.0, "3": 15.0}
    sim = GroundTruthSensor(
        model, lambda n, m: watts.get(n, 30.0), outside_w=30.0, update_s=(0.1, 0.1), noise=0.02
    )
    session, truth = _run(model, sim, 150, interval_s=0.005)
    layers = session.layers().set_index("module")
    calibration = session.meta["calibration"]
    assert calibration["calibrated"] and calibration["seconds"] > 0
    assert calibration["energy_j"] > 0
    assert set(calibration["replayed"]) >= set(watts)
    # A 100 ms counter leaves most of an update period unknown at each end of a 1 s run (+-4 to
    # 8 % here): the truth lies inside the total's interval, and the interval stays within +-10 %.
    truth_j = sum(truth.values())
    assert session.total_energy_lo_j <= truth_j <= session.total_energy_hi_j
    assert session.total_energy_hi_j - session.total_energy_lo_j < 0.2 * truth_j
    assert layers.energy_j.sum() == pytest.approx(session.total_energy_j, rel=1e-9)
    for name in watts:
        row = layers.loc[name]
        assert row.method == "replayed"
        # The time split would put every layer at the mean power (60 W): errors of 100-300%.
        assert row.energy_j == pytest.approx(truth[name], rel=0.25), name
        assert row.energy_lo_j <= row.energy_j <= row.energy_hi_j
        assert row.power_w == pytest.approx(watts[name], rel=0.25), name


def test_calibration_off_keeps_the_passive_attribution():
    model = nn.Sequential(Busy(0.001), Busy(0.002))
    sim = GroundTruthSensor(model, lambda n, m: 50.0, update_s=(0.05, 0.05))
    session, _ = _run(model, sim, 20, calibrate=False)
    assert session.meta["calibration"] == {"calibrated": False, "note": "calibration is off"}
    assert set(session.layers().method) <= {"time split", "power fit"}


def _constant_sensor():
    t = np.arange(0, 3600.0, 0.01)
    return ReplaySensor(t, 50.0 * t, name="constant")


def test_the_users_state_is_left_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(32, 8)
    with greenprof.profile(sensors=[_constant_sensor()], calibrate_s=0.5) as prof:
        for _ in range(5):
            model(x).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
        model(x).sum().backward()  # leaves gradients in place at the end of the block
        before = {k: v.clone() for k, v in model.state_dict().items()}
        grads = [p.grad.clone() for p in model.parameters()]
        rng = torch.get_rng_state()
        model.eval()
    assert prof.session.meta["calibration"]["calibrated"], prof.session.meta["calibration"]
    assert prof.session.meta["calibration"]["replayed"]
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    for p, g in zip(model.parameters(), grads, strict=True):
        assert torch.equal(p.grad, g)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not model.training and not any(m.training for m in model.modules())


class Once(nn.Module):
    """A stateful layer: its second call raises (replays must skip it, not crash)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1 and not self.training:
            raise RuntimeError("called twice")
        return x + 1


def test_a_layer_whose_replay_raises_is_skipped_and_recorded():
    model = nn.Sequential(nn.Linear(4, 4), Once(), nn.Linear(4, 4)).eval()
    with greenprof.profile(sensors=[_constant_sensor()], calibrate_s=0.3) as prof:
        with torch.no_grad():
            model(torch.randn(2, 4))
    calibration = prof.session.meta["calibration"]
    assert calibration["calibrated"]
    assert (
        "1" in calibration["skipped"]
        or "" in calibration["roots_failed"]
        or calibration["roots_failed"]
    )
    assert "0" in calibration["replayed"]


class Keywords(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, *, hidden_states, scale=1.0):
        return self.proj(hidden_states) * scale


def test_keyword_inputs_are_captured_and_replayed():
    model = Keywords()
    with greenprof.profile(sensors=[_constant_sensor()], calibrate_s=1.0) as prof:
        model(hidden_states=torch.randn(3, 4), scale=2.0)
    assert "proj" in prof.session.meta["calibration"]["replayed"]


class Interrupting(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt
        return x


def test_ctrl_c_during_calibration_keeps_the_runs_session():
    model = nn.Sequential(nn.Linear(4, 4), Interrupting())
    prof = greenprof.profile(sensors=[_constant_sensor()], calibrate_s=0.3)
    with pytest.raises(KeyboardInterrupt):
        with prof:
            model(torch.randn(2, 4))
    assert prof.session is not None
    assert not prof.session.meta["calibration"]["calibrated"]
    assert "interrupted" in prof.session.meta["calibration"]["note"]
    assert prof.session.total_energy_j > 0


def test_greenprof_run_calibrates_a_model_built_inside_a_function(tmp_path):
    import json
    import subprocess
    import sys
    import textwrap

    (tmp_path / "train.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def main():
                model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
                opt = torch.optim.SGD(model.parameters(), lr=0.01)
                for _ in range(30):
                    model(torch.randn(16, 32)).square().mean().backward()
                    opt.step()
                    opt.zero_grad()

            main()  # the model is gone when the script ends
            """
        )
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenprof",
            "run",
            "--out",
            "run",
            "--calibrate-s",
            "0.5",
            "train.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "run" / "session.json").read_text())
    assert meta["calibration"]["calibrated"], meta["calibration"]
    assert {"0", "2"} <= set(meta["calibration"]["replayed"])
    assert "calibration:" in done.stderr
    off = subprocess.run(
        [sys.executable, "-m", "greenprof", "run", "--out", "off", "--no-calibrate", "train.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert off.returncode == 0, off.stderr
    meta = json.loads((tmp_path / "off" / "session.json").read_text())
    assert not meta["calibration"]["calibrated"]


def test_the_capture_hook_leaves_the_hot_path_after_the_first_steps():
    from torch.nn.modules import module as nn_module

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with greenprof.profile(sensors=[_constant_sensor()], calibrate_s=0.2):
        before = len(nn_module._global_forward_hooks)
        for _ in range(3):
            model(torch.randn(2, 4))
        after = len(nn_module._global_forward_hooks)
    assert after == before - 1  # the capture's hook is gone; the recorder's stays
