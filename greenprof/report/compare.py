"""Per-module energy change between two runs, with the measurement's and run-to-run uncertainty.

A module got *worse* only when its change is beyond both uncertainties and above the threshold:

* the measurement's: each run's attribution is its own estimate (its own fit and replays), so a
  module's intervals in the two runs are independent (combined in quadrature); the totals of the
  same sensors share the sensors' calibration, so their bounds move together;
* run-to-run: the same script run twice does not cost the same. Where both runs recorded their
  steps (``steps.csv``), each figure's variation is measured by resampling the run's windows of
  steps (:mod:`greenprof.report.run_to_run`); older run directories have no such series, and each
  figure is then taken to vary by :data:`RUN_TO_RUN_REL` (the output says which). The change
  must clear both runs' intervals (they must not overlap), not only a 95% interval of the
  difference, which one same-script pair in twenty would cross.

The whole-run total is compared without ``(startup)``, which happens once per run and is shown on
its own row, never as a regression. When the step counts differ, figures are compared per step
(and the output says so). When nearly every module moved by a similar factor and the load
evidence says the machine was busier in B (B's process got less CPU time per wall second, or the
machine's load rose), the machine changed, not the code: that factor is reported, the run is no
regression, and each module is judged against it, so a layer that got worse on its own is still
caught. Runs whose directories hold no load evidence are given the same benefit of the doubt;
where the evidence says the machine was not busier, a common factor is the code's.

Example:
    >>> from greenprof.session import Session
    >>> before, after = Session.load("runs/a"), Session.load("runs/b")  # doctest: +SKIP
    >>> compare_sessions(before, after).worse(threshold_pct=5.0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from greenprof.attribute.uncertainty import uncertainty_j
from greenprof.errors import GreenprofError
from greenprof.report.compare_notes import comparison_notes
from greenprof.report.compare_rows import change_columns, join, same_sensors, scales, share
from greenprof.report.run_to_run import (
    LARGE_SHARE,
    MachineLoad,
    RunSpread,
    machine_factor,
    machine_load,
    run_spread,
)
from greenprof.report.tables import module_rows
from greenprof.schema import NOT_MODULES, OUTSIDE_MODULE, STARTUP_MODULE
from greenprof.session import Session

#: Run-to-run variation assumed for a figure with no measured series, relative, 95% half-width.
RUN_TO_RUN_REL = 0.10
#: Default of ``--threshold-pct``: smaller rises are never regressions.
THRESHOLD_PCT = 5.0


class NoCommonModules(GreenprofError):
    """The two runs share no module: their per-module comparison would mean nothing."""


@dataclass(frozen=True)
class Change:
    """One quantity in run A and run B, and how it moved.

    Attributes:
        energy_a_j: joules in run A, with bounds ``energy_a_lo_j`` / ``energy_a_hi_j``.
        energy_b_j: joules in run B, with bounds ``energy_b_lo_j`` / ``energy_b_hi_j``.
        run_to_run_j: ``±`` of the change from run-to-run variation.
        correlated: True when the bounds of A and B move together (the same sensors' totals);
            False when they are independent estimates (combined in quadrature).
        expected_factor: B is expected at this multiple of A (the machine's common factor).
    """

    energy_a_j: float
    energy_a_lo_j: float
    energy_a_hi_j: float
    energy_b_j: float
    energy_b_lo_j: float
    energy_b_hi_j: float
    run_to_run_j: float = 0.0
    correlated: bool = False
    expected_factor: float = 1.0

    @property
    def delta_j(self) -> float:
        """B minus A, in joules."""
        return self.energy_b_j - self.energy_a_j

    @property
    def measurement_j(self) -> float:
        """The ``±`` of :attr:`delta_j` from the measurement alone."""
        if self.correlated:
            low = self.energy_b_lo_j - self.energy_a_lo_j
            high = self.energy_b_hi_j - self.energy_a_hi_j
            return float(uncertainty_j(self.delta_j, min(low, high), max(low, high)))
        plus_a = uncertainty_j(self.energy_a_j, self.energy_a_lo_j, self.energy_a_hi_j)
        plus_b = uncertainty_j(self.energy_b_j, self.energy_b_lo_j, self.energy_b_hi_j)
        return float(math.hypot(plus_a, plus_b))

    @property
    def delta_uncertainty_j(self) -> float:
        """The ``±`` of :attr:`delta_j`: measurement and run-to-run together."""
        return float(math.hypot(self.measurement_j, self.run_to_run_j))

    @property
    def delta_pct(self) -> float:
        """Change relative to A in percent; NaN when A is zero."""
        return 100.0 * self.delta_j / self.energy_a_j if self.energy_a_j > 0 else math.nan

    @property
    def own_delta_j(self) -> float:
        """B minus what B would be had it moved only by the machine's factor."""
        return self.energy_b_j - self.expected_factor * self.energy_a_j

    @property
    def own_pct(self) -> float:
        """:attr:`own_delta_j` relative to A after the factor, percent; NaN when A is zero."""
        expected = self.expected_factor * self.energy_a_j
        return 100.0 * self.own_delta_j / expected if expected > 0 else math.nan

    def _beyond(self, delta_j: float) -> bool:
        # Beyond both together (the ± shown), hence beyond each alone.
        return abs(delta_j) > self.delta_uncertainty_j

    @property
    def rose(self) -> bool:
        """True when B rose, on its own, beyond both uncertainties (whatever the threshold)."""
        return self.own_delta_j > 0 and self._beyond(self.own_delta_j)

    def worse(self, threshold_pct: float = THRESHOLD_PCT) -> bool:
        """True when B rose on its own beyond both uncertainties and by over ``threshold_pct``."""
        pct = self.own_pct
        return self.rose and (math.isnan(pct) or pct > threshold_pct)

    @property
    def better(self) -> bool:
        """True when B fell beyond both uncertainties."""
        return self.delta_j < 0 and self._beyond(self.delta_j)


@dataclass
class Comparison:
    """Run A against run B.

    Attributes:
        label_a: what run A is called in output (its directory, usually).
        label_b: likewise for run B.
        total: the change of the run's energy without ``(startup)`` (per step when
            :attr:`per_step`).
        rows: one row per module (see :func:`compare_sessions`).
        notes: caveats: estimated runs, per-step normalisation, coverage, how run-to-run
            variation was found, the machine's factor.
        per_step: True when figures are joules per step (the step counts differ).
        machine_factor: B's energy over A's common to most modules and put down to the machine
            (1.0 when none is).
        load: what the load evidence says (None where neither run recorded any).
        coverage_a: share of run A's energy in modules that run B also has.
        coverage_b: share of run B's energy in modules that run A also has.
        threshold_pct: the threshold the rows' ``worse`` and ``verdict`` were judged at.
        measured_spread: True when both runs' run-to-run variation was measured from their steps.
    """

    label_a: str
    label_b: str
    total: Change
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    per_step: bool = False
    machine_factor: float = 1.0
    load: MachineLoad | None = None
    coverage_a: float = 1.0
    coverage_b: float = 1.0
    threshold_pct: float = THRESHOLD_PCT
    measured_spread: bool = False

    def worse(self, threshold_pct: float | None = None) -> pd.DataFrame:
        """Return modules that got worse beyond uncertainty and by more than ``threshold_pct``.

        The percentage is of the module's own energy in A, after the machine's common factor; a
        module new in B counts when its energy is beyond its uncertainty, whatever the threshold.
        ``None``: the threshold the comparison was made at.
        """
        rows = self.rows
        threshold = self.threshold_pct if threshold_pct is None else threshold_pct
        above = rows["own_pct"].isna() | (rows["own_pct"] > threshold)
        return rows[rows["rose"] & above].reset_index(drop=True)

    @property
    def total_worse(self) -> bool:
        """True when the total rose beyond uncertainty and threshold, not by the machine."""
        return self.machine_factor == 1.0 and self.total.worse(self.threshold_pct)


def compare_sessions(
    a: Session,
    b: Session,
    label_a: str = "A",
    label_b: str = "B",
    *,
    force: bool = False,
    threshold_pct: float = THRESHOLD_PCT,
) -> Comparison:
    """Return the per-module change of self energy (all phases) from run ``a`` to run ``b``.

    Args:
        a: the run before.
        b: the run after.
        label_a: how run A is named in output.
        label_b: how run B is named in output.
        force: compare even when the runs share no module (then only the totals mean anything).
        threshold_pct: a module rose too little to be worse at or below this many percent.

    Returns:
        A :class:`Comparison` whose ``rows`` hold ``module, type, present_a, present_b,
        energy_a_j, energy_a_lo_j, energy_a_hi_j, energy_b_j, energy_b_lo_j, energy_b_hi_j,
        delta_j, delta_uncertainty_j, run_to_run_j, delta_pct, own_pct, rose, worse, better,
        verdict``, worse modules first, then by size of change. ``verdict`` is ``WORSE``,
        ``NEW, WORSE``, ``better``, ``below threshold`` (a rise beyond uncertainty, too small),
        ``machine`` (a rise the machine's factor explains), ``within noise``, ``new``,
        ``removed`` or ``once`` (``(startup)``).

    Raises:
        NoCommonModules: the runs share no module and ``force`` is False.
    """
    rows_a, rows_b = module_rows(a), module_rows(b)
    scale_a, scale_b, per_step = scales(a, b)
    joined = join(rows_a, rows_b, scale_a, scale_b)
    both = joined["present_a"] & joined["present_b"]
    real = both & ~joined["module"].isin(NOT_MODULES)
    if not real.any() and not force:
        raise NoCommonModules(
            f"{label_a} and {label_b} share no module: they profile different models. "
            "Use --force to compare their totals anyway."
        )
    spread_a, spread_b = _spread(a, rows_a), _spread(b, rows_b)
    rel_a = _relative(joined["module"], spread_a)
    rel_b = _relative(joined["module"], spread_b)
    # The two runs' intervals must not overlap: a 95% interval of the difference would be
    # crossed by one same-script pair in twenty, and CI compares many pairs.
    joined["run_to_run_j"] = rel_a * joined["energy_a_j"] + rel_b * joined["energy_b_j"]
    load = machine_load(spread_a, spread_b, a.meta, b.meta)
    machine = machine_factor(
        joined.loc[real, "energy_a_j"].to_numpy(float),
        joined.loc[real, "energy_b_j"].to_numpy(float),
        np.hypot(rel_a[real], rel_b[real]),
        RUN_TO_RUN_REL,
        load,
    )
    factor = machine.factor
    expected = np.where(both, factor, 1.0)
    if load is not None and load.busier and load.wall_factor:
        # Between modules (Python glue) is where a process that waits for a CPU loses most
        # time, and burns CPU handing the interpreter lock between its threads.
        outside = (joined["module"] == OUTSIDE_MODULE).to_numpy() & both.to_numpy()
        expected[outside] = max(factor, load.wall_factor)
    # Under a changed load, modules scatter around the machine's factor: that is run-to-run too.
    large = joined["energy_a_j"] >= LARGE_SHARE * joined.loc[real, "energy_a_j"].sum()
    scatter = np.where(large, machine.scatter_rel, machine.small_scatter_rel)
    joined["run_to_run_j"] += scatter * expected * joined["energy_a_j"] * both
    changes = [
        Change(*values, run_to_run_j=r2r, expected_factor=f)
        for values, r2r, f in zip(
            joined[change_columns()].itertuples(index=False),
            joined["run_to_run_j"],
            expected,
            strict=True,
        )
    ]
    # Startup happens once per run: one sample each, whose variation (cold caches) is unknown.
    once = (joined["module"] == STARTUP_MODULE).to_numpy()
    joined["delta_j"] = [c.delta_j for c in changes]
    joined["delta_uncertainty_j"] = [c.delta_uncertainty_j for c in changes]
    joined["delta_pct"] = [c.delta_pct for c in changes]
    joined["own_pct"] = [c.own_pct for c in changes]
    for name, judge in (("rose", Change.rose.fget), ("better", Change.better.fget)):
        joined[name] = [judge(c) and not o for c, o in zip(changes, once, strict=True)]
    joined["worse"] = [c.worse(threshold_pct) and not o for c, o in zip(changes, once, strict=True)]
    joined["verdict"] = [
        "once" if o else _verdict(c, in_a, in_b, threshold_pct)
        for c, o, in_a, in_b in zip(
            changes, once, joined["present_a"], joined["present_b"], strict=True
        )
    ]
    joined["_size"] = np.abs(joined["delta_j"])
    rows = joined.sort_values(["worse", "_size", "module"], ascending=[False, False, True])
    rows = rows.drop(columns="_size").reset_index(drop=True)
    total = _total_change(a, b, rows_a, rows_b, (scale_a, scale_b), (spread_a, spread_b), factor)
    coverage = (share(joined, both, "energy_a_j"), share(joined, both, "energy_b_j"))
    notes = comparison_notes(
        a,
        b,
        per_step=per_step,
        machine=machine,
        load=load,
        coverage=coverage,
        shared=bool(real.any()),
        spreads=(spread_a, spread_b),
        fallback_rel=RUN_TO_RUN_REL,
    )
    measured = spread_a is not None and spread_b is not None
    return Comparison(
        label_a,
        label_b,
        total,
        rows,
        notes,
        per_step,
        factor,
        load,
        *coverage,
        threshold_pct,
        measured,
    )


def _spread(session: Session, rows: pd.DataFrame) -> RunSpread | None:
    own = rows.set_index("module")
    return run_spread(session, own["energy_j"], own["time_s"])


def _relative(modules: pd.Series, spread: RunSpread | None) -> np.ndarray:
    """Each module's relative run-to-run half-width (the fallback where none was measured)."""
    if spread is None:
        return np.full(len(modules), RUN_TO_RUN_REL)
    return np.array([spread.module_rel.get(m, RUN_TO_RUN_REL) for m in modules], float)


def _total_change(
    a: Session,
    b: Session,
    rows_a: pd.DataFrame,
    rows_b: pd.DataFrame,
    scales: tuple[float, float],
    spreads: tuple[RunSpread | None, RunSpread | None],
    factor: float,
) -> Change:
    """The whole run's change without ``(startup)``, with the bounds the sensors give."""
    values = []
    for session, rows, scale in ((a, rows_a, scales[0]), (b, rows_b, scales[1])):
        startup = float(rows.loc[rows["module"] == STARTUP_MODULE, "energy_j"].sum())
        bounds = (session.total_energy_j, session.total_energy_lo_j, session.total_energy_hi_j)
        values += [max(v - startup, 0.0) * scale for v in bounds]
    rel = [RUN_TO_RUN_REL if s is None else s.total_rel for s in spreads]
    return Change(
        *values,
        run_to_run_j=rel[0] * values[0] + rel[1] * values[3],
        correlated=same_sensors(a, b),
        expected_factor=factor,
    )


def _verdict(change: Change, in_a: bool, in_b: bool, threshold_pct: float) -> str:
    if not in_a:
        return "NEW, WORSE" if change.rose else "new"
    if not in_b:
        return "removed"
    if change.worse(threshold_pct):
        return "WORSE"
    if change.rose:
        return "below threshold"
    if change.better:
        return "better"
    if change.expected_factor != 1.0 and change.delta_j > change.delta_uncertainty_j:
        return "machine"  # a rise beyond uncertainty, but not beyond the machine's factor
    return "within noise"
