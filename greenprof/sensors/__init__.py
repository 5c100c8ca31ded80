"""Energy sensors: what can be measured on this machine, and the objects that measure it.

``detect()`` is what ``greenprof.profile(sensors=None)`` uses: every NVIDIA GPU that works and the
RAPL package/DRAM counters when they are readable; when no CPU counter is readable, the CPU
estimate takes their place, so that CPU energy is never silently missing.

Example:
    >>> from greenprof.sensors import detect
    >>> [s.name for s in detect(names=["estimate"])]
    ['cpu-estimate']
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from greenprof.errors import ConfigError, SensorUnavailable
from greenprof.sensors import nvml, rapl
from greenprof.sensors.base import Sensor
from greenprof.sensors.estimate import CpuEstimateSensor
from greenprof.sensors.replay import ReplaySensor

__all__ = [
    "Sensor",
    "ReplaySensor",
    "CpuEstimateSensor",
    "detect",
    "availability",
    "available_sensors",
    "default_selection",
    "SENSOR_KINDS",
]

logger = logging.getLogger(__name__)

#: Every kind of sensor ``detect(names=...)`` accepts, in the order they are tried.
SENSOR_KINDS = ("nvml", "rapl", "estimate")

Availability = list[tuple[str, list[Sensor] | SensorUnavailable]]


def availability(
    *,
    names: Sequence[str] | None = None,
    rated_cpu_power_w: float | None = None,
    powercap_root: str = rapl.DEFAULT_ROOT,
) -> Availability:
    """Try each kind of sensor and return what it gave: its sensors, or why it is unavailable.

    Args:
        names: the kinds to try; default: all of :data:`SENSOR_KINDS`.
        rated_cpu_power_w: rated power of the whole CPU for the estimate, in watts; default:
            ``GREENPROF_CPU_POWER_W`` or 10 W per logical CPU.
        powercap_root: where the kernel's powercap zones are.

    Returns:
        ``(kind, sensors or SensorUnavailable)`` per kind, in the order asked. The caller owns
        the sensors and closes them.

    Raises:
        ConfigError: for an unknown kind or an unusable rated power.
    """
    kinds = SENSOR_KINDS if names is None else _check_kinds(names)
    openers: dict[str, Callable[[], list[Sensor]]] = {
        "nvml": nvml.discover,
        "rapl": lambda: rapl.discover(powercap_root),
        "estimate": lambda: [CpuEstimateSensor(rated_cpu_power_w)],
    }
    results: Availability = []
    for kind in kinds:
        try:
            results.append((kind, openers[kind]()))
        except SensorUnavailable as exc:
            logger.info("%s", exc)
            results.append((kind, exc))
    return results


def detect(
    *,
    names: Sequence[str] | None = None,
    rated_cpu_power_w: float | None = None,
    powercap_root: str = rapl.DEFAULT_ROOT,
) -> list[Sensor]:
    """Return the sensors to profile with.

    Args:
        names: ``None`` chooses automatically: every working GPU, the RAPL counters when they
            are readable, and the CPU estimate only when no CPU counter is. Otherwise exactly
            these kinds (any of :data:`SENSOR_KINDS`), each of which must work.
        rated_cpu_power_w: rated power of the whole CPU for the estimate, in watts.
        powercap_root: where the kernel's powercap zones are.

    Raises:
        ConfigError: for an unknown kind or an unusable rated power.
        SensorUnavailable: when a kind named in ``names`` cannot be used (reason and fix inside).
    """
    results = availability(
        names=names, rated_cpu_power_w=rated_cpu_power_w, powercap_root=powercap_root
    )
    if names is not None:
        failed = [exc for _, exc in results if isinstance(exc, SensorUnavailable)]
        if failed:
            _close_all(results)
            raise failed[0]
        return available_sensors(results)
    chosen = default_selection(results)
    _close_all(results, keep=chosen)
    return chosen


def default_selection(results: Availability) -> list[Sensor]:
    """Return the sensors the automatic choice keeps from :func:`availability`'s results.

    GPUs and RAPL counters are kept; the CPU estimate only when no measured CPU sensor exists,
    so CPU energy is neither missing nor counted twice.
    """
    found = available_sensors(results)
    measured_cpu = any(s.measured and s.device.startswith("cpu") for s in found)
    return [s for s in found if s.measured or not measured_cpu]


def available_sensors(results: Availability) -> list[Sensor]:
    """Return every sensor in :func:`availability`'s results, in order."""
    return [sensor for _, sensors in results if isinstance(sensors, list) for sensor in sensors]


def _check_kinds(names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in SENSOR_KINDS]
    if unknown:
        raise ConfigError(
            f"unknown sensor kind {', '.join(map(repr, unknown))}; "
            f"valid kinds are {', '.join(SENSOR_KINDS)}"
        )
    return tuple(dict.fromkeys(names))  # in the order given, each once


def _close_all(results: Availability, keep: Sequence[Sensor] = ()) -> None:
    kept = {id(s) for s in keep}
    for sensor in available_sensors(results):
        if id(sensor) not in kept:
            sensor.close()
