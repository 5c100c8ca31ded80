"""The names and records every stage hands on: phases, the outside row, the time table.

Kept apart from every stage so that tracking, attribution, the session and the reports agree on
one definition of each without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Phases of a row, in the order of the tracking stage's phase numbers (0 forward ... 3 other).
PHASES = ("forward", "backward", "optimizer", "other")
#: Row of the time spent outside every module (data loading, Python glue).
OUTSIDE_MODULE = "(outside modules)"
#: Row of the time before the first model call (imports, data preparation), once per run.
STARTUP_MODULE = "(startup)"
#: Rows that are no module of the model.
NOT_MODULES = (OUTSIDE_MODULE, STARTUP_MODULE)
#: Tracking key of the time outside every module.
OUTSIDE_KEY = -1
#: Tracking key of the time before the first model call.
STARTUP_KEY = -2
#: Column 0 of a :class:`TimeTable` is always time outside every module.
OUTSIDE_COLUMN = 0


@dataclass
class TimeTable:
    """What the timeline hands to attribution: self time per column, in total and per time bin.

    Attributes:
        columns: ``(key, phase)`` per column; key ``-1`` is time outside every module.
        calls: number of entries per column.
        self_ns: self time per column, nanoseconds.
        t_start_ns: start of the covered interval (clock of :mod:`greenprof.clock`).
        t_end_ns: end of the covered interval.
        bin_start_ns: start of each stored (time span, column) cell.
        bin_end_ns: end of each stored cell (a cell's time is spread evenly over its span).
        bin_column: column of each stored cell.
        bin_self_ns: self time in each stored cell.
        trace: ``(column, t0_ns, t1_ns, depth)`` per recorded span (bounded).
        steps: optimizer steps, or outermost forward calls when no optimizer ran.
        inconsistencies: events that did not match the stack (logged, never raised).
        column_region: region id per column (:mod:`greenprof.track.regions`); empty when no
            region was entered (every column then lies outside any region, id 0).
    """

    columns: list[tuple[int, int]]
    calls: np.ndarray
    self_ns: np.ndarray
    t_start_ns: int
    t_end_ns: int
    bin_start_ns: np.ndarray
    bin_end_ns: np.ndarray
    bin_column: np.ndarray
    bin_self_ns: np.ndarray
    trace: list[tuple[int, int, int, int]] = field(default_factory=list)
    steps: int = 0
    inconsistencies: int = 0
    column_region: list[int] = field(default_factory=list)

    def region_of(self, column: int) -> int:
        """Region id of ``column`` (0: outside any region)."""
        return self.column_region[column] if column < len(self.column_region) else 0

    def binned(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(start_ns, end_ns, self_ns)`` of every cell, clipped to the run."""
        return self.bin_start_ns, np.minimum(self.bin_end_ns, self.t_end_ns), self.bin_self_ns
