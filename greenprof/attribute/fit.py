"""Price self time in joules: pure functions of a time table and sensor samples.

For each sensor the cumulative energy curve is cut into windows at the points where the sensor's
reading changed (a counter that updates every 20-100 ms holds its value between updates, so only its
changes carry timing information). Each window's energy is then split among the columns (module,
phase) that ran in it, by one of two models:

* **time split** — every column draws the same power within a window: energy follows self time.
  Unbiased when layers draw similar power; needs no more data than the windows themselves.
* **power fit** — a per-column power is fitted across windows (non-negative least squares, shrunk
  towards the common power so that columns with little evidence keep the time split). Needed when
  layers far shorter than a window draw different power, where the time split is biased.

The model is chosen by evidence: cross-validated prediction error of window energies over contiguous
folds; the fit must beat the time split by more than twice the standard error of its gain. When the
time split is kept although the fit predicted better, each interval still reaches the fit's figure:
the data did not rule it out. Uncertainty has two sources, and each interval covers both: noise,
from a block bootstrap over windows (refitting the power model each time), and how far each layer's
power may stray from the others' where the windows cannot tell, from a Bayesian model of per-group
power whose spread is weighed by evidence (a layer that always shares its windows with the same
neighbours keeps a wide interval however long the run). Every window's energy is split completely,
so the rows add up to the sensor's measured total.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from greenprof.attribute.power_model import (
    FitModel,
    allocate,
    choose_power,
    design_matrix,
    fit_groups,
)
from greenprof.attribute.uncertainty import (
    PRIOR_POWER_SPREAD,
    bootstrap_interval,
    centred,
    posterior_interval,
    unresolved_columns,
)
from greenprof.attribute.windows import energy_windows, window_times
from greenprof.schema import TimeTable

AUTO = "auto"
TIME_SPLIT = "time-split"
POWER_FIT = "power-fit"

#: Fewer windows than this never justify a power per layer.
MIN_FIT_WINDOWS = 30


@dataclass
class SensorSeries:
    """One sensor's samples, as the sampler recorded them.

    Attributes:
        name: sensor name.
        device: what the sensor measures.
        measured: False when the sensor estimates.
        t_ns: sample times on the shared monotonic clock.
        energy_j: cumulative joules at each sample time.
        failed: why the sensor stopped, or None.
    """

    name: str
    device: str
    measured: bool
    t_ns: np.ndarray
    energy_j: np.ndarray
    failed: str | None = None


@dataclass
class SensorResult:
    """Attribution of one sensor's energy."""

    name: str
    device: str
    measured: bool
    method: str
    energy_j: np.ndarray
    energy_lo_j: np.ndarray
    energy_hi_j: np.ndarray
    total_j: float
    total_lo_j: float
    total_hi_j: float
    windows: int
    #: Per column, times as many steps alike to know its power to +/-20% (inf: never).
    more_steps: np.ndarray | None = None


@dataclass
class Attribution:
    """Joules per timeline column, all sensors together.

    Attributes:
        energy_j: best estimate per column.
        energy_lo_j: lower end of the 95% interval per column.
        energy_hi_j: upper end of the 95% interval per column.
        total_j: sum over sensors of measured joules (equals ``energy_j.sum()``).
        total_lo_j: lower bound of the total.
        total_hi_j: upper bound of the total.
        sensors: per-sensor results.
        unresolved: ``(column, relative half-width, steps needed)`` for columns not resolved.
    """

    energy_j: np.ndarray
    energy_lo_j: np.ndarray
    energy_hi_j: np.ndarray
    total_j: float
    total_lo_j: float
    total_hi_j: float
    sensors: list[SensorResult] = field(default_factory=list)
    unresolved: list[tuple[int, float, int]] = field(default_factory=list)


def attribute(
    table: TimeTable,
    series: list[SensorSeries],
    *,
    bootstrap: int = 100,
    seed: int = 0,
    method: str = AUTO,
    classes: np.ndarray | None = None,
    host_table: TimeTable | None = None,
) -> Attribution:
    """Attribute every sensor's joules to the table's columns.

    Args:
        table: self time per column and time bin.
        series: one entry per sensor.
        bootstrap: bootstrap replicates for the uncertainty.
        seed: random seed of the bootstrap (results are reproducible).
        method: ``"auto"`` (choose by evidence), ``"time-split"`` or ``"power-fit"`` (forced;
            for comparing the two).
        classes: an integer class per column (e.g. layer type and phase). Columns too short to
            get a power of their own share one with their class; None puts them all together.
        host_table: on CUDA runs, the same columns on the host clock (see :func:`table_for`).

    Returns:
        The combined attribution; columns sum to the measured total.
    """
    n_columns = len(table.columns)
    if method not in (AUTO, TIME_SPLIT, POWER_FIT):
        raise ValueError(f"method must be auto, {TIME_SPLIT} or {POWER_FIT}, not {method!r}")
    results = [
        _attribute_sensor(
            table_for(s.device, table, host_table),
            s,
            bootstrap=bootstrap,
            rng=np.random.default_rng(seed),
            method=method,
            classes=classes,
        )
        for s in series
    ]
    energy = np.zeros(n_columns)
    low_dev = np.zeros(n_columns)
    high_dev = np.zeros(n_columns)
    for r in results:
        energy += r.energy_j
        low_dev += (r.energy_j - r.energy_lo_j) ** 2
        high_dev += (r.energy_hi_j - r.energy_j) ** 2
    lo, hi = centred(energy, np.maximum(energy - np.sqrt(low_dev), 0.0), energy + np.sqrt(high_dev))
    total = float(sum(r.total_j for r in results))
    total_lo = total - float(np.sqrt(sum((r.total_j - r.total_lo_j) ** 2 for r in results)))
    total_hi = total + float(np.sqrt(sum((r.total_hi_j - r.total_j) ** 2 for r in results)))
    more_steps = np.ones(n_columns)
    for r in results:
        if r.more_steps is not None:
            more_steps = np.maximum(more_steps, r.more_steps)
    unresolved = unresolved_columns(energy, lo, hi, total, table.steps, more_steps)
    return Attribution(energy, lo, hi, total, total_lo, total_hi, results, unresolved)


def table_for(device: str, table: TimeTable, host_table: TimeTable | None) -> TimeTable:
    """The time table on the clock that a sensor of ``device`` follows.

    On CUDA runs the hooks are timed twice: when each module's kernels ran on the GPU (``table``,
    what a GPU's power follows) and when the host launched them (``host_table``, what the CPU's
    power follows). GPU sensors (``"gpu:N"``) get the first, every other sensor the second.

    Raises:
        ValueError: when the two tables do not have the same columns.
    """
    if host_table is None or device.startswith("gpu"):
        return table
    if host_table.columns != table.columns:
        raise ValueError("the host-clock time table must have the device table's columns")
    return host_table


# ---------------------------------------------------------------------------- models
def _attribute_sensor(
    table: TimeTable,
    s: SensorSeries,
    *,
    bootstrap: int,
    rng: np.random.Generator,
    method: str,
    classes: np.ndarray | None,
) -> SensorResult:
    t_end = table.t_end_ns
    if s.failed and len(s.t_ns):
        t_end = min(t_end, int(s.t_ns[-1]))
    windows = energy_windows(s.t_ns, s.energy_j, table.t_start_ns, t_end)
    window_j, end_unc = windows.energy_j, windows.end_uncertainty_j
    total = float(window_j.sum())
    times = window_times(table, windows)
    durations = windows.durations_s
    power, ridge = None, 0.0
    n_groups, group_of = fit_groups(times, classes)
    design = design_matrix(times, group_of, n_groups)
    can_fit = len(window_j) >= 2 and total > 0 and n_groups > 1
    choice = choose_power(design, window_j, durations) if can_fit else None
    if choice is not None and (
        method == POWER_FIT
        or (method == AUTO and choice.preferred and len(window_j) >= MIN_FIT_WINDOWS)
    ):
        power, ridge = choice.power, choice.ridge
    method = POWER_FIT if power is not None else TIME_SPLIT
    energy = allocate(times, window_j, power, group_of)
    model = FitModel(times, design, window_j, durations, group_of, power, ridge)
    lo, hi = bootstrap_interval(model, total, bootstrap, rng)
    more_steps = None
    if power is None and choice is not None and choice.plausible:
        # The time split assumes equal power; where a fit predicts held-out windows better, if not
        # clearly, the truth may lie on either side, so the interval reaches the fit's figure too.
        alternative = allocate(times, window_j, choice.power, group_of)
        lo, hi = np.minimum(lo, alternative), np.maximum(hi, alternative)
    if choice is not None:
        # The bootstrap only shows noise around the chosen model; how far each layer's power may
        # stray from the common power, where the windows cannot tell, comes from the posterior.
        posterior = posterior_interval(model, choice, total, rng)
        lo = np.minimum(lo, posterior.energy_lo_j)
        hi = np.maximum(hi, posterior.energy_hi_j)
        more_steps = posterior.more_steps
        # A power the windows never saw may be anywhere the prior allows.
        band = 1.96 * PRIOR_POWER_SPREAD
        unseen = posterior.unseen
        lo[unseen] = np.minimum(lo[unseen], energy[unseen] * max(1.0 - band, 0.0))
        hi[unseen] = np.maximum(hi[unseen], energy[unseen] * (1.0 + band))
    if total > 0 and end_unc > 0:
        # The split is scaled to the total, so the total's own uncertainty reaches every row.
        share_unc = energy * (end_unc / total)
        lo = energy - np.hypot(energy - np.minimum(lo, energy), share_unc)
        hi = energy + np.hypot(np.maximum(hi, energy) - energy, share_unc)
    return SensorResult(
        name=s.name,
        device=s.device,
        measured=s.measured,
        method=method,
        energy_j=energy,
        energy_lo_j=np.minimum(lo, energy),
        energy_hi_j=np.maximum(hi, energy),
        total_j=total,
        total_lo_j=total - end_unc,
        total_hi_j=total + end_unc,
        windows=len(window_j),
        more_steps=more_steps,
    )
