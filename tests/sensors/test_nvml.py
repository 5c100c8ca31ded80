import logging

import pynvml as real_pynvml
import pytest

from greenprof.errors import SensorError, SensorUnavailable
from greenprof.sensors import nvml


def close_all(sensors):
    for sensor in sensors:
        sensor.close()


def test_one_sensor_per_gpu_reading_the_energy_counter(fake_nvml):
    sensors = nvml.discover()

    assert [(s.name, s.device, s.measured, s.uses_counter) for s in sensors] == [
        ("nvml:0", "gpu:0", True, True),
        ("nvml:1", "gpu:1", True, True),
    ]
    fake_nvml.gpus[1].energy_mj += 2500
    assert sensors[0].energy_j() == 0.0
    assert sensors[1].energy_j() == pytest.approx(2.5)
    close_all(sensors)
    assert fake_nvml.references == 0


def test_pre_volta_gpu_integrates_its_power_reads(fake_nvml, clock):
    gpu = fake_nvml.gpus[0]
    gpu.energy_mj, gpu.power_mw = None, 100_000
    sensor = nvml.NvmlSensor(0, clock=clock)
    assert not sensor.uses_counter

    clock.advance(1.0)
    gpu.power_mw = 200_000
    assert sensor.energy_j() == pytest.approx(150.0)  # trapezoid of 100 W and 200 W over 1 s
    clock.advance(0.5)
    assert sensor.energy_j() == pytest.approx(250.0)
    sensor.close()


def test_counter_going_backwards_is_a_sensor_error(fake_nvml):
    (sensor, other) = nvml.discover()
    fake_nvml.gpus[0].energy_mj -= 1

    with pytest.raises(SensorError, match="backwards"):
        sensor.energy_j()
    close_all([sensor, other])


def test_lost_gpu_while_reading_says_how_to_recover(fake_nvml):
    sensors = nvml.discover()
    fake_nvml.gpus[0].error = real_pynvml.NVML_ERROR_GPU_IS_LOST

    with pytest.raises(SensorError, match=r"nvml:0: the GPU is lost.*nvidia-smi -r"):
        sensors[0].energy_j()
    close_all(sensors)


@pytest.mark.parametrize(
    ("code", "reason", "fix"),
    [
        ("LIBRARY_NOT_FOUND", "libnvidia-ml.so.1", "install the NVIDIA driver"),
        ("DRIVER_NOT_LOADED", "driver is not loaded", "nvidia-smi"),
        ("NO_PERMISSION", "may not query", "/dev/nvidia*"),
    ],
)
def test_nvml_that_cannot_start_explains_why(fake_nvml, code, reason, fix):
    fake_nvml.init_error = getattr(real_pynvml, f"NVML_ERROR_{code}")

    with pytest.raises(SensorUnavailable) as info:
        nvml.discover()

    assert info.value.kind == "nvml"
    assert reason in info.value.reason
    assert fix in info.value.fix


def test_missing_package_says_what_to_install(no_nvml):
    with pytest.raises(SensorUnavailable) as info:
        nvml.discover()

    assert info.value.fix == "pip install nvidia-ml-py"


def test_gpu_without_counter_or_power_notes_mig(fake_nvml):
    gpu = fake_nvml.gpus[1]
    gpu.energy_mj = gpu.power_mw = None
    gpu.mig = real_pynvml.NVML_DEVICE_MIG_ENABLE

    with pytest.raises(SensorUnavailable, match="GPU 1: MIG mode is enabled"):
        nvml.discover()
    assert fake_nvml.references == 0  # the sensor made for GPU 0 was closed


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        ("1", [("nvml:1", "gpu:0")]),
        ("1,0", [("nvml:1", "gpu:0"), ("nvml:0", "gpu:1")]),
        ("{uuid1}", [("nvml:1", "gpu:0")]),
        ("{bare_uuid1}", [("nvml:1", "gpu:0")]),
        ("GPU-bbbb", [("nvml:1", "gpu:0")]),  # a unique prefix, as CUDA accepts
        (" {upper_uuid0} , 1", [("nvml:0", "gpu:0"), ("nvml:1", "gpu:1")]),
        ("0,7,1", [("nvml:0", "gpu:0")]),  # CUDA stops at the first entry naming no GPU
        ("0,0", [("nvml:0", "gpu:0")]),
    ],
)
def test_cuda_visible_devices_by_index_and_uuid(fake_nvml, monkeypatch, visible, expected):
    uuid0, uuid1 = (gpu.uuid for gpu in fake_nvml.gpus)
    assert uuid1.startswith("GPU-bbbb") and not uuid0.startswith("GPU-bbbb")
    spec = visible.format(uuid1=uuid1, bare_uuid1=uuid1[4:], upper_uuid0=uuid0.upper())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", spec)

    sensors = nvml.discover()

    assert [(s.name, s.device) for s in sensors] == expected
    close_all(sensors)


@pytest.mark.parametrize("visible", ["", "-1", "5", "GPU-cccc", "GPU-"])
def test_no_visible_gpu(fake_nvml, monkeypatch, visible):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)

    with pytest.raises(SensorUnavailable, match="no GPU is visible") as info:
        nvml.discover()

    assert "nvidia-smi -L" in info.value.fix
    assert fake_nvml.references == 0


def test_ambiguous_uuid_prefix_names_no_gpu(fake_nvml, monkeypatch):
    fake_nvml.gpus[1].uuid = "GPU-aaaaaaaa-9999-2222-3333-444444444444"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaaaaaa")

    with pytest.raises(SensorUnavailable, match="no GPU is visible"):
        nvml.discover()


def test_mig_instance_in_cuda_visible_devices(fake_nvml, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-12345678-aaaa-bbbb-cccc-1234567890ab")

    with pytest.raises(SensorUnavailable, match="MIG instance") as info:
        nvml.discover()

    assert "-mig 0" in info.value.fix


def test_machine_without_gpus(fake_nvml):
    fake_nvml.gpus.clear()

    with pytest.raises(SensorUnavailable, match="no NVIDIA GPU"):
        nvml.discover()


def test_mixed_models_warn_about_cuda_order(fake_nvml, monkeypatch, caplog):
    fake_nvml.gpus[1].model = "NVIDIA GeForce RTX 4090"

    with caplog.at_level(logging.WARNING, logger="greenprof.sensors.nvml"):
        close_all(nvml.discover())
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in caplog.text

    caplog.clear()
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    with caplog.at_level(logging.WARNING, logger="greenprof.sensors.nvml"):
        close_all(nvml.discover())
    assert caplog.text == ""


def test_close_is_idempotent(fake_nvml):
    sensors = nvml.discover()
    close_all(sensors)
    close_all(sensors)
    assert fake_nvml.references == 0
