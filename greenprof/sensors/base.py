"""The abstract sensor every energy source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Sensor(ABC):
    """A source of cumulative energy, in joules.

    Subclasses set ``name``, ``device`` and ``measured`` and implement :meth:`energy_j`. The sampler
    calls :meth:`energy_j` from its own thread, so it must be safe to call from any thread.

    Attributes:
        name: unique, human-readable name, e.g. ``"nvml:0"`` or ``"rapl:package-0"``.
        device: what is measured, e.g. ``"cpu"``, ``"cpu:dram"`` or ``"gpu:0"``.
        measured: ``True`` when the joules come from a hardware counter or power meter,
            ``False`` when they are estimated (shown as "estimated" everywhere).

    Example:
        >>> class Constant(Sensor):
        ...     name, device, measured = "const", "cpu", False
        ...     def __init__(self):
        ...         self._j = 0.0
        ...     def energy_j(self):
        ...         self._j += 1.0
        ...         return self._j
        >>> Constant().energy_j()
        1.0
    """

    name: str = "sensor"
    device: str = "unknown"
    measured: bool = False

    @abstractmethod
    def energy_j(self) -> float:
        """Return joules consumed since an arbitrary origin; never decreases.

        Raises:
            greenprof.errors.SensorError: when the sensor cannot be read any more.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most sensors hold nothing
        """Release whatever the sensor holds (file handles, library handles)."""

    def caveats(self) -> list[str]:
        """What this sensor's figures leave out, as found while it ran (session warnings).

        The sampler reads them once, when it stops.
        """
        return []

    def describe(self) -> dict[str, object]:
        """Return the facts a report shows about this sensor."""
        return {"name": self.name, "device": self.device, "measured": self.measured}

    def __repr__(self) -> str:
        kind = "measured" if self.measured else "estimated"
        return f"<{type(self).__name__} {self.name} device={self.device} {kind}>"
