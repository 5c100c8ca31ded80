"""CPU energy estimated from this process's CPU time, for machines with no readable counter.

The model: a CPU whose logical CPUs are all busy draws its rated power; this process gets the
share its CPU time represents. One second of CPU time (one logical CPU busy for one second) costs
``rated_cpu_power_w / logical_cpus`` joules. Idle power and other processes are not counted, and
the number is an estimate: the sensor says so (``measured=False``) and every report shows it.

Child processes (DataLoader workers, for instance) are other processes: their CPU time is not in
the estimate. The sensor looks for them once a second while it is read (one small ``/proc``
file on Linux) and, when any ran, the session says that their energy is left out.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

from greenprof.errors import ConfigError
from greenprof.sensors.base import Sensor

#: Environment variable that sets the rated power when no argument or CLI flag does.
CPU_POWER_ENV = "GREENPROF_CPU_POWER_W"

#: How often, in seconds of wall time, the sensor looks for child processes.
CHILD_CHECK_INTERVAL_S = 1.0

#: Default rated power per logical CPU, in watts. A desktop or server core under full load draws
#: roughly 5-15 W with its share of the uncore; 10 W keeps the estimate in that range whatever the
#: machine's size. Set the real figure (the sum of the sockets' TDP) for a better estimate.
DEFAULT_WATTS_PER_CPU_W = 10.0


def logical_cpu_count() -> int:
    """Return the number of logical CPUs of the machine (at least 1)."""
    return os.cpu_count() or 1


def resolve_rated_cpu_power_w(rated_cpu_power_w: float | None = None) -> float:
    """Return the rated power of the whole CPU, in watts.

    The argument wins; then the ``GREENPROF_CPU_POWER_W`` environment variable; then the default
    of :data:`DEFAULT_WATTS_PER_CPU_W` per logical CPU.

    Raises:
        ConfigError: when the value given or found in the environment is not a positive number.
    """
    if rated_cpu_power_w is not None:
        return _positive_w(rated_cpu_power_w, "rated_cpu_power_w")
    from_env = os.environ.get(CPU_POWER_ENV, "").strip()
    if from_env:
        try:
            value = float(from_env)
        except ValueError:
            raise ConfigError(
                f"{CPU_POWER_ENV}={from_env!r} is not a number; set it to the CPU's rated power "
                "in watts, e.g. 65"
            ) from None
        return _positive_w(value, CPU_POWER_ENV)
    return DEFAULT_WATTS_PER_CPU_W * logical_cpu_count()


def _positive_w(value: float, what: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{what} must be a positive number of watts, got {value!r}")
    return float(value)


def child_process_count() -> int | None:
    """Child processes the main thread of this process started and that still run.

    Read from ``/proc/PID/task/PID/children`` (Linux); None where that file cannot be read.
    DataLoader workers and ``multiprocessing`` pools started from the main thread are listed there.
    """
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            return len(file.read().split())
    except OSError:
        return None


class CpuEstimateSensor(Sensor):
    """Estimates this process's CPU energy from its CPU time and a rated power.

    CPU time comes from the process CPU-time clock (user + system time of all threads), which
    has nanosecond resolution; ``/proc`` tick counts (10 ms) would be too coarse for layers.

    Args:
        rated_cpu_power_w: power of the whole CPU (all sockets, all logical CPUs busy), in watts;
            ``None`` reads ``GREENPROF_CPU_POWER_W`` or uses the default.
        logical_cpus: number of logical CPUs the rated power is shared by; default: this machine's.
        cpu_time_ns: clock of the process's CPU time in nanoseconds (tests inject a fake).
        children: how many child processes run now, None when unknown (tests inject a fake).
        wall_s: monotonic seconds, for how often ``children`` is asked.

    Raises:
        ConfigError: when the rated power is not a positive number.

    Example:
        >>> sensor = CpuEstimateSensor(rated_cpu_power_w=40.0, logical_cpus=4)
        >>> sensor.watts_per_cpu_w
        10.0
        >>> sensor.energy_j() >= 0.0
        True
    """

    name = "cpu-estimate"
    device = "cpu"
    measured = False

    def __init__(
        self,
        rated_cpu_power_w: float | None = None,
        *,
        logical_cpus: int | None = None,
        cpu_time_ns: Callable[[], int] = time.process_time_ns,
        children: Callable[[], int | None] = child_process_count,
        wall_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rated_cpu_power_w = resolve_rated_cpu_power_w(rated_cpu_power_w)
        self.logical_cpus = logical_cpus if logical_cpus is not None else logical_cpu_count()
        if self.logical_cpus < 1:
            raise ConfigError(f"logical_cpus must be at least 1, got {self.logical_cpus}")
        self.watts_per_cpu_w = self.rated_cpu_power_w / self.logical_cpus
        self._cpu_time_ns = cpu_time_ns
        self._origin_ns = cpu_time_ns()
        self._children = children
        self._wall_s = wall_s
        self._next_check_s = -math.inf
        #: Most child processes seen running at once while the sensor was read.
        self.max_children = 0

    def energy_j(self) -> float:
        """Return estimated joules since the sensor was created."""
        cpu_s = (self._cpu_time_ns() - self._origin_ns) / 1e9
        now_s = self._wall_s()
        if now_s >= self._next_check_s:
            self._next_check_s = now_s + CHILD_CHECK_INTERVAL_S
            self.max_children = max(self.max_children, self._children() or 0)
        return max(cpu_s, 0.0) * self.watts_per_cpu_w

    def caveats(self) -> list[str]:
        """Say that child processes' CPU energy is left out, when any ran."""
        if not self.max_children:
            return []
        return [
            f"{self.name}: up to {self.max_children} child process(es) ran beside the profiled "
            "one (DataLoader workers, for instance); the estimate counts the profiled process's "
            "own CPU time only, so their CPU energy is in no figure"
        ]

    def describe(self) -> dict[str, object]:
        """Return the facts a report shows, including the power model used."""
        return {
            **super().describe(),
            "model": "process CPU time x rated power / logical CPUs",
            "rated_cpu_power_w": self.rated_cpu_power_w,
            "logical_cpus": self.logical_cpus,
        }
