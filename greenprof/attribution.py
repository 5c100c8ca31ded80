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
from scipy import sparse
from scipy.optimize import nnls

from greenprof.timeline import OUTSIDE_COLUMN, TimeTable
from greenprof.windows import energy_windows, window_times

AUTO = "auto"
TIME_SPLIT = "time-split"
POWER_FIT = "power-fit"

#: A layer is "resolved" when its 95% interval is within this fraction of its energy.
RESOLVED_REL = 0.2
#: Power fit columns: the longest-running columns each get a power; the rest share one.
MAX_FIT_COLUMNS = 48
#: ...and only those with at least this share of the run's time.
MIN_FIT_SHARE = 0.001
#: The fit's held-out improvement must exceed this many standard errors to be preferred.
FIT_EVIDENCE_SE = 2.0
#: Fewer windows than this never justify a power per layer.
MIN_FIT_WINDOWS = 30
_RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: Prior spread of a layer's power around the common power, relative to it (half-normal scale).
#: Kernels of one device differ in draw: memory-bound ones run well below the device's busy
#: power, dense math near its peak, so a layer the windows cannot resolve is allowed this much.
PRIOR_POWER_SPREAD = 0.5
#: Candidate spreads (relative to the common power) the evidence weighs against that prior.
_SPREAD_GRID = (0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5)
_POSTERIOR_DRAWS = 400
#: Relative resolution assumed for any counter's window energy (keeps exact data from looking
#: infinitely precise).
_NOISE_FLOOR_REL = 1e-3
#: Beyond this many times the recorded steps, "more steps" is no advice.
_MAX_MORE_STEPS = 4096.0


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

    Returns:
        The combined attribution; columns sum to the measured total.
    """
    n_columns = len(table.columns)
    if method not in (AUTO, TIME_SPLIT, POWER_FIT):
        raise ValueError(f"method must be auto, {TIME_SPLIT} or {POWER_FIT}, not {method!r}")
    results = [
        _attribute_sensor(
            table,
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
    lo = np.maximum(energy - np.sqrt(low_dev), 0.0)
    hi = energy + np.sqrt(high_dev)
    total = float(sum(r.total_j for r in results))
    total_lo = total - float(np.sqrt(sum((r.total_j - r.total_lo_j) ** 2 for r in results)))
    total_hi = total + float(np.sqrt(sum((r.total_hi_j - r.total_j) ** 2 for r in results)))
    more_steps = np.ones(n_columns)
    for r in results:
        if r.more_steps is not None:
            more_steps = np.maximum(more_steps, r.more_steps)
    unresolved = _unresolved(energy, lo, hi, total, table.steps, more_steps)
    return Attribution(energy, lo, hi, total, total_lo, total_hi, results, unresolved)


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
    n_groups, group_of = _fit_groups(times, classes)
    design = _design(times, group_of, n_groups)
    can_fit = len(window_j) >= 2 and total > 0 and n_groups > 1
    choice = _choose_power(design, window_j, durations) if can_fit else None
    if choice is not None and (
        method == POWER_FIT
        or (method == AUTO and choice.preferred and len(window_j) >= MIN_FIT_WINDOWS)
    ):
        power, ridge = choice.power, choice.ridge
    method = POWER_FIT if power is not None else TIME_SPLIT
    energy = _allocate(times, window_j, power, group_of)
    model = _Model(times, design, window_j, durations, group_of, power, ridge)
    lo, hi = _bootstrap(model, total, bootstrap, rng)
    more_steps = None
    if power is None and choice is not None and choice.plausible:
        # The time split assumes equal power; where a fit predicts held-out windows better, if not
        # clearly, the truth may lie on either side, so the interval reaches the fit's figure too.
        alternative = _allocate(times, window_j, choice.power, group_of)
        lo, hi = np.minimum(lo, alternative), np.maximum(hi, alternative)
    if choice is not None:
        # The bootstrap only shows noise around the chosen model; how far each layer's power may
        # stray from the common power, where the windows cannot tell, comes from the posterior.
        posterior = _posterior_interval(model, choice, total, rng)
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


def _fit_groups(times: sparse.csr_matrix, classes: np.ndarray | None) -> tuple[int, np.ndarray]:
    """Pick the columns that get a power of their own; the others share one per class.

    Returns ``(number of groups, group of each column)``.

    Args:
        times: seconds per (window, column).
        classes: a class per column (e.g. layer type and phase) or None for one shared class:
            short layers of a kind (activations, norms) then share their evidence.
    """
    column_s = np.asarray(times.sum(axis=0)).ravel()
    total_s = column_s.sum()
    order = np.argsort(-column_s)
    own = [
        int(c)
        for c in order[:MAX_FIT_COLUMNS]
        if total_s > 0 and column_s[c] >= MIN_FIT_SHARE * total_s
    ]
    if classes is None:
        classes = np.zeros(len(column_s), np.int64)
    rest = np.ones(len(column_s), bool)
    rest[own] = False
    _, rest_group = np.unique(classes[rest], return_inverse=True)
    group_of = np.empty(len(column_s), np.int64)
    group_of[own] = np.arange(len(own))
    group_of[rest] = len(own) + rest_group
    n_groups = len(own) + (int(rest_group.max()) + 1 if rest.any() else 0)
    return n_groups, group_of


def _design(times: sparse.csr_matrix, group_of: np.ndarray, n_groups: int) -> np.ndarray:
    """Seconds per (window, power group), dense."""
    if n_groups == 0:
        return np.zeros((times.shape[0], 0))
    to_group = sparse.csr_matrix(
        (np.ones(len(group_of)), (np.arange(len(group_of)), group_of)),
        shape=(len(group_of), n_groups),
    )
    return np.asarray((times @ to_group).todense())


def _ridge_nnls(gram: np.ndarray, moment: np.ndarray, prior_w: float, ridge: float) -> np.ndarray:
    """Minimise ``|X p - e|^2 + ridge * scale * |p - prior|^2`` over ``p >= 0``."""
    k = len(moment)
    scale = max(np.trace(gram) / max(k, 1), 1e-30)
    g = gram + ridge * scale * np.eye(k)
    c = moment + ridge * scale * prior_w
    try:
        chol = np.linalg.cholesky(g)
    except np.linalg.LinAlgError:
        return np.full(k, prior_w)
    # |X p - e|^2 = p'Gp - 2c'p + const = |L'p - L^-1 c|^2 + const
    target = np.linalg.solve(chol, c)
    p, _ = nnls(chol.T, target, maxiter=50 * k)
    return p


@dataclass
class _FitChoice:
    """Outcome of cross-validating the power fit against the time split."""

    power: np.ndarray  # fitted power per group at the best ridge
    ridge: float
    preferred: bool  # True when the fit predicted held-out windows clearly better
    plausible: bool  # True when it predicted them better at all (not ruled out)


def _choose_power(design: np.ndarray, window_j: np.ndarray, durations: np.ndarray) -> _FitChoice:
    """Fit per-group powers and say whether held-out windows prefer them to the time split.

    Held-out squared errors are compared window by window; the fit is preferred only when its
    mean improvement exceeds twice its standard error, so noise alone rarely selects it.
    """
    n = len(window_j)
    folds = [f for f in np.array_split(np.arange(n), 5) if len(f)]
    ts_error = np.zeros(n)
    fit_error = np.zeros((len(_RIDGE_GRID), n))
    for test in folds:
        train = np.ones(n, bool)
        train[test] = False
        x, e, d = design[train], window_j[train], durations[train]
        prior = e.sum() / max(d.sum(), 1e-30)
        ts_error[test] = (window_j[test] - prior * durations[test]) ** 2
        gram, moment = x.T @ x, x.T @ e
        for i, ridge in enumerate(_RIDGE_GRID):
            p = _ridge_nnls(gram, moment, prior, ridge)
            fit_error[i, test] = (window_j[test] - design[test] @ p) ** 2
    best = int(np.argmin(fit_error.sum(axis=1)))
    ridge = _RIDGE_GRID[best]
    prior = window_j.sum() / max(durations.sum(), 1e-30)
    power = _ridge_nnls(design.T @ design, design.T @ window_j, prior, ridge)
    gain = ts_error - fit_error[best]
    standard_error = gain.std(ddof=1) / np.sqrt(n) if n > 1 else np.inf
    plausible = bool(gain.sum() > 0)
    preferred = plausible and bool(gain.mean() > FIT_EVIDENCE_SE * standard_error)
    return _FitChoice(power, ridge, preferred, plausible)


@dataclass
class _Model:
    """Everything the bootstrap needs to redo one sensor's attribution on resampled windows."""

    times: sparse.csr_matrix
    design: np.ndarray
    window_j: np.ndarray
    durations: np.ndarray
    group_of: np.ndarray
    power: np.ndarray | None
    ridge: float


def _allocate(
    times: sparse.csr_matrix,
    window_j: np.ndarray,
    power: np.ndarray | None,
    group_of: np.ndarray,
) -> np.ndarray:
    """Split each window's energy over its columns by time (or modelled power x time), then sum."""
    if power is None:
        weighted = times
    else:
        weighted = times @ sparse.diags(power[group_of])
    row_sum = np.asarray(weighted.sum(axis=1)).ravel()
    if power is not None:
        # Where the fitted powers are all zero, fall back to the time split for that window.
        fallback = row_sum <= 0
        if fallback.any():
            weighted = weighted.tolil()
            weighted[fallback] = times[fallback]
            weighted = weighted.tocsr()
            row_sum = np.asarray(weighted.sum(axis=1)).ravel()
    factor = np.divide(window_j, row_sum, out=np.zeros_like(window_j), where=row_sum > 0)
    energy = np.asarray(weighted.T @ factor).ravel()
    # Energy of windows where nothing was recorded at all goes to "outside modules".
    energy[OUTSIDE_COLUMN] += float(window_j[row_sum <= 0].sum())
    return energy


def _bootstrap(
    m: _Model, total: float, replicates: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """95% interval per column from a residual block bootstrap over windows.

    The model's predicted window energies are kept and its residuals (sensor noise plus whatever
    the model does not explain) are resampled in blocks, so serial correlation survives; each
    replicate refits the model and splits the windows again. A noiseless sensor whose windows the
    model explains exactly therefore gets a narrow interval, a noisy one a wide interval.
    """
    n = len(m.window_j)
    n_columns = m.times.shape[1]
    if n < 2 or replicates <= 0 or total <= 0:
        zero = np.zeros(n_columns)
        return zero, zero
    if m.power is None:
        fitted = m.durations * (m.window_j.sum() / max(m.durations.sum(), 1e-30))
    else:
        fitted = m.design @ m.power
    residual = m.window_j - fitted
    block = max(1, int(round(np.sqrt(n))))
    n_blocks = int(np.ceil(n / block))
    estimates = np.empty((replicates, n_columns))
    for r in range(replicates):
        starts = rng.integers(0, max(n - block, 0) + 1, n_blocks)
        idx = (starts[:, None] + np.arange(block)[None, :]).ravel()[:n]
        window_j = np.maximum(fitted + residual[idx], 0.0)
        p = None
        if m.power is not None:
            prior = window_j.sum() / max(m.durations.sum(), 1e-30)
            p = _ridge_nnls(m.design.T @ m.design, m.design.T @ window_j, prior, m.ridge)
        energy = _allocate(m.times, window_j, p, m.group_of)
        s = energy.sum()
        # Shares from the replicate, scaled to the measured total: the total itself is not in doubt.
        estimates[r] = energy / s * total if s > 0 else 0.0
    lo, hi = np.percentile(estimates, [2.5, 97.5], axis=0)
    return lo, hi


@dataclass
class _Posterior:
    """What the Bayesian power model says of each column."""

    energy_lo_j: np.ndarray
    energy_hi_j: np.ndarray
    more_steps: np.ndarray  # times as many steps alike to know the power to +/-20%; inf: never
    unseen: np.ndarray  # True where the windows say next to nothing about the column's power


def _posterior_interval(
    m: _Model, choice: _FitChoice, total: float, rng: np.random.Generator
) -> _Posterior:
    """95% interval per column from a Bayesian power model, the power spread weighed by evidence.

    Each group's power is ``common + deviation`` with the deviations normal around zero; their
    spread is unknown, so several spreads are weighed by the windows' marginal likelihood times a
    half-normal prior (scale :data:`PRIOR_POWER_SPREAD`). Where the windows can tell layers apart
    the evidence picks the spread and the interval is narrow; where every window sees the same mix
    of layers the prior remains, and so does the doubt.
    """
    n_columns = m.times.shape[1]
    x, e, d = m.design, m.window_j, m.durations
    n, k = x.shape
    if n < 2 or k < 1 or total <= 0 or d.sum() <= 0:
        # No say either way: an empty interval that min/max leave alone.
        nothing = np.zeros(n_columns)
        return _Posterior(
            np.full(n_columns, np.inf), nothing, np.ones(n_columns), nothing.astype(bool)
        )
    common_w = float(d @ e) / float(d @ d)
    fit_residual = e - x @ choice.power
    # Exact data would make the noise zero and every confounded direction look resolved; no
    # counter reads closer than a thousandth of a window's energy.
    noise_floor = _NOISE_FLOOR_REL**2 * float(np.mean(e**2))
    noise_var = max(float(fit_residual @ fit_residual) / max(n - k, 1), noise_floor, 1e-30)
    # The windows pin the common power; the prior is on how groups spread around it. So the
    # evidence is weighed on what the common power leaves unexplained (a window's seconds sum
    # to its duration: removing the duration direction removes the common power), and the
    # deviations are kept from moving the total (time-weighted, they sum to zero).
    residual = e - common_w * d
    group_s = x.sum(axis=0)
    basis = _complement_basis(group_s)
    x = (x - np.outer(d, d @ x) / float(d @ d)) @ basis
    k_free = basis.shape[1]
    gram, moment = x.T @ x, x.T @ residual
    relative = np.array(_SPREAD_GRID)
    # Half-normal prior on the spread, each grid point weighted by the width it stands for.
    log_prior = -0.5 * (relative / PRIOR_POWER_SPREAD) ** 2 + np.log(np.gradient(relative))
    means, roots, log_post = [], [], []
    more_steps = np.ones(k)  # unknown unless the prior's own spread is evaluated below
    unseen = np.zeros(k, bool)
    for rel, lp in zip(relative, log_prior, strict=True):
        spread = rel * common_w
        if spread <= 0 or k_free == 0:
            means.append(np.zeros(k_free))
            roots.append(np.zeros((k_free, k_free)))
            log_post.append(lp - 0.5 * float(residual @ residual) / noise_var)
            continue
        a = gram + (noise_var / spread**2) * np.eye(k_free)
        try:
            chol = np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            continue
        shift = np.linalg.solve(chol.T, np.linalg.solve(chol, moment))
        log_det = 2.0 * np.log(np.diag(chol)).sum() + k_free * np.log(spread**2 / noise_var)
        quad = (float(residual @ residual) - float(moment @ shift)) / noise_var
        means.append(shift)
        # Posterior covariance noise_var * a^-1: draw as sqrt(noise_var) * chol^-T z.
        root = np.linalg.inv(chol).T
        roots.append(np.sqrt(noise_var) * root)
        log_post.append(lp - 0.5 * (log_det + quad))
        if rel == PRIOR_POWER_SPREAD:
            more_steps = _more_steps_needed(gram, basis, noise_var, spread, common_w)
            # Groups whose variance the windows did not even halve: their power is the prior's
            # guess alone, not to be narrowed by how alike the resolved groups turned out.
            post_var = noise_var * ((basis @ (root @ root.T)) * basis).sum(axis=1)
            unseen = post_var > 0.5 * spread**2 * (basis**2).sum(axis=1)
    weights = np.exp(np.array(log_post) - max(log_post))
    weights /= weights.sum()
    which = rng.choice(len(weights), size=_POSTERIOR_DRAWS, p=weights)
    z = rng.standard_normal((_POSTERIOR_DRAWS, k_free))
    free = np.stack([means[j] + roots[j] @ z[i] for i, j in enumerate(which)])
    power = np.maximum(common_w + free @ basis.T, 0.0)[:, m.group_of]
    column_s = np.asarray(m.times.sum(axis=0)).ravel()
    energy = power * column_s
    sums = energy.sum(axis=1, keepdims=True)
    energy = np.divide(energy, sums, out=np.zeros_like(energy), where=sums > 0) * total
    lo, hi = np.percentile(energy, [2.5, 97.5], axis=0)
    return _Posterior(lo, hi, more_steps[m.group_of], unseen[m.group_of])


def _more_steps_needed(
    gram: np.ndarray, basis: np.ndarray, noise_var: float, spread: float, common_w: float
) -> np.ndarray:
    """How many times the windows each group needs for a 95% power interval within +/-20%.

    Grows the evidence (the Gram matrix) by powers of two against a fixed prior spread; ``inf``
    where even :data:`_MAX_MORE_STEPS` times as many windows like these would not do: the group's
    time always comes mixed with the same others, so only different steps could separate it.
    """
    k_free = gram.shape[0]
    needed = np.full(basis.shape[0], np.inf)
    factor = 1.0
    while factor <= _MAX_MORE_STEPS and np.isinf(needed).any():
        cov = np.linalg.inv(factor * gram + (noise_var / spread**2) * np.eye(k_free))
        sd_w = np.sqrt(noise_var * ((basis @ cov) * basis).sum(axis=1))
        done = np.isinf(needed) & (1.96 * sd_w <= RESOLVED_REL * common_w)
        needed[done] = factor
        factor *= 2.0
    return needed


def _complement_basis(weights: np.ndarray) -> np.ndarray:
    """Orthonormal basis (columns) of the vectors ``v`` with ``weights @ v == 0``."""
    k = len(weights)
    if k < 2 or not np.any(weights):
        return np.zeros((k, 0))
    # With the unit vector of the largest weight left out, the columns span everything.
    others = np.delete(np.eye(k), int(np.argmax(np.abs(weights))), axis=1)
    q, _ = np.linalg.qr(np.column_stack([weights, others]))
    return q[:, 1:k]


def _unresolved(
    energy: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    total: float,
    steps: int,
    more_steps: np.ndarray,
) -> list[tuple[int, float, int]]:
    """Columns with a noticeable share whose interval is wider than RESOLVED_REL, by energy.

    Each entry is ``(column, relative half-width, steps needed)``; steps needed is 0 where more
    steps like these would not help (the windows cannot tell the column from its neighbours).
    """
    out = []
    for c in np.argsort(-energy):
        if total <= 0 or energy[c] < 0.005 * total:
            break
        rel = float((hi[c] - lo[c]) / (2 * energy[c]))
        if rel > RESOLVED_REL:
            # Noise shrinks as 1/sqrt(steps); mixing with other layers may take more (or never).
            factor = max((rel / RESOLVED_REL) ** 2, float(more_steps[c]))
            needed = 0 if np.isinf(factor) else int(np.ceil(max(steps, 1) * factor))
            out.append((int(c), rel, needed))
    return out
