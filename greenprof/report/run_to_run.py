"""How much a run's figures vary from run to run, measured from the run's own steps.

A run directory with ``steps.csv`` holds the energy of each window of consecutive steps and
``step_modules.csv`` each module's self time in it. The windows are resampled (a moving-block
bootstrap, seeded, so the same runs always give the same answer; blocks of consecutive windows keep
slow drift inside a resample) and the per-step mean is recomputed each time:

* the total: window joules over window steps;
* a module: each window's joules split by ``power × self time`` over the modules that ran in it,
  with each module's power as the run's attribution measured it (energy over time, all phases).
  The window energy is measured; only its split is modelled, and the split's own doubt is the
  measurement's interval, judged separately. So a module whose time per step wanders, or that
  shares windows whose energy wanders, gets a wider interval.

The 95 % half-width, relative to the per-step mean, is the run's run-to-run variation of that
figure. Load evidence (CPU time against wall time, per window) says whether the machine was busy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from greenprof.session import Session

#: Resamples of the bootstrap.
RESAMPLES = 2000
#: Seed of the bootstrap: the same two runs always compare the same.
SEED = 0
#: Fewest windows a bootstrap is run on; fewer and the run has no measured variation.
MIN_WINDOWS = 4
#: B got at most this share of A's CPU seconds per wall second: B's process waited for a CPU.
_STARVED = 0.85
#: A load average per logical CPU of at least this: more runnable tasks than CPUs.
_CROWDED = 1.0
#: B's load average per logical CPU rose by at least this much: other work ran beside it.
_LOAD_RISE = 0.5
#: Other processes' share of the machine's CPUs rose by at least this much in B.
_OTHERS_RISE = 0.25
#: Modules below this share of a run's energy do not vote on a common factor.
_FACTOR_MIN_SHARE = 0.01
#: At least this many modules must vote before a change is called the machine's.
_FACTOR_MIN_VOTERS = 3
#: Share of the voting modules (and of their energy) that must move alike.
_FACTOR_MAJORITY = 0.6
#: A module with at least this share of A's energy is large: it scatters like the large ones.
LARGE_SHARE = 0.05
#: B's wall time per step rose by more than this factor (a busier machine is a slower one).
_SLOWER = 1.05


@dataclass
class RunSpread:
    """One run's run-to-run evidence.

    Attributes:
        windows: windows the bootstrap resampled.
        total_rel: 95 % half-width of the per-step total, relative to it.
        module_rel: the same per module (modules absent from every window are missing).
        wall_per_step_s: wall time per step over the windows.
        cpu_per_wall: the process's CPU seconds per wall second over the windows (None: unknown).
        load_avg_1m: the machine's load average at the end of the run, per logical CPU.
    """

    windows: int
    total_rel: float
    module_rel: dict[str, float] = field(default_factory=dict)
    wall_per_step_s: float | None = None
    cpu_per_wall: float | None = None
    load_avg_1m: float | None = None


def run_spread(session: Session, own_j: pd.Series, own_s: pd.Series) -> RunSpread | None:
    """Return ``session``'s run-to-run evidence, or None where it recorded too few windows.

    Args:
        session: the run.
        own_j: self joules per module (all phases), indexed by module name.
        own_s: self seconds per module, same index.
    """
    steps = session.steps()
    if len(steps) < MIN_WINDOWS or float(steps["steps"].sum()) <= 0:
        return None
    energy = steps["energy_j"].to_numpy(float)
    counts = steps["steps"].to_numpy(float)
    times = (
        session.step_modules()
        .pivot_table(index="window", columns="module", values="time_s", aggfunc="sum")
        .reindex(steps["window"])
        .fillna(0.0)
    )
    power = (own_j.reindex(times.columns) / own_s.reindex(times.columns)).fillna(0.0)
    power = power.where(np.isfinite(power), 0.0).to_numpy(float)
    weighted = times.to_numpy(float) * power
    share = weighted / np.where(
        weighted.sum(1, keepdims=True) > 0, weighted.sum(1, keepdims=True), 1
    )
    series = np.column_stack([energy, energy[:, None] * share])
    rel = _bootstrap_rel(series, counts)
    wall_s = float(steps["time_s"].sum())
    cpu_s = float(steps["cpu_s"].sum())
    load = session.meta.get("load") or {}
    load_avg, cpus = load.get("load_avg_1m"), load.get("logical_cpus") or 1
    return RunSpread(
        windows=len(steps),
        total_rel=float(rel[0]),
        module_rel={m: float(r) for m, r in zip(times.columns, rel[1:], strict=True)},
        wall_per_step_s=wall_s / float(counts.sum()),
        cpu_per_wall=cpu_s / wall_s if wall_s > 0 and cpu_s > 0 else None,
        load_avg_1m=float(load_avg) / cpus if isinstance(load_avg, (int, float)) else None,
    )


def _bootstrap_rel(series: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Relative 95 % half-width of ``sum(series) / sum(counts)`` per column, by block bootstrap."""
    n = len(counts)
    block = max(1, math.ceil(math.sqrt(n)))
    rng = np.random.default_rng(SEED)
    starts = rng.integers(0, n - block + 1, size=(RESAMPLES, math.ceil(n / block)))
    picks = (starts[:, :, None] + np.arange(block)).reshape(RESAMPLES, -1)[:, :n]
    weights = np.zeros((RESAMPLES, n))
    np.add.at(weights, (np.repeat(np.arange(RESAMPLES), n), picks.ravel()), 1.0)
    means = (weights @ series) / (weights @ counts)[:, None]
    point = series.sum(0) / counts.sum()
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    half = np.maximum(high - point, point - low)
    return np.where(point > 0, half / np.where(point > 0, point, 1.0), 0.0)


@dataclass
class MachineLoad:
    """How busy the machine was in run B against run A.

    Attributes:
        busier: True when B ran slower per step and B's process got less CPU per wall second,
            or the machine's load rose.
        differs: True when the load differs either way (B busier, or A busier): CPU per wall
            second or the load moved beyond what an unchanged machine shows.
        crowded: True when either run had more runnable tasks than logical CPUs (load per CPU
            of at least 1): its processes took turns, and its per-module figures scatter.
        wall_factor: B's wall time per step over A's (None: unknown).
        cpu_per_wall_a: A's CPU seconds per wall second (None: unknown); likewise ``_b``.
        load_a: A's load average per logical CPU (None: unknown); likewise ``_b``.
        others_a: the share of the machine's CPU time other processes took during A (None:
            unknown); likewise ``_b``.
    """

    busier: bool
    differs: bool
    crowded: bool
    wall_factor: float | None
    cpu_per_wall_a: float | None
    cpu_per_wall_b: float | None
    load_a: float | None
    load_b: float | None
    others_a: float | None = None
    others_b: float | None = None

    def describe(self) -> str:
        """Return the evidence in words: ``wall time per step x1.60, CPU per wall second ...``."""
        parts = []
        if self.wall_factor is not None:
            parts.append(f"wall time per step x{self.wall_factor:.2f}")
        if self.cpu_per_wall_a is not None and self.cpu_per_wall_b is not None:
            parts.append(
                f"CPU per wall second {100 * self.cpu_per_wall_a:.0f}% -> "
                f"{100 * self.cpu_per_wall_b:.0f}%"
            )
        if self.load_a is not None and self.load_b is not None:
            parts.append(f"load per CPU {self.load_a:.2f} -> {self.load_b:.2f}")
        if self.others_a is not None and self.others_b is not None:
            parts.append(
                f"other processes' CPU {100 * self.others_a:.0f}% -> "
                f"{100 * self.others_b:.0f}% of the machine"
            )
        return ", ".join(parts) or "no figures"


def machine_load(
    spread_a: RunSpread | None,
    spread_b: RunSpread | None,
    meta_a: dict[str, object],
    meta_b: dict[str, object],
) -> MachineLoad | None:
    """What the two runs' load evidence says, or None where neither recorded any.

    Per-window figures (``steps.csv``) are preferred; else the whole profile's (``meta["load"]``,
    which includes the startup).
    """
    wall = [_wall_per_step(s, m) for s, m in ((spread_a, meta_a), (spread_b, meta_b))]
    cpu = [_cpu_per_wall(s, m) for s, m in ((spread_a, meta_a), (spread_b, meta_b))]
    load = [_load(s, m) for s, m in ((spread_a, meta_a), (spread_b, meta_b))]
    others = [_others(m) for m in (meta_a, meta_b)]
    if all(v is None for v in (*cpu, *load, *others)):
        return None
    wall_factor = wall[1] / wall[0] if wall[0] and wall[1] else None
    busier = _busier(cpu, load, others, wall_factor)
    fewer = _busier(cpu[::-1], load[::-1], others[::-1], 1 / wall_factor if wall_factor else None)
    crowded = any(x is not None and x >= _CROWDED for x in load)
    return MachineLoad(busier, busier or fewer, crowded, wall_factor, *cpu, *load, *others)


def _busier(
    cpu: list[float | None],
    load: list[float | None],
    others: list[float | None],
    wall_factor: float | None,
) -> bool:
    """True when the second run's machine was busier than the first's."""
    starved = cpu[0] is not None and cpu[1] is not None and cpu[1] < _STARVED * cpu[0]
    crowded = load[0] is not None and load[1] is not None and load[1] - load[0] >= _LOAD_RISE
    shared = (
        others[0] is not None and others[1] is not None and others[1] - others[0] >= _OTHERS_RISE
    )
    slower = wall_factor is None or wall_factor > _SLOWER
    return slower and (starved or crowded or shared)


def _wall_per_step(spread: RunSpread | None, meta: dict[str, object]) -> float | None:
    if spread is not None:
        return spread.wall_per_step_s
    steps, duration = meta.get("steps"), meta.get("duration_s")
    if isinstance(steps, int) and steps > 0 and isinstance(duration, (int, float)):
        return float(duration) / steps
    return None


def _cpu_per_wall(spread: RunSpread | None, meta: dict[str, object]) -> float | None:
    if spread is not None and spread.cpu_per_wall is not None:
        return spread.cpu_per_wall
    value = _load_facts(meta).get("cpu_per_wall")
    return float(value) if isinstance(value, (int, float)) else None


def _load(spread: RunSpread | None, meta: dict[str, object]) -> float | None:
    if spread is not None and spread.load_avg_1m is not None:
        return spread.load_avg_1m
    facts = _load_facts(meta)
    load, cpus = facts.get("load_avg_1m"), facts.get("logical_cpus") or 1
    return float(load) / float(cpus) if isinstance(load, (int, float)) else None  # type: ignore[arg-type]


def _others(meta: dict[str, object]) -> float | None:
    value = _load_facts(meta).get("others_cpu_share")
    return float(value) if isinstance(value, (int, float)) else None


def _load_facts(meta: dict[str, object]) -> dict[str, object]:
    facts = meta.get("load")
    return facts if isinstance(facts, dict) else {}


def alike_factor(
    energy_a_j: np.ndarray,
    energy_b_j: np.ndarray,
    rel: np.ndarray,
    min_rel: float,
    *,
    busier: bool = False,
) -> float:
    """B over A shared by most modules, or 1.0 when the modules did not move alike.

    Each module with a noticeable share votes once, whatever its size: one big layer that got
    worse must not pass for the machine. A module moved alike when its ratio is within its own
    relative run-to-run variation ``rel`` (at least ``min_rel``) of the common factor. Most
    voters must move alike, and most of their energy too, unless the load evidence says the
    machine was ``busier`` (then one big layer that rose on its own does not hide the factor).
    """
    a, b = np.asarray(energy_a_j, float), np.asarray(energy_b_j, float)
    vote = _voters(a, b)
    if vote.sum() < _FACTOR_MIN_VOTERS:
        return 1.0
    ratio = b[vote] / a[vote]
    factor = float(np.exp(np.median(np.log(ratio))))
    tolerance = np.maximum(np.asarray(rel, float)[vote], min_rel)
    if abs(factor - 1.0) <= float(np.median(tolerance)):
        return 1.0
    alike = np.abs(ratio / factor - 1.0) <= tolerance
    weight = a[vote] + b[vote]
    by_count = alike.mean() >= _FACTOR_MAJORITY
    by_energy = weight[alike].sum() >= _FACTOR_MAJORITY * weight.sum()
    return factor if by_count and (by_energy or busier) else 1.0


@dataclass(frozen=True)
class MachineShare:
    """The machine's part in a change.

    Attributes:
        factor: B over A that the machine explains (1.0: none).
        scatter_rel: 95 % spread of the large modules (each at least :data:`LARGE_SHARE` of the
            run) around ``factor``, relative; 0.0 where the load did not change.
        small_scatter_rel: the same for every voting module, the small ones included (they
            scatter more: fewer of their calls fall in each window).
        alike: :func:`alike_factor` of the change.
    """

    factor: float = 1.0
    scatter_rel: float = 0.0
    small_scatter_rel: float = 0.0
    alike: float = 1.0


def machine_factor(
    energy_a_j: np.ndarray,
    energy_b_j: np.ndarray,
    rel: np.ndarray,
    min_rel: float,
    load: MachineLoad | None,
) -> MachineShare:
    """The machine's part in the change of the modules ``energy_a_j`` -> ``energy_b_j``.

    Where the load differs between the runs, or either run shared a crowded machine, the factor
    is the modules' median ratio (each module once) and the scatter their spread around it
    (from the median absolute deviation): a machine busy with other work moves each module by
    its own amount, so a module got worse on its own only beyond that spread. Where neither run
    recorded load evidence, a common rise (:func:`alike_factor`) is given the benefit of the
    doubt, without a spread. Otherwise the machine did not change.
    """
    busier = load is not None and load.busier
    alike = alike_factor(energy_a_j, energy_b_j, rel, min_rel, busier=busier)
    a, b = np.asarray(energy_a_j, float), np.asarray(energy_b_j, float)
    vote = _voters(a, b)
    unsteady = load is not None and (load.differs or load.crowded)
    if unsteady and vote.sum() >= _FACTOR_MIN_VOTERS:
        ratio = np.log(b[vote] / a[vote])
        # Each module votes once (medians, not energy-weighted): a big layer that rose on its
        # own must neither move the factor nor widen the spread it is judged against.
        middle = float(np.median(ratio))
        large = a[vote] >= LARGE_SHARE * a.sum()
        spread = [
            1.4826 * float(np.median(np.abs(ratio[m] - middle))) if m.sum() >= 2 else 0.0
            for m in (large, np.ones_like(large))
        ]
        return MachineShare(
            float(np.exp(middle)), *(float(np.expm1(1.96 * s)) for s in spread), alike
        )
    if load is None and alike > 1.0:
        return MachineShare(alike, alike=alike)
    return MachineShare(alike=alike)


def _voters(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Modules with a noticeable share in either run, present in both."""
    share_a = a / a.sum() if a.sum() > 0 else a
    share_b = b / b.sum() if b.sum() > 0 else b
    return (a > 0) & (b > 0) & ((share_a >= _FACTOR_MIN_SHARE) | (share_b >= _FACTOR_MIN_SHARE))
