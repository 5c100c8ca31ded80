import pytest

from greenprof.errors import ConfigError, SensorUnavailable
from greenprof.sensors import SENSOR_KINDS, CpuEstimateSensor, availability, detect


def names(sensors):
    return [s.name for s in sensors]


def test_cpu_estimate_when_nothing_is_measurable(no_nvml, powercap):
    sensors = detect(powercap_root=str(powercap.root), rated_cpu_power_w=50.0)

    assert names(sensors) == ["cpu-estimate"]
    assert isinstance(sensors[0], CpuEstimateSensor) and sensors[0].rated_cpu_power_w == 50.0


def test_readable_rapl_replaces_the_estimate(no_nvml, powercap):
    powercap.zone("intel-rapl:0", "package-0")

    assert names(detect(powercap_root=str(powercap.root))) == ["rapl:package-0"]


def test_gpus_alone_do_not_cover_the_cpu(fake_nvml, powercap):
    sensors = detect(powercap_root=str(powercap.root))

    assert names(sensors) == ["nvml:0", "nvml:1", "cpu-estimate"]
    for sensor in sensors:
        sensor.close()
    assert fake_nvml.references == 0


def test_named_kinds_give_exactly_those(fake_nvml, powercap):
    powercap.zone("intel-rapl:0", "package-0")

    sensors = detect(names=["estimate", "rapl", "estimate"], powercap_root=str(powercap.root))

    assert names(sensors) == ["cpu-estimate", "rapl:package-0"]
    assert fake_nvml.references == 0  # nvml was not asked for, so never opened


def test_named_kind_that_is_unavailable_raises_and_closes_the_rest(fake_nvml, powercap):
    with pytest.raises(SensorUnavailable) as info:
        detect(names=["nvml", "rapl"], powercap_root=str(powercap.root))

    assert info.value.kind == "rapl" and info.value.fix
    assert fake_nvml.references == 0


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        detect(names=["nvml", "watt-meter"])

    assert "'watt-meter'" in str(info.value)
    for kind in SENSOR_KINDS:
        assert kind in str(info.value)


def test_availability_reports_every_kind(no_nvml, powercap):
    results = dict(availability(powercap_root=str(powercap.root)))

    assert list(results) == list(SENSOR_KINDS)
    assert isinstance(results["nvml"], SensorUnavailable)
    assert isinstance(results["rapl"], SensorUnavailable)
    assert names(results["estimate"]) == ["cpu-estimate"]
