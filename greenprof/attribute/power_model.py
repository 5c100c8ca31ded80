"""The per-layer power model: which columns get a power, the fit, and the split of each window.

Pure numpy/scipy. A window's energy is split over the columns that ran in it in proportion to
time (time split) or to fitted power x time (power fit); :func:`choose_power` decides by held-out
prediction error whether the fit earns its place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import nnls

from greenprof.schema import OUTSIDE_COLUMN

#: Power fit columns: the longest-running columns each get a power; the rest share one.
MAX_FIT_COLUMNS = 48
#: ...and only those with at least this share of the run's time.
MIN_FIT_SHARE = 0.001
#: The fit's held-out improvement must exceed this many standard errors to be preferred.
FIT_EVIDENCE_SE = 2.0
_RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def fit_groups(times: sparse.csr_matrix, classes: np.ndarray | None) -> tuple[int, np.ndarray]:
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


def design_matrix(times: sparse.csr_matrix, group_of: np.ndarray, n_groups: int) -> np.ndarray:
    """Seconds per (window, power group), dense."""
    if n_groups == 0:
        return np.zeros((times.shape[0], 0))
    to_group = sparse.csr_matrix(
        (np.ones(len(group_of)), (np.arange(len(group_of)), group_of)),
        shape=(len(group_of), n_groups),
    )
    return np.asarray((times @ to_group).todense())


def ridge_nnls(gram: np.ndarray, moment: np.ndarray, prior_w: float, ridge: float) -> np.ndarray:
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
class FitChoice:
    """Outcome of cross-validating the power fit against the time split."""

    power: np.ndarray  # fitted power per group at the best ridge
    ridge: float
    preferred: bool  # True when the fit predicted held-out windows clearly better
    plausible: bool  # True when it predicted them better at all (not ruled out)


def choose_power(design: np.ndarray, window_j: np.ndarray, durations: np.ndarray) -> FitChoice:
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
            p = ridge_nnls(gram, moment, prior, ridge)
            fit_error[i, test] = (window_j[test] - design[test] @ p) ** 2
    best = int(np.argmin(fit_error.sum(axis=1)))
    ridge = _RIDGE_GRID[best]
    prior = window_j.sum() / max(durations.sum(), 1e-30)
    power = ridge_nnls(design.T @ design, design.T @ window_j, prior, ridge)
    gain = ts_error - fit_error[best]
    standard_error = gain.std(ddof=1) / np.sqrt(n) if n > 1 else np.inf
    plausible = bool(gain.sum() > 0)
    preferred = plausible and bool(gain.mean() > FIT_EVIDENCE_SE * standard_error)
    return FitChoice(power, ridge, preferred, plausible)


@dataclass
class FitModel:
    """Everything the bootstrap needs to redo one sensor's attribution on resampled windows."""

    times: sparse.csr_matrix
    design: np.ndarray
    window_j: np.ndarray
    durations: np.ndarray
    group_of: np.ndarray
    power: np.ndarray | None
    ridge: float


def allocate(
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
