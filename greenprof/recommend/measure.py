"""Energy per workload call, with an uncertainty honest enough to accept or reject a change on.

The workload runs several times inside one profile. The session gives the joules per layer; the
joules per call come from the sensors' own update windows: each counter window's joules divided by
the (fractional) number of calls it held, windows merged until each holds at least one whole call.
Reading a counter at the repeat boundaries instead would see nothing on a counter that updates every
100 ms while a call takes 10 ms (most boundaries fall between two updates).

The figure per call is the **median** of the repeats, with a distribution-free 95 % interval
(order statistics). A mean would follow bursts of load from other processes: on a shared machine
their contention makes the threads of a parallel kernel spin while they wait for each other,
which inflates CPU time and so the CPU estimate several-fold for a moment. The median of ten or
more repeats ignores such bursts unless they cover most of the profile. Where the samples cannot
be split so, the mean of the session and its interval are used. On CUDA the device is synchronised
at every mark, so a call's queued kernels finish inside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from torch import nn

from greenprof.attribute.windows import update_gaps
from greenprof.clock import now_ns
from greenprof.cuda_state import cuda_in_use
from greenprof.session import Session

Workload = Callable[[nn.Module], Any]
#: Fewest repeats whose per-repeat joules are used (below this the session mean is used).
MIN_SPLIT_REPEATS = 6
#: Makes a fresh profiling context manager whose ``.session`` is set on exit.
ProfilerFactory = Callable[[], AbstractContextManager[Any]]


@dataclass
class Measurement:
    """Joules of one workload call on one model.

    Attributes:
        session: the profile of all repeats together (per-layer joules are for all repeats).
        repeats: how many times the workload ran inside the profile.
        energy_j: joules per workload call: the median of the repeats.
        energy_lo_j: lower end of the 95 % interval of ``energy_j``.
        energy_hi_j: upper end of the 95 % interval of ``energy_j``.
        time_s: mean wall seconds per workload call.
        repeat_energy_j: joules of each repeat, where the sensors' samples allow it.
        mean_energy_j: the session's total joules divided by the repeats.
        new_tokens: new tokens generated per workload call (``Session.generation()``'s rows
            over the repeats); 0 when the workload generated no text.
    """

    session: Session
    repeats: int
    energy_j: float
    energy_lo_j: float
    energy_hi_j: float
    time_s: float
    repeat_energy_j: list[float] = field(default_factory=list)
    mean_energy_j: float = math.nan
    new_tokens: float = 0.0

    @property
    def uncertainty_j(self) -> float:
        """Half-width of the 95 % interval of :attr:`energy_j`."""
        return (self.energy_hi_j - self.energy_lo_j) / 2

    @property
    def estimated(self) -> bool:
        """True when the joules come from an estimating sensor."""
        return self.session.estimated


def default_profiler(**options: Any) -> ProfilerFactory:
    """Return a factory of ``greenprof.profile(**options)`` context managers."""
    from greenprof.profiler import profile

    return lambda: profile(**options)


def measure(
    model: nn.Module,
    workload: Workload,
    *,
    profiler: ProfilerFactory | None = None,
    min_seconds: float = 2.0,
    min_repeats: int = 10,
    max_repeats: int = 500,
) -> Measurement:
    """Profile ``workload(model)`` repeatedly and return the joules per call.

    One unprofiled call first warms caches and lazy initialisation; its duration sets the number
    of repeats so that the profile lasts at least ``min_seconds``.

    Args:
        model: passed to the workload.
        workload: the work whose energy is measured; called as ``workload(model)``.
        profiler: factory of profiling context managers; default ``greenprof.profile()``.
        min_seconds: shortest profile; longer ones give tighter intervals.
        min_repeats: fewest repeats (the spread needs several).
        max_repeats: most repeats, for very short workloads.
    """
    profiler = profiler or default_profiler()
    started = time.perf_counter()
    workload(model)
    warm_s = time.perf_counter() - started
    repeats = int(min(max_repeats, max(min_repeats, math.ceil(min_seconds / max(warm_s, 1e-6)))))
    sync = _synchronize_devices if cuda_in_use() else _nothing
    with profiler() as prof:
        sync()
        marks_ns = [now_ns()]
        for _ in range(repeats):
            workload(model)
            sync()
            marks_ns.append(now_ns())
    session: Session = prof.session
    wall_s = (marks_ns[-1] - marks_ns[0]) * 1e-9
    per_repeat = _repeat_energies(session, np.asarray(marks_ns) - marks_ns[0])
    mean_j = session.total_energy_j / repeats
    # The session's own interval (attribution of the sensors' totals), relative, kept as is.
    rel_lo = 1 - session.total_energy_lo_j / session.total_energy_j if mean_j else 0.0
    rel_hi = session.total_energy_hi_j / session.total_energy_j - 1 if mean_j else 0.0
    if len(per_repeat) >= MIN_SPLIT_REPEATS:
        energy_j, lo_j, hi_j = median_interval(per_repeat)
    else:
        energy_j, lo_j, hi_j = mean_j, mean_j, mean_j
    return Measurement(
        session=session,
        repeats=repeats,
        energy_j=energy_j,
        energy_lo_j=energy_j - math.hypot(energy_j - lo_j, rel_lo * energy_j),
        energy_hi_j=energy_j + math.hypot(hi_j - energy_j, rel_hi * energy_j),
        time_s=wall_s / repeats,
        repeat_energy_j=per_repeat,
        mean_energy_j=mean_j,
        new_tokens=float(session.generation()["new_tokens"].sum()) / repeats,
    )


def _synchronize_devices() -> None:
    import torch

    torch.cuda.synchronize()


def _nothing() -> None:
    return None


def _repeat_energies(session: Session, marks_ns: np.ndarray) -> list[float]:
    """Joules per call, one figure per group of counter windows, all sensors added up.

    Each sensor's curve is cut at its update points (the middle of the poll gap in which it
    changed); consecutive windows inside the repeats are merged until each group holds at least
    one whole call, and each group gives joules / calls. Sensors are added group by group after
    resampling to the slowest sensor's number of groups (sorted figures, quantile matched).
    Sample times are seconds from the profile's start, within microseconds of the first mark.
    """
    samples = session.samples()
    if samples.empty:
        return []
    marks_s = marks_ns * 1e-9
    calls_at = np.arange(len(marks_s), dtype=float)
    per_sensor = []
    for _, series in samples.groupby("sensor"):
        series = series.sort_values("t_s")
        if len(series) < 2:
            return []
        figures = _window_figures(
            series["t_s"].to_numpy(), series["energy_j"].to_numpy(), marks_s, calls_at
        )
        if len(figures) < 2:
            return []
        per_sensor.append(np.sort(figures))
    n = min(len(f) for f in per_sensor)
    quantiles = (np.arange(n) + 0.5) / n
    matched = [f if len(f) == n else np.quantile(f, quantiles) for f in per_sensor]
    return [float(v) for v in sum(matched)]


def _window_figures(
    t_s: np.ndarray, energy_j: np.ndarray, marks_s: np.ndarray, calls_at: np.ndarray
) -> list[float]:
    lo, hi, after_j = update_gaps(t_s, energy_j)
    edges = 0.5 * (lo + hi)  # the counter reads after_j from here on
    inside = (edges >= marks_s[0]) & (edges <= marks_s[-1])
    edges, edge_j = edges[inside], after_j[inside]
    if len(edges) < 2:
        return []
    edge_calls = np.interp(edges, marks_s, calls_at)
    figures, start = [], 0
    for end in range(1, len(edges)):
        calls = edge_calls[end] - edge_calls[start]
        if calls >= 1.0:
            figures.append(float(edge_j[end] - edge_j[start]) / calls)
            start = end
    return figures


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Return the median of ``values`` and a distribution-free interval for it.

    The interval runs between order statistics ``k`` and ``n - k + 1`` with the largest ``k``
    whose binomial coverage still reaches ``confidence`` (min and max when none does).

    Example:
        >>> median_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
        (5.0, 2.0, 8.0)
    """
    ordered = np.sort(np.asarray(values, dtype=float))
    n = len(ordered)
    k = 0
    while k + 1 <= n // 2 and stats.binom.cdf(k, n, 0.5) <= (1 - confidence) / 2:
        k += 1
    return float(np.median(ordered)), float(ordered[max(k - 1, 0)]), float(ordered[n - max(k, 1)])
