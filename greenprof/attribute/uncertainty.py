"""How far each figure can be trusted: bootstrap over windows and a Bayesian spread of power.

Also the one definition of a figure's uncertainty and of "noise" that tables, comparisons and
warnings share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from greenprof.attribute.power_model import FitChoice, FitModel, allocate, ridge_nnls

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
#: The one threshold of "noise": a figure whose 95% interval reaches further than this share of
#: its value from it. The noise tag, the warnings and the README all use it.
NOISE_REL = 0.2


def bootstrap_interval(
    m: FitModel, total: float, replicates: int, rng: np.random.Generator
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
            p = ridge_nnls(m.design.T @ m.design, m.design.T @ window_j, prior, m.ridge)
        energy = allocate(m.times, window_j, p, m.group_of)
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


def posterior_interval(
    m: FitModel, choice: FitChoice, total: float, rng: np.random.Generator
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
        done = np.isinf(needed) & (1.96 * sd_w <= NOISE_REL * common_w)
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


def centred(
    energy_j: np.ndarray, energy_lo_j: np.ndarray, energy_hi_j: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Widen each interval to reach as far on both sides of its value (never below 0 J).

    A bootstrap or a posterior may leave the estimate at one edge of its interval; the figure
    shown as "value ± uncertainty" must lie inside it, so the longer side is used on both.
    """
    half = np.maximum(energy_j - energy_lo_j, energy_hi_j - energy_j)
    return np.maximum(energy_j - half, 0.0), energy_j + half


def unresolved_columns(
    energy: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    total: float,
    steps: int,
    more_steps: np.ndarray,
) -> list[tuple[int, float, int]]:
    """Columns with a noticeable share whose interval is wider than NOISE_REL, by energy.

    Each entry is ``(column, relative half-width, steps needed)``; steps needed is 0 where more
    steps like these would not help (the windows cannot tell the column from its neighbours).
    """
    out = []
    for c in np.argsort(-energy):
        if total <= 0 or energy[c] < 0.005 * total:
            break
        rel = float((hi[c] - lo[c]) / (2 * energy[c]))
        if rel > NOISE_REL:
            # Noise shrinks as 1/sqrt(steps); mixing with other layers may take more (or never).
            factor = max((rel / NOISE_REL) ** 2, float(more_steps[c]))
            needed = 0 if np.isinf(factor) else int(np.ceil(max(steps, 1) * factor))
            out.append((int(c), rel, needed))
    return out


def uncertainty_j(energy_j: ArrayLike, energy_lo_j: ArrayLike, energy_hi_j: ArrayLike) -> Any:
    """Return the larger distance from a value to its bounds, shown as ``±`` (scalars or arrays)."""
    energy = np.asarray(energy_j, dtype=float)
    return np.maximum(np.maximum(np.asarray(energy_hi_j) - energy, energy - energy_lo_j), 0.0)


def is_noise(energy_j: ArrayLike, energy_lo_j: ArrayLike, energy_hi_j: ArrayLike) -> Any:
    """Return True where the interval reaches further than :data:`NOISE_REL` from the value."""
    energy = np.abs(np.asarray(energy_j, dtype=float))
    return uncertainty_j(energy_j, energy_lo_j, energy_hi_j) > NOISE_REL * energy
