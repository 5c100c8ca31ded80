"""A sensor that plays back a recorded energy series, for tests, demos and re-analysis."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from greenprof.clock import now_ns
from greenprof.errors import ConfigError
from greenprof.sensors.base import Sensor


class ReplaySensor(Sensor):
    """Replays cumulative joules recorded at known times against the monotonic clock.

    Time 0 of the recording is the first :meth:`energy_j` call. Between recorded points the
    energy is interpolated linearly; before the first point the first value holds, after the last
    point the last value holds (the recorded device has stopped drawing power).

    Args:
        times_s: seconds since time 0 at which the energies were recorded; strictly increasing.
        energies_j: cumulative joules at those times; never decreasing.
        name: sensor name shown in reports.
        device: what the recording measured, e.g. ``"cpu"`` or ``"gpu:0"``.
        measured: whether the recording came from a hardware counter (``False`` = estimated).
        clock: monotonic nanoseconds; the default is the clock every greenprof timestamp uses.

    Raises:
        ConfigError: when the series is empty, of unequal lengths, not finite, out of order or
            decreasing.

    Example:
        >>> fake_ns = iter([0, 5_000_000_000, 20_000_000_000])
        >>> sensor = ReplaySensor([0.0, 10.0], [0.0, 50.0], clock=lambda: next(fake_ns))
        >>> sensor.energy_j(), sensor.energy_j(), sensor.energy_j()
        (0.0, 25.0, 50.0)
    """

    def __init__(
        self,
        times_s: Sequence[float],
        energies_j: Sequence[float],
        name: str = "replay",
        device: str = "cpu",
        measured: bool = True,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self._times_s = np.asarray(times_s, dtype=np.float64)
        self._energies_j = np.asarray(energies_j, dtype=np.float64)
        _validate(self._times_s, self._energies_j)
        self.name = name
        self.device = device
        self.measured = measured
        self._clock = clock
        self._origin_ns: int | None = None
        self._lock = threading.Lock()

    def energy_j(self) -> float:
        """Return the recorded energy at the time elapsed since the first call."""
        now = self._clock()
        with self._lock:
            if self._origin_ns is None:
                self._origin_ns = now
            elapsed_s = (now - self._origin_ns) / 1e9
        return float(np.interp(elapsed_s, self._times_s, self._energies_j))

    def describe(self) -> dict[str, object]:
        """Return the facts a report shows, including that the joules are replayed."""
        return {**super().describe(), "replayed": True}


def _validate(times_s: np.ndarray, energies_j: np.ndarray) -> None:
    if times_s.ndim != 1 or energies_j.ndim != 1 or len(times_s) != len(energies_j):
        raise ConfigError("ReplaySensor: times_s and energies_j must be 1-D and of equal length")
    if len(times_s) == 0:
        raise ConfigError("ReplaySensor: the series is empty; give at least one point")
    if not (np.all(np.isfinite(times_s)) and np.all(np.isfinite(energies_j))):
        raise ConfigError("ReplaySensor: times_s and energies_j must be finite numbers")
    if np.any(np.diff(times_s) <= 0):
        raise ConfigError("ReplaySensor: times_s must be strictly increasing")
    drops = np.diff(energies_j) < 0
    if np.any(drops):
        at = int(np.argmax(drops)) + 1
        raise ConfigError(
            f"ReplaySensor: energies_j must never decrease (cumulative joules); point {at} "
            f"falls from {energies_j[at - 1]:g} J to {energies_j[at]:g} J"
        )
