from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import greenprof
from greenprof.report.tensorboard import write_tensorboard
from greenprof.sensors import ReplaySensor
from greenprof.testing.synthetic import synthetic_session


def scalars(logdir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_a_session_becomes_scalars_with_bounds_and_top_layers(tmp_path) -> None:
    session = synthetic_session(duration_s=2.0, n_blocks=2, seed=4)
    write_tensorboard(session, tmp_path)
    found = scalars(tmp_path)
    kind = "estimated_" if session.estimated else ""
    assert found[f"greenprof/{kind}energy_j"] == [pytest.approx(session.total_energy_j, rel=1e-6)]
    lo, hi = found[f"greenprof/{kind}energy_lo_j"][0], found[f"greenprof/{kind}energy_hi_j"][0]
    assert lo <= session.total_energy_j <= hi
    layer_tags = [t for t in found if t.startswith("greenprof/layer/")]
    assert 0 < len(layer_tags) <= 10
    sensor_tags = [t for t in found if t.startswith("greenprof/sensor/")]
    assert sensor_tags and len(found[sensor_tags[0]]) > 1


def test_profile_tensorboard_option_writes_event_files(tmp_path) -> None:
    sensor = ReplaySensor([0.0, 3600.0], [0.0, 50.0 * 3600.0], name="const")
    model = torch.nn.Linear(4, 2)
    with greenprof.profile(sensors=[sensor], tensorboard=tmp_path / "tb") as prof:
        model(torch.randn(3, 4)).sum().backward()
    found = scalars(tmp_path / "tb")
    assert found["greenprof/energy_j"] == [pytest.approx(prof.session.total_energy_j, rel=1e-6)]
