"""NVIDIA GPU energy through NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``).

Volta and newer GPUs keep a total-energy counter (millijoules since the driver loaded), which is
what the sensor reads. Older GPUs only report power (milliwatts); the sensor then integrates its
own power reads with the trapezoid rule, so it must be read often (the sampler does).

The sensors follow ``CUDA_VISIBLE_DEVICES`` the way CUDA does: entries are indices or UUIDs (with
or without the ``GPU-`` prefix, or a unique prefix of one), and the list ends at the first entry
that names no GPU. NVML numbers GPUs in PCI bus order; CUDA does too when
``CUDA_DEVICE_ORDER=PCI_BUS_ID``, otherwise it puts the fastest first, which differs on machines
with mixed GPU models (a warning says so; UUIDs are always unambiguous).

``pynvml`` is imported on first use so that ``import greenprof`` works without it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from types import ModuleType

from greenprof.clock import now_ns
from greenprof.errors import SensorError, SensorUnavailable
from greenprof.sensors.base import Sensor

logger = logging.getLogger(__name__)

_INDEX = re.compile(r"^-?\d+$")

_LIST_GPUS = "`nvidia-smi -L` lists each GPU's index and UUID"

#: NVML error name -> (what went wrong, how to fix it).
_EXPLANATIONS = {
    "LIBRARY_NOT_FOUND": (
        "the NVML library (libnvidia-ml.so.1, installed with the NVIDIA driver) was not found",
        "install the NVIDIA driver; in a container, start it with GPU access "
        "(`docker run --gpus all ...` with the NVIDIA Container Toolkit)",
    ),
    "DRIVER_NOT_LOADED": (
        "the NVIDIA driver is not loaded",
        "install or load the NVIDIA driver until `nvidia-smi` works",
    ),
    "NO_PERMISSION": (
        "this user may not query the GPU",
        "make /dev/nvidia* readable by your user (e.g. join the group that owns them) or run as "
        "root; under MIG, energy can only be read for the whole GPU",
    ),
    "GPU_IS_LOST": (
        "the GPU is lost (it fell off the bus or hit a fatal error)",
        "check `dmesg` for Xid errors, then reset the GPU (`sudo nvidia-smi -r -i <index>`) or "
        "reboot",
    ),
    "RESET_REQUIRED": (
        "the GPU needs a reset",
        "reset it (`sudo nvidia-smi -r -i <index>`) or reboot",
    ),
    "LIB_RM_VERSION_MISMATCH": (
        "the NVML library and the loaded NVIDIA kernel driver have different versions",
        "reboot (or reload the nvidia kernel modules) after the driver upgrade",
    ),
    "FUNCTION_NOT_FOUND": (
        "the NVIDIA driver is too old for this query",
        "upgrade the NVIDIA driver",
    ),
    "NOT_SUPPORTED": (
        "the GPU reports neither an energy counter nor its power draw",
        "use a GPU with power management (datacenter GPUs, most GeForce since Maxwell); "
        "MIG instances and some virtual GPUs do not report power",
    ),
}


def _import_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise SensorUnavailable(
            "nvml",
            "the nvidia-ml-py package (module pynvml) is not installed.",
            "pip install nvidia-ml-py",
        ) from None
    return pynvml


def _explain(pynvml: ModuleType, exc: Exception) -> tuple[str, str]:
    """Return ``(reason, fix)`` for an NVML error."""
    code = getattr(exc, "value", None)
    for name, (reason, fix) in _EXPLANATIONS.items():
        if code is not None and code == getattr(pynvml, f"NVML_ERROR_{name}", None):
            return f"{reason} (NVML: {exc})", fix
    return f"NVML error: {exc}", ""


def _unavailable(pynvml: ModuleType, exc: Exception, context: str = "") -> SensorUnavailable:
    reason, fix = _explain(pynvml, exc)
    return SensorUnavailable("nvml", f"{context}{reason}.", fix)


def discover(*, clock: Callable[[], int] = now_ns) -> list[Sensor]:
    """Return one sensor per GPU this process can see.

    Args:
        clock: monotonic nanoseconds, used by GPUs that only report power.

    Raises:
        SensorUnavailable: when NVML cannot be used, no GPU is visible, or a visible GPU cannot
            be measured, with the reason and how to fix it.
    """
    pynvml = _import_pynvml()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise _unavailable(pynvml, exc) from exc
    sensors: list[Sensor] = []
    try:
        for cuda_index, nvml_index in enumerate(_visible_gpus(pynvml)):
            sensors.append(NvmlSensor(nvml_index, cuda_index=cuda_index, clock=clock))
    except BaseException:
        for sensor in sensors:
            sensor.close()
        raise
    finally:
        pynvml.nvmlShutdown()  # each sensor holds its own NVML reference
    return sensors


def _visible_gpus(pynvml: ModuleType, spec: str | None = None) -> list[int]:
    """Return the NVML indices of the GPUs this process sees, in CUDA's order.

    Args:
        pynvml: the initialised NVML module.
        spec: the value of ``CUDA_VISIBLE_DEVICES``; default: read it from the environment.

    Raises:
        SensorUnavailable: when no GPU is visible, or the list names a MIG instance.
    """
    if spec is None:
        spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        count = pynvml.nvmlDeviceGetCount()
        uuids = [
            _text(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i)))
            for i in range(count)
        ]
    except pynvml.NVMLError as exc:
        raise _unavailable(pynvml, exc) from exc
    if count == 0:
        raise SensorUnavailable("nvml", "NVML found no NVIDIA GPU.", "")
    chosen = list(range(count)) if spec is None else _parse_visible(spec, uuids)
    if not chosen:
        raise SensorUnavailable(
            "nvml",
            f"no GPU is visible: CUDA_VISIBLE_DEVICES={spec!r}.",
            f"unset CUDA_VISIBLE_DEVICES or list GPU indices or UUIDs in it; {_LIST_GPUS}",
        )
    _warn_if_order_ambiguous(pynvml, chosen, spec)
    return chosen


def _parse_visible(spec: str, uuids: list[str]) -> list[int]:
    chosen: list[int] = []
    for raw in spec.split(","):
        entry = raw.strip()
        if entry.upper().startswith("MIG-"):
            raise SensorUnavailable(
                "nvml",
                f"CUDA_VISIBLE_DEVICES names the MIG instance {entry}; NVML measures energy only "
                "for a whole GPU, which all its MIG instances share.",
                "profile on a GPU without MIG (`sudo nvidia-smi -i <index> -mig 0`), or select "
                "sensors without nvml and measure the CPU only",
            )
        index = _match_entry(entry, uuids)
        if index is None or index in chosen:
            # CUDA ignores an entry that names no GPU, and everything after it.
            if spec.strip():
                logger.warning(
                    "CUDA_VISIBLE_DEVICES entry %r names no GPU (or repeats one); CUDA ignores it "
                    "and the entries after it. %s",
                    entry,
                    _LIST_GPUS,
                )
            break
        chosen.append(index)
    return chosen


def _match_entry(entry: str, uuids: list[str]) -> int | None:
    if _INDEX.match(entry):
        index = int(entry)
        return index if 0 <= index < len(uuids) else None
    wanted = _bare_uuid(entry)
    if not wanted:
        return None
    matches = [i for i, uuid in enumerate(uuids) if _bare_uuid(uuid).startswith(wanted)]
    return matches[0] if len(matches) == 1 else None


def _bare_uuid(uuid: str) -> str:
    uuid = uuid.strip().lower()
    return uuid[4:] if uuid.startswith("gpu-") else uuid


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _warn_if_order_ambiguous(pynvml: ModuleType, chosen: list[int], spec: str | None) -> None:
    """Warn where CUDA's default order may number the GPUs differently from NVML."""
    if os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        return
    if spec is not None and not any(_INDEX.match(e.strip()) for e in spec.split(",")):
        return  # UUIDs only: the same GPUs whatever the order
    try:
        models = {
            _text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))) for i in chosen
        }
    except pynvml.NVMLError:
        return
    if len(models) > 1:
        logger.warning(
            "GPUs of different models (%s): CUDA numbers them fastest first unless "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID, so gpu:N may not be NVML GPU N; set "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID or list GPUs by UUID in CUDA_VISIBLE_DEVICES",
            ", ".join(sorted(models)),
        )


class NvmlSensor(Sensor):
    """One NVIDIA GPU's cumulative energy.

    Args:
        index: the GPU's NVML index (PCI bus order, as ``nvidia-smi`` numbers it).
        cuda_index: the GPU's index as this process's CUDA sees it; default: ``index``.
        clock: monotonic nanoseconds, for GPUs whose power is integrated.

    Attributes:
        uses_counter: ``True`` when the GPU's energy counter is read, ``False`` when power is
            polled and integrated (GPUs older than Volta).

    Raises:
        SensorUnavailable: when NVML or the GPU cannot be used.

    Example:
        >>> sensor = NvmlSensor(0)  # doctest: +SKIP
        >>> sensor.name, sensor.device, sensor.energy_j()  # doctest: +SKIP
        ('nvml:0', 'gpu:0', 0.0)
    """

    measured = True

    def __init__(
        self,
        index: int,
        *,
        cuda_index: int | None = None,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self._pynvml = pynvml = _import_pynvml()
        self.index = index
        self.name = f"nvml:{index}"
        self.device = f"gpu:{index if cuda_index is None else cuda_index}"
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._handle = None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise _unavailable(pynvml, exc) from exc
        try:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.uses_counter, first = self._probe()
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise _unavailable(pynvml, exc, f"GPU {index}: {self._mig_note()}") from exc
        except BaseException:
            pynvml.nvmlShutdown()
            raise
        # Counter: millijoules at creation. Power: (time, watts) of the last read.
        self._origin_mj = first if self.uses_counter else 0
        self._last_mj = self._origin_mj
        self._last_ns = clock()
        self._last_power_w = 0.0 if self.uses_counter else first / 1000.0
        self._power_total_j = 0.0

    def _probe(self) -> tuple[bool, int]:
        """Return ``(uses_counter, first reading)``: the counter when the GPU has one."""
        pynvml = self._pynvml
        try:
            return True, int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except pynvml.NVMLError as exc:
            if exc.value != pynvml.NVML_ERROR_NOT_SUPPORTED:
                raise
        logger.info("%s has no energy counter (pre-Volta); integrating its power draw", self.name)
        return False, int(pynvml.nvmlDeviceGetPowerUsage(self._handle))

    def _mig_note(self) -> str:
        if self._handle is None:
            return ""
        try:
            current, _pending = self._pynvml.nvmlDeviceGetMigMode(self._handle)
        except Exception:  # only a hint for the message; GPUs before Ampere have no MIG
            return ""
        if current == getattr(self._pynvml, "NVML_DEVICE_MIG_ENABLE", 1):
            return "MIG mode is enabled on this GPU; "
        return ""

    def energy_j(self) -> float:
        """Return joules since the sensor was created.

        Raises:
            SensorError: when the GPU cannot be read (lost, reset, driver gone) or its counter
                goes backwards.
        """
        pynvml = self._pynvml
        with self._lock:
            try:
                if self.uses_counter:
                    total_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
                    return self._counter_j(int(total_mj))
                return self._integrate_j(int(pynvml.nvmlDeviceGetPowerUsage(self._handle)))
            except pynvml.NVMLError as exc:
                reason, fix = _explain(pynvml, exc)
                raise SensorError(
                    f"{self.name}: {reason}." + (f" Fix: {fix}" if fix else "")
                ) from exc

    def _counter_j(self, total_mj: int) -> float:
        if total_mj < self._last_mj:
            raise SensorError(
                f"{self.name}: energy counter went backwards ({self._last_mj} -> {total_mj} mJ); "
                "the GPU was reset or the driver reloaded"
            )
        self._last_mj = total_mj
        return (total_mj - self._origin_mj) / 1000.0

    def _integrate_j(self, power_mw: int) -> float:
        t_ns = self._clock()
        power_w = power_mw / 1000.0
        elapsed_s = max(t_ns - self._last_ns, 0) / 1e9
        self._power_total_j += (power_w + self._last_power_w) / 2.0 * elapsed_s
        self._last_ns, self._last_power_w = t_ns, power_w
        return self._power_total_j

    def close(self) -> None:
        """Release this sensor's NVML reference."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._pynvml.nvmlShutdown()
        except self._pynvml.NVMLError as exc:
            logger.debug("nvmlShutdown for %s failed: %s", self.name, exc)

    def describe(self) -> dict[str, object]:
        """Return the facts a report shows, including how the joules are obtained."""
        method = "energy counter" if self.uses_counter else "integrated power"
        return {**super().describe(), "method": method, "nvml_index": self.index}
