import time

import pytest

from greenprof.errors import ConfigError
from greenprof.sensors.estimate import (
    CPU_POWER_ENV,
    DEFAULT_WATTS_PER_CPU_W,
    CpuEstimateSensor,
    child_process_count,
    logical_cpu_count,
    resolve_rated_cpu_power_w,
)


class FakeCpuTime:
    def __init__(self) -> None:
        self.ns = 123_000_000

    def __call__(self) -> int:
        return self.ns


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(CPU_POWER_ENV, raising=False)


def test_cpu_time_times_rated_power_share():
    cpu_time = FakeCpuTime()
    sensor = CpuEstimateSensor(40.0, logical_cpus=4, cpu_time_ns=cpu_time)

    assert (sensor.name, sensor.device, sensor.measured) == ("cpu-estimate", "cpu", False)
    assert sensor.energy_j() == 0.0
    cpu_time.ns += 2_000_000_000  # one CPU busy for 2 s, or two for 1 s
    assert sensor.energy_j() == pytest.approx(20.0)
    assert sensor.describe()["rated_cpu_power_w"] == 40.0


def test_burning_cpu_costs_estimated_joules():
    sensor = CpuEstimateSensor(10.0 * logical_cpu_count())
    start = time.process_time()
    while time.process_time() - start < 0.02:
        pass

    assert sensor.energy_j() >= 0.02 * 10.0


def test_rated_power_argument_then_environment_then_default(monkeypatch):
    assert resolve_rated_cpu_power_w() == DEFAULT_WATTS_PER_CPU_W * logical_cpu_count()
    monkeypatch.setenv(CPU_POWER_ENV, " 80 ")
    assert resolve_rated_cpu_power_w() == 80.0
    assert resolve_rated_cpu_power_w(65.0) == 65.0
    assert CpuEstimateSensor(logical_cpus=4).watts_per_cpu_w == 20.0


@pytest.mark.parametrize("value", ["lots", "-5", "0", "nan"])
def test_bad_environment_value_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(CPU_POWER_ENV, value)

    with pytest.raises(ConfigError, match=CPU_POWER_ENV):
        CpuEstimateSensor()


@pytest.mark.parametrize("value", [0.0, -1.0, float("inf")])
def test_bad_argument(value):
    with pytest.raises(ConfigError, match="rated_cpu_power_w"):
        CpuEstimateSensor(value)


class Wall:
    def __init__(self) -> None:
        self.s = 100.0

    def __call__(self) -> float:
        return self.s


def test_child_processes_are_looked_for_once_a_second_and_named_in_a_caveat():
    counts = iter([0, 3, 1])
    asked = []

    def children():
        asked.append(1)
        return next(counts)

    wall = Wall()
    sensor = CpuEstimateSensor(
        40.0, logical_cpus=4, cpu_time_ns=FakeCpuTime(), children=children, wall_s=wall
    )
    sensor.energy_j()
    assert sensor.caveats() == []
    wall.s += 0.9
    sensor.energy_j()  # within the interval: not asked again
    assert len(asked) == 1
    wall.s += 1.0
    sensor.energy_j()
    wall.s += 1.0
    sensor.energy_j()
    assert len(asked) == 3 and sensor.max_children == 3
    (caveat,) = sensor.caveats()
    assert "up to 3 child process(es)" in caveat and "DataLoader workers" in caveat


def test_a_real_child_process_is_seen():
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        sensor = CpuEstimateSensor(40.0)
        sensor.energy_j()
    finally:
        child.communicate(b"")
    if child_process_count() is None:
        pytest.skip("no /proc children file on this system")
    assert sensor.max_children >= 1 and sensor.caveats()


def test_child_processes_reach_the_session_warnings():
    import torch

    import greenprof

    sensor = CpuEstimateSensor(40.0, children=lambda: 2)
    with greenprof.profile(sensors=[sensor], calibrate=False) as prof:
        torch.nn.Linear(2, 2)(torch.randn(1, 2))
    assert any("up to 2 child process(es)" in w for w in prof.session.warnings)
