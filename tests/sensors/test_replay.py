import pytest

from greenprof.errors import ConfigError
from greenprof.sensors import ReplaySensor


def test_replays_from_the_first_call_with_interpolation_and_hold(clock):
    sensor = ReplaySensor([1.0, 2.0, 4.0], [10.0, 20.0, 60.0], name="rec", clock=clock)
    clock.advance(100.0)  # time before the first call does not count

    readings = []
    for step_s in (0.0, 1.5, 1.0, 1.0, 10.0):
        clock.advance(step_s)
        readings.append(sensor.energy_j())

    assert readings == pytest.approx([10.0, 15.0, 30.0, 50.0, 60.0])


def test_identity_and_describe(clock):
    sensor = ReplaySensor([0.0], [0.0], name="gpu-rec", device="gpu:0", measured=False, clock=clock)

    assert (sensor.name, sensor.device, sensor.measured) == ("gpu-rec", "gpu:0", False)
    assert sensor.describe()["replayed"] is True
    assert sensor.energy_j() == 0.0


@pytest.mark.parametrize(
    ("times_s", "energies_j", "message"),
    [
        ([], [], "empty"),
        ([0.0, 1.0], [0.0], "equal length"),
        ([0.0, 0.0], [0.0, 1.0], "strictly increasing"),
        ([0.0, 1.0], [5.0, 4.0], "never decrease"),
        ([0.0, float("nan")], [0.0, 1.0], "finite"),
    ],
)
def test_rejects_series_that_are_not_cumulative_energy(times_s, energies_j, message):
    with pytest.raises(ConfigError, match=message):
        ReplaySensor(times_s, energies_j)
