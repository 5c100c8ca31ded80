"""Run-to-run evidence a profile keeps: step boundaries, energy per window of steps, machine load.

``greenprof compare`` resamples the windows to learn how much a step varies within a run, and reads
the load figures to tell a machine slowed by other work from slower code.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

import numpy as np
import pandas as pd

from greenprof.attribute.fit import SensorSeries
from greenprof.attribute.steps import step_windows, window_edges
from greenprof.profiler.calibration import update_period_s
from greenprof.schema import STARTUP_MODULE, TimeTable

#: Step boundaries kept before every other one is dropped (memory stays bounded on long runs).
MAX_MARKS = 8192


class StepMarks:
    """Times at which steps ended, bounded: past :data:`MAX_MARKS`, every other one is dropped.

    Recorded at every step boundary the hooks report (each outermost forward and each optimizer
    step), so consecutive marks may be a forward's end and a step's end; the windows built from
    them hold equal numbers of marks, and their step count comes from the run's steps.
    """

    def __init__(self) -> None:
        self.times_ns: list[int] = []
        self.cpu_ns: list[int] = []  # this process's CPU time at each kept mark
        self.stride = 1  # boundaries between two kept marks
        self.count = 0  # boundaries seen
        self._skip = 0

    def add(self, t_ns: int) -> None:
        """Record one step boundary at ``t_ns`` (and the process's CPU time now)."""
        self.count += 1
        self._skip += 1
        if self._skip < self.stride:
            return
        self._skip = 0
        self.times_ns.append(t_ns)
        self.cpu_ns.append(time.process_time_ns())
        if len(self.times_ns) > MAX_MARKS:
            del self.times_ns[1::2]
            del self.cpu_ns[1::2]
            self.stride *= 2


#: Where the kernel counts the machine's CPU time (Linux).
PROC_STAT = "/proc/stat"


def machine_busy_s(path: str = PROC_STAT) -> float | None:
    """Seconds of CPU time the whole machine spent busy since boot (None where unknown).

    Busy is user, nice, system, interrupts and steal (time the hypervisor gave the machine's
    CPUs to other guests): everything but idle and waiting for I/O, of every CPU.
    """
    try:
        with open(path, encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    try:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    except ValueError:
        return None
    return (user + nice + system + irq + softirq + steal) / _clock_ticks_per_s()


def _clock_ticks_per_s() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (AttributeError, ValueError, OSError):
        return 100


class LoadProbe:
    """This process's CPU time against wall time, and the machine's load, over the profile.

    Args:
        stat_path: the kernel's CPU time counters (``/proc/stat``); where unreadable, the share
            of other processes is not known.
    """

    def __init__(self, stat_path: str = PROC_STAT) -> None:
        self._stat_path = stat_path
        self._start = self._read()

    def _read(self) -> tuple[float, float, int, float | None]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return (
            time.perf_counter(),
            time.process_time(),
            int(usage.ru_nivcsw),
            machine_busy_s(self._stat_path),
        )

    def facts(self) -> dict[str, Any]:
        """Return ``meta["load"]``: the figures from the start of the profile to now.

        ``wall_s``, ``cpu_s`` (this process, all threads), ``cpu_per_wall``,
        ``involuntary_switches`` (times the process was preempted), ``load_avg_1m``,
        ``logical_cpus`` and ``others_cpu_share``: the machine's busy CPU time that was not this
        process's, over all its CPUs' wall time (0 to 1; None where unknown). Other work shows
        there at once, where the load average follows it over a minute, and CPUs that share a
        core slow each other without this process waiting for a CPU.
        """
        wall, cpu, switches, busy = self._read()
        wall_s, cpu_s = wall - self._start[0], cpu - self._start[1]
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = None
        cpus = os.cpu_count() or 1
        others = None
        if busy is not None and self._start[3] is not None and wall_s > 0:
            others = min(max((busy - self._start[3] - cpu_s) / (wall_s * cpus), 0.0), 1.0)
        return {
            "wall_s": wall_s,
            "cpu_s": cpu_s,
            "cpu_per_wall": cpu_s / wall_s if wall_s > 0 else None,
            "involuntary_switches": switches - self._start[2],
            "load_avg_1m": load,
            "logical_cpus": cpus,
            "others_cpu_share": others,
        }


def step_tables(
    marks: StepMarks,
    table: TimeTable,
    series: list[SensorSeries],
    names: list[tuple[str, str]],
    fallback_period_s: float,
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """``steps.csv`` and ``step_modules.csv`` of the run, or ``(None, None)`` with too few steps.

    ``steps``: one row per window (``window, steps, t0_s, t1_s, time_s, cpu_s, energy_j,
    energy_lo_j, energy_hi_j``, times from the profile's start; ``cpu_s`` is this process's CPU
    time in the window, all threads). ``step_modules``: self seconds per window and
    module, all phases (``window, module, time_s``), the outside-modules time included.
    """
    period_s = update_period_s([(s.t_ns, s.energy_j) for s in series], fallback_period_s)
    edges, group = window_edges(np.asarray(marks.times_ns, np.int64), period_s)
    if len(edges) < 3 or not table.steps:
        return None, None
    steps_per_mark = table.steps / max(marks.count, 1)
    windows = step_windows(
        edges,
        group * marks.stride * steps_per_mark,
        [(s.t_ns, s.energy_j) for s in series],
        table,
    )
    t0_s = (edges[:-1] - table.t_start_ns) * 1e-9
    steps = pd.DataFrame(
        {
            "window": np.arange(len(windows.energy_j)),
            "steps": windows.steps,
            "t0_s": t0_s,
            "t1_s": (edges[1:] - table.t_start_ns) * 1e-9,
            "time_s": windows.durations_s,
            "cpu_s": np.diff(np.asarray(marks.cpu_ns[::group], np.float64)) * 1e-9,
            "energy_j": windows.energy_j,
            "energy_lo_j": windows.energy_lo_j,
            "energy_hi_j": windows.energy_hi_j,
        }
    )
    coo = windows.self_s.tocoo()
    long = pd.DataFrame(
        {"window": coo.row, "module": [names[c][0] for c in coo.col], "time_s": coo.data}
    )
    long = long[(long["module"] != STARTUP_MODULE) & (long["time_s"] > 0)]
    modules = long.groupby(["window", "module"], as_index=False, sort=True)["time_s"].sum()
    return steps, modules
