"""Per-layer power from replay windows and the run's own windows together.

Calibration (see :mod:`greenprof.track.replay`) ran each planned layer alone after the run, so its
windows hold a composition greenprof chose: one layer (with its children and a little loop glue) at
a time. A per-group power is fitted over those windows and the run's own, by non-negative least
squares on average power per window; the run's windows are then split by fitted power x self time,
so the rows still add up to each sensor's measured total for the run. Calibration's own time and
joules are charged to no row.

Groups: a replayed column has a power of its own; a column that shares a replayed column's
signature shares its power; every other column shares one per class (layer type and phase); time
outside modules has its own, and so does the calibration's loop glue. Intervals come from a pairs
bootstrap over the windows (replay and run resampled apart, the fit redone each time). A column
the replays did not reach keeps at least the interval of the passive attribution. How well the
replayed powers predict the run's own windows is reported as a misfit: a layer that draws
differently in context (cache warmth, clocks, overlap) shows there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from greenprof.attribute.fit import Attribution, SensorResult, SensorSeries, table_for
from greenprof.attribute.power_model import allocate, ridge_nnls
from greenprof.attribute.uncertainty import centred, unresolved_columns
from greenprof.attribute.windows import energy_windows, window_times
from greenprof.schema import OUTSIDE_COLUMN, TimeTable

REPLAYED = "replayed"
SHARED = "shared signature"
FIT = "fit"
CALIBRATED = "calibrated"

#: Smallest ridge towards the common power (replay windows carry the evidence).
_RIDGE = 1e-4
#: Prior spread of a group's power around the common power, relative to it.
PRIOR_SPREAD = 0.5


@dataclass
class Calibration:
    """What the replays measured, for the attribution.

    Attributes:
        table: the replays' time table (its own columns, keys shared with the run's).
        replayed: run columns that were replayed.
        shared: run column -> the replayed run column whose power it shares.
    """

    table: TimeTable
    replayed: set[int] = field(default_factory=set)
    shared: dict[int, int] = field(default_factory=dict)


@dataclass
class CalibratedResult:
    """The calibrated attribution and how each row was measured.

    Attributes:
        attribution: joules per run column (adds up to the measured total).
        methods: per run column, ``replayed``, ``shared signature`` or ``fit``.
        calibration_j: joules the sensors measured during the replays (charged to no row).
        misfit: per sensor, measured / predicted joules of the run's windows at the replayed
            powers (1.0: the replays predict the run exactly).
    """

    attribution: Attribution
    methods: list[str]
    calibration_j: float
    misfit: dict[str, float]


def _groups(
    run: TimeTable, cal: Calibration, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Group of each run column and of each replay column, and the number of groups."""
    labels: dict[tuple[str, int], int] = {}

    def group(label: tuple[str, int]) -> int:
        return labels.setdefault(label, len(labels))

    run_group = np.empty(len(run.columns), np.int64)
    for c in range(len(run.columns)):
        if c == OUTSIDE_COLUMN:
            run_group[c] = group(("outside", 0))
        elif c in cal.replayed:
            run_group[c] = group(("own", c))
        elif c in cal.shared and cal.shared[c] in cal.replayed:
            run_group[c] = group(("own", cal.shared[c]))
        else:
            run_group[c] = group(("class", int(classes[c])))
    index = {column: c for c, column in enumerate(run.columns)}
    cal_group = np.empty(len(cal.table.columns), np.int64)
    for j, column in enumerate(cal.table.columns):
        c = index.get(column)
        if j == OUTSIDE_COLUMN:
            cal_group[j] = group(("replay glue", 0))
        elif c is None:
            cal_group[j] = group(("replay other", 0))
        else:
            cal_group[j] = run_group[c]
    return run_group, cal_group, len(labels)


def _to_groups(times: sparse.csr_matrix, group_of: np.ndarray, n_groups: int) -> np.ndarray:
    k = len(group_of)
    onehot = sparse.csr_matrix((np.ones(k), (np.arange(k), group_of)), shape=(k, n_groups))
    return np.asarray((times @ onehot).todense())


def _fit(x: np.ndarray, e: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Power per group from windows (seconds per group ``x``, joules ``e``, lengths ``d``).

    A Bayesian ridge: each group's power has a prior around the common power with a spread of
    :data:`PRIOR_SPREAD` of it; the penalty is the windows' residual variance over that prior
    variance. A group the windows pin down (a replayed layer) keeps its own figure; one that is
    never more than a sliver of any window (a parent's own glue) stays near the common power
    instead of wherever the noise would push it.
    """
    keep = d > 0
    xs, es = x[keep] / d[keep, None], e[keep] / d[keep]  # average power per window
    prior = float(e.sum() / max(x.sum(), 1e-12))
    gram, moment = xs.T @ xs, xs.T @ es
    first = ridge_nnls(gram, moment, prior, _RIDGE)
    residual = es - xs @ first
    dof = max(len(es) - xs.shape[1], 1)
    noise_var = float(residual @ residual) / dof
    scale = max(np.trace(gram) / max(len(moment), 1), 1e-30)
    ridge = noise_var / max((PRIOR_SPREAD * prior) ** 2, 1e-30) / scale
    return ridge_nnls(gram, moment, prior, max(ridge, _RIDGE))


def calibrated_attribution(
    run: TimeTable,
    series: list[SensorSeries],
    cal: Calibration,
    passive: Attribution,
    *,
    classes: np.ndarray,
    bootstrap: int = 100,
    seed: int = 0,
    host: TimeTable | None = None,
) -> CalibratedResult:
    """Attribute every sensor's run joules with the replays' powers.

    Args:
        run: the run's time table.
        series: the sensors' samples over the run and the replays.
        cal: the replays.
        passive: the run's attribution without replays (for the rows replays did not reach).
        classes: a class per run column (layer type and phase).
        bootstrap: bootstrap replicates.
        seed: random seed of the bootstrap.
        host: on CUDA runs, the run's columns on the host clock, for the sensors that follow it
            (:func:`~greenprof.attribute.fit.table_for`).

    Returns:
        The attribution, the method per row, the replays' joules and the misfit per sensor.
    """
    rng = np.random.default_rng(seed)
    run_group, cal_group, n_groups = _groups(run, cal, classes)
    n = len(run.columns)
    results, misfit, calibration_j = [], {}, 0.0
    for s in series:
        seen = table_for(s.device, run, host)  # the run on the clock this sensor follows
        t_end = min(seen.t_end_ns, int(s.t_ns[-1])) if s.failed and len(s.t_ns) else seen.t_end_ns
        rw = energy_windows(s.t_ns, s.energy_j, seen.t_start_ns, t_end)
        cw = energy_windows(s.t_ns, s.energy_j, cal.table.t_start_ns, cal.table.t_end_ns)
        run_times = window_times(seen, rw)
        x_run = _to_groups(run_times, run_group, n_groups)
        x_cal = _to_groups(window_times(cal.table, cw), cal_group, n_groups)
        e_run, e_cal = rw.energy_j, cw.energy_j
        d_run, d_cal = rw.durations_s, cw.durations_s
        total = float(e_run.sum())
        calibration_j += float(e_cal.sum())
        x, e, d = (
            np.vstack([x_run, x_cal]),
            np.concatenate([e_run, e_cal]),
            np.concatenate([d_run, d_cal]),
        )
        power = _fit(x, e, d)
        energy = allocate(run_times, e_run, power, run_group)
        predicted = float((x_run @ power).sum())
        misfit[s.name] = total / predicted if predicted > 0 else float("nan")
        draws = np.empty((bootstrap, n))
        for b in range(bootstrap):
            i = rng.integers(0, len(e_run), len(e_run))
            j = rng.integers(0, len(e_cal), len(e_cal)) if len(e_cal) else np.zeros(0, np.int64)
            p = _fit(
                np.vstack([x_run[i], x_cal[j]]),
                np.concatenate([e_run[i], e_cal[j]]),
                np.concatenate([d_run[i], d_cal[j]]),
            )
            draws[b] = allocate(run_times, e_run, p, run_group)
        lo = np.minimum(np.percentile(draws, 2.5, axis=0), energy) if bootstrap else energy
        hi = np.maximum(np.percentile(draws, 97.5, axis=0), energy) if bootstrap else energy
        # Replayed powers that do not predict the run's own windows exactly say the layers draw
        # differently in context; the rows are scaled to the measured total, and each carries
        # that much doubt (twice the relative misfit, as a 95% half-width).
        context = 2.0 * abs(1.0 - predicted / total) if total > 0 and predicted > 0 else 0.0
        share = energy * (rw.end_uncertainty_j / total if total > 0 else 0.0)
        doubt = np.hypot(share, energy * context)
        lo, hi = energy - np.hypot(energy - lo, doubt), energy + np.hypot(hi - energy, doubt)
        results.append(
            SensorResult(
                name=s.name,
                device=s.device,
                measured=s.measured,
                method=CALIBRATED,
                energy_j=energy,
                energy_lo_j=np.maximum(lo, 0.0),
                energy_hi_j=hi,
                total_j=total,
                total_lo_j=total - rw.end_uncertainty_j,
                total_hi_j=total + rw.end_uncertainty_j,
                windows=len(e_run) + len(e_cal),
            )
        )
    energy = np.sum([r.energy_j for r in results], axis=0) if results else np.zeros(n)
    lo = energy - np.sqrt(np.sum([(r.energy_j - r.energy_lo_j) ** 2 for r in results], axis=0))
    hi = energy + np.sqrt(np.sum([(r.energy_hi_j - r.energy_j) ** 2 for r in results], axis=0))
    methods = []
    for c in range(n):
        if c in cal.replayed:
            methods.append(REPLAYED)
        elif c in cal.shared and cal.shared[c] in cal.replayed:
            methods.append(SHARED)
        else:
            methods.append(FIT)
            # Not replayed: its power is its class's; it may stray as far as the passive fit allows.
            if c != OUTSIDE_COLUMN and passive.energy_j[c] > 0:
                rel_lo = 1.0 - passive.energy_lo_j[c] / passive.energy_j[c]
                rel_hi = passive.energy_hi_j[c] / passive.energy_j[c] - 1.0
                lo[c] = min(lo[c], energy[c] * (1.0 - rel_lo))
                hi[c] = max(hi[c], energy[c] * (1.0 + rel_hi))
    lo, hi = centred(energy, np.clip(lo, 0.0, energy), np.maximum(hi, energy))
    total = float(sum(r.total_j for r in results))
    total_half = float(np.sqrt(sum((r.total_j - r.total_lo_j) ** 2 for r in results)))
    unresolved = unresolved_columns(energy, lo, hi, total, run.steps, np.ones(n))
    attribution = Attribution(
        energy, lo, hi, total, total - total_half, total + total_half, results, unresolved
    )
    return CalibratedResult(attribution, methods, calibration_j, misfit)
