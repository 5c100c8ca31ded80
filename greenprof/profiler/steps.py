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


class LoadProbe:
    """This process's CPU time against wall time, and the machine's load, over the profile."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, int]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return time.perf_counter(), time.process_time(), int(usage.ru_nivcsw)

    def facts(self) -> dict[str, Any]:
        """Return ``meta["load"]``: the figures from the start of the profile to now.

        ``wall_s``, ``cpu_s`` (this process, all threads), ``cpu_per_wall``,
        ``involuntary_switches`` (times the process was preempted), ``load_avg_1m`` and
        ``logical_cpus``.
        """
        wall, cpu, switches = self._read()
        wall_s, cpu_s = wall - self._start[0], cpu - self._start[1]
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = None
        return {
            "wall_s": wall_s,
            "cpu_s": cpu_s,
            "cpu_per_wall": cpu_s / wall_s if wall_s > 0 else None,
            "involuntary_switches": switches - self._start[2],
            "load_avg_1m": load,
            "logical_cpus": os.cpu_count() or 1,
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
