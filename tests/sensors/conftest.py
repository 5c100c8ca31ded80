"""Fake hardware for the sensor tests: a powercap tree on disk, an NVML module, a manual clock."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pynvml as real_pynvml
import pytest

PACKAGE_RANGE_UJ = 262_143_328_850  # what most Intel CPUs report


class FakeClock:
    """Monotonic nanoseconds that move only when told to."""

    def __init__(self, t_ns: int = 1_000_000_000) -> None:
        self.t_ns = t_ns

    def __call__(self) -> int:
        return self.t_ns

    def advance(self, seconds: float) -> None:
        self.t_ns += round(seconds * 1e9)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Powercap:
    """A directory laid out like /sys/class/powercap, with zones made on request."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(exist_ok=True)

    def zone(
        self,
        directory: str,
        name: str,
        energy_uj: int = 0,
        *,
        range_uj: int = PACKAGE_RANGE_UJ,
        limits_uw: dict[str, int] | None = None,
    ) -> Path:
        path = self.root / directory
        path.mkdir()
        (path / "name").write_text(name + "\n")
        (path / "max_energy_range_uj").write_text(f"{range_uj}\n")
        self.set(path, energy_uj)
        for file, value in (limits_uw or {}).items():
            (path / file).write_text(f"{value}\n")
        return path

    @staticmethod
    def set(zone: Path, energy_uj: int) -> None:
        (zone / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def powercap(tmp_path: Path) -> Powercap:
    return Powercap(tmp_path / "powercap")


@dataclass
class FakeGpu:
    uuid: str
    model: str = "NVIDIA A100-SXM4-80GB"
    energy_mj: int | None = 5_000_000  # None: no counter (pre-Volta)
    power_mw: int | None = 100_000  # None: no power reading either
    error: int | None = None  # NVML error code every energy/power read raises
    mig: int = 0


class FakePynvml(types.ModuleType):
    """Just enough of pynvml, raising the real NVMLError with the real error codes."""

    def __init__(self, gpus: list[FakeGpu]) -> None:
        super().__init__("pynvml")
        for attr in dir(real_pynvml):
            if attr.startswith(("NVML_ERROR_", "NVML_DEVICE_MIG_")):
                setattr(self, attr, getattr(real_pynvml, attr))
        self.NVMLError = real_pynvml.NVMLError
        self.gpus = gpus
        self.init_error: int | None = None
        self.references = 0

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise real_pynvml.NVMLError(self.init_error)
        self.references += 1

    def nvmlShutdown(self) -> None:
        assert self.references > 0, "nvmlShutdown without nvmlInit"
        self.references -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if not 0 <= index < len(self.gpus):
            raise real_pynvml.NVMLError(real_pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        return gpu.uuid

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        return gpu.model

    def nvmlDeviceGetMigMode(self, gpu: FakeGpu) -> tuple[int, int]:
        return gpu.mig, gpu.mig

    def nvmlDeviceGetTotalEnergyConsumption(self, gpu: FakeGpu) -> int:
        return self._read(gpu, gpu.energy_mj)

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        return self._read(gpu, gpu.power_mw)

    @staticmethod
    def _read(gpu: FakeGpu, value: int | None) -> int:
        if gpu.error is not None:
            raise real_pynvml.NVMLError(gpu.error)
        if value is None:
            raise real_pynvml.NVMLError(real_pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakePynvml:
    uuids = ["GPU-aaaaaaaa-1111-2222-3333-444444444444", "GPU-bbbbbbbb-1111-2222-3333-444444444444"]
    fake = FakePynvml([FakeGpu(uuid) for uuid in uuids])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    return fake


@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
