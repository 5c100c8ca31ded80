"""Per-module energy change between two runs, with the measurement's and run-to-run uncertainty.

A module got *worse* only when its change is beyond both uncertainties and above the threshold:

* the measurement's: the bounds of a module measured by the same sensors move together (their
  doubt is about the layer's power, which both runs share), so the change must keep its sign
  from the lower bounds to the upper bounds; with different sensors the intervals must not
  overlap at all;
* run-to-run: the same script run twice does not cost the same. Without a per-step series to
  measure it from, each figure is taken to vary by :data:`RUN_TO_RUN_REL` between runs (stated in
  the output).

When the step counts differ, figures are compared per step (and the output says so). When every
module moved by a similar factor, the machine changed (other load, clock speed), not the code:
that factor is reported, and each module is judged against it, so a layer that got worse on its
own is still caught.

Example:
    >>> from greenprof.session import Session
    >>> a = Session.load("reports/before")  # doctest: +SKIP
    >>> b = Session.load("reports/after")  # doctest: +SKIP
    >>> compare_sessions(a, b).worse(threshold_pct=5.0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from greenprof.attribute.uncertainty import uncertainty_j
from greenprof.errors import GreenprofError
from greenprof.report.tables import module_rows
from greenprof.schema import NOT_MODULES, STARTUP_MODULE
from greenprof.session import Session

_BOUNDS = ["energy_j", "energy_lo_j", "energy_hi_j"]
#: Run-to-run variation assumed for every figure, relative, as a 95% half-width.
RUN_TO_RUN_REL = 0.10
#: Modules below this share of a run's energy do not vote on a common factor.
_FACTOR_MIN_SHARE = 0.01
#: At least this many modules must vote before a change is called the machine's.
_FACTOR_MIN_VOTERS = 3
#: Share of the voting modules (and of their energy) that must move alike.
_FACTOR_MAJORITY = 0.6


class NoCommonModules(GreenprofError):
    """The two runs share no module: their per-module comparison would mean nothing."""


@dataclass(frozen=True)
class Change:
    """One quantity in run A and run B, and how it moved.

    Attributes:
        energy_a_j: joules in run A, with bounds ``energy_a_lo_j`` / ``energy_a_hi_j``.
        energy_b_j: joules in run B, with bounds ``energy_b_lo_j`` / ``energy_b_hi_j``.
        run_to_run_j: ``±`` of the change from run-to-run variation.
        correlated: True when both runs used the same sensors (bounds move together).
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
        else:
            low = self.energy_b_lo_j - self.energy_a_hi_j
            high = self.energy_b_hi_j - self.energy_a_lo_j
        return float(uncertainty_j(self.delta_j, min(low, high), max(low, high)))

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

    def _beyond(self, delta_j: float) -> bool:
        return abs(delta_j) > self.measurement_j and abs(delta_j) > self.run_to_run_j

    @property
    def worse(self) -> bool:
        """True when B rose, on its own, beyond both uncertainties."""
        return self.own_delta_j > 0 and self._beyond(self.own_delta_j)

    @property
    def better(self) -> bool:
        """True when B fell, on its own, beyond both uncertainties."""
        return self.own_delta_j < 0 and self._beyond(self.own_delta_j)


@dataclass
class Comparison:
    """Run A against run B.

    Attributes:
        label_a: what run A is called in output (its directory, usually).
        label_b: likewise for run B.
        total: the change of the whole-run energy (per step when :attr:`per_step`).
        rows: one row per module (see :func:`compare_sessions`).
        notes: caveats: estimated runs, per-step normalisation, coverage, the machine's factor.
        per_step: True when figures are joules per step (the step counts differ).
        machine_factor: B's energy over A's common to most modules (1.0 when none is).
        coverage_a: share of run A's energy in modules that run B also has.
        coverage_b: share of run B's energy in modules that run A also has.
    """

    label_a: str
    label_b: str
    total: Change
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    per_step: bool = False
    machine_factor: float = 1.0
    coverage_a: float = 1.0
    coverage_b: float = 1.0

    def worse(self, threshold_pct: float = 0.0) -> pd.DataFrame:
        """Return modules that got worse beyond uncertainty and by more than ``threshold_pct``.

        The percentage is of the module's own energy in A, after the machine's common factor; a
        module new in B counts when its energy is beyond its uncertainty, whatever the threshold.
        """
        rows = self.rows
        above = rows["own_pct"].isna() | (rows["own_pct"] > threshold_pct)
        return rows[rows["worse"] & above].reset_index(drop=True)


def compare_sessions(
    a: Session, b: Session, label_a: str = "A", label_b: str = "B", *, force: bool = False
) -> Comparison:
    """Return the per-module change of self energy (all phases) from run ``a`` to run ``b``.

    Args:
        a: the run before.
        b: the run after.
        label_a: how run A is named in output.
        label_b: how run B is named in output.
        force: compare even when the runs share no module (then only the totals mean anything).

    Returns:
        A :class:`Comparison` whose ``rows`` hold ``module, type, present_a, present_b,
        energy_a_j, energy_a_lo_j, energy_a_hi_j, energy_b_j, energy_b_lo_j, energy_b_hi_j,
        delta_j, delta_uncertainty_j, delta_pct, own_pct, worse, better, verdict``, worse modules
        first, then by size of change.

    Raises:
        NoCommonModules: the runs share no module and ``force`` is False.
    """
    rows_a, rows_b = module_rows(a), module_rows(b)
    scale_a, scale_b, per_step = _scales(a, b)
    joined = _join(rows_a, rows_b, scale_a, scale_b)
    both = joined["present_a"] & joined["present_b"]
    real = both & ~joined["module"].isin(NOT_MODULES)
    if not real.any() and not force:
        raise NoCommonModules(
            f"{label_a} and {label_b} share no module: they profile different models. "
            "Use --force to compare their totals anyway."
        )
    coverage_a = _share(joined, both, "energy_a_j")
    coverage_b = _share(joined, both, "energy_b_j")
    correlated = _same_sensors(a, b)
    factor = _machine_factor(joined[real])
    changes = [
        Change(
            *values,
            run_to_run_j=_run_to_run_j(values[0], values[3]),
            correlated=correlated,
            expected_factor=factor if in_a and in_b else 1.0,
        )
        for values, in_a, in_b in zip(
            joined[_change_columns()].itertuples(index=False),
            joined["present_a"],
            joined["present_b"],
            strict=True,
        )
    ]
    joined["delta_j"] = [c.delta_j for c in changes]
    joined["delta_uncertainty_j"] = [c.delta_uncertainty_j for c in changes]
    joined["delta_pct"] = [c.delta_pct for c in changes]
    joined["own_pct"] = [
        100.0 * c.own_delta_j / (c.expected_factor * c.energy_a_j) if c.energy_a_j > 0 else math.nan
        for c in changes
    ]
    # Startup happens once per run: one sample each, whose variation (cold caches) is unknown.
    once = (joined["module"] == STARTUP_MODULE).to_numpy()
    joined["worse"] = [c.worse and not o for c, o in zip(changes, once, strict=True)]
    joined["better"] = [c.better and not o for c, o in zip(changes, once, strict=True)]
    joined["verdict"] = [
        "once" if o else _verdict(c, in_a, in_b)
        for c, o, in_a, in_b in zip(
            changes, once, joined["present_a"], joined["present_b"], strict=True
        )
    ]
    joined["_size"] = np.abs(joined["delta_j"])
    rows = joined.sort_values(["worse", "_size", "module"], ascending=[False, False, True])
    rows = rows.drop(columns="_size").reset_index(drop=True)
    total = Change(
        a.total_energy_j * scale_a,
        a.total_energy_lo_j * scale_a,
        a.total_energy_hi_j * scale_a,
        b.total_energy_j * scale_b,
        b.total_energy_lo_j * scale_b,
        b.total_energy_hi_j * scale_b,
        run_to_run_j=_run_to_run_j(a.total_energy_j * scale_a, b.total_energy_j * scale_b),
        correlated=correlated,
    )
    notes = _notes(a, b, per_step, factor, coverage_a, coverage_b, real.any())
    return Comparison(
        label_a, label_b, total, rows, notes, per_step, factor, coverage_a, coverage_b
    )


def _scales(a: Session, b: Session) -> tuple[float, float, bool]:
    """Multipliers that make the runs comparable: per step when their step counts differ."""
    steps_a, steps_b = a.meta.get("steps"), b.meta.get("steps")
    if isinstance(steps_a, int) and isinstance(steps_b, int) and steps_a > 0 and steps_b > 0:
        if steps_a != steps_b:
            return 1.0 / steps_a, 1.0 / steps_b, True
    return 1.0, 1.0, False


def _run_to_run_j(energy_a_j: float, energy_b_j: float) -> float:
    return RUN_TO_RUN_REL * math.hypot(energy_a_j, energy_b_j)


def _share(joined: pd.DataFrame, mask: pd.Series, column: str) -> float:
    total = float(joined[column].sum())
    return float(joined.loc[mask, column].sum()) / total if total > 0 else 1.0


def _same_sensors(a: Session, b: Session) -> bool:
    def kinds(s: Session) -> list[tuple[str, bool]]:
        return sorted((str(x.get("name")), bool(x.get("measured"))) for x in s.meta["sensors"])

    return bool(a.meta["sensors"]) and kinds(a) == kinds(b)


def _machine_factor(common: pd.DataFrame) -> float:
    """B over A shared by most modules, or 1.0 when the modules did not move alike.

    Each module with a noticeable share votes once, whatever its size: one big layer that got
    worse must not pass for the machine.
    """
    a, b = common["energy_a_j"].to_numpy(float), common["energy_b_j"].to_numpy(float)
    share_a = a / a.sum() if a.sum() > 0 else a
    share_b = b / b.sum() if b.sum() > 0 else b
    vote = (a > 0) & (b > 0) & ((share_a >= _FACTOR_MIN_SHARE) | (share_b >= _FACTOR_MIN_SHARE))
    if vote.sum() < _FACTOR_MIN_VOTERS:
        return 1.0
    ratio = b[vote] / a[vote]
    factor = float(np.exp(np.median(np.log(ratio))))
    if abs(factor - 1.0) <= RUN_TO_RUN_REL:
        return 1.0
    alike = np.abs(ratio / factor - 1.0) <= RUN_TO_RUN_REL
    weight = a[vote] + b[vote]
    by_count = alike.mean() >= _FACTOR_MAJORITY
    by_energy = weight[alike].sum() >= _FACTOR_MAJORITY * weight.sum()
    return factor if by_count and by_energy else 1.0


def _change_columns() -> list[str]:
    return [f"energy_{side}{bound}_j" for side in "ab" for bound in ("", "_lo", "_hi")]


def _join(a: pd.DataFrame, b: pd.DataFrame, scale_a: float, scale_b: float) -> pd.DataFrame:
    keep = ["module", "type", *_BOUNDS]
    a, b = a[keep].copy(), b[keep].copy()
    # Startup happens once per run, whatever the steps: never per step.
    a.loc[a["module"] != STARTUP_MODULE, _BOUNDS] *= scale_a
    b.loc[b["module"] != STARTUP_MODULE, _BOUNDS] *= scale_b
    joined = a.merge(b, on="module", how="outer", suffixes=("_a", "_b"))
    joined["type"] = joined["type_b"].fillna(joined["type_a"]).fillna("")
    joined = joined.rename(
        columns={f"{c}_{s}": c.replace("energy", f"energy_{s}") for c in _BOUNDS for s in "ab"}
    )
    joined[_change_columns()] = joined[_change_columns()].fillna(0.0)
    joined["present_a"] = joined["module"].isin(a["module"])
    joined["present_b"] = joined["module"].isin(b["module"])
    return joined[["module", "type", "present_a", "present_b", *_change_columns()]]


def _verdict(change: Change, in_a: bool, in_b: bool) -> str:
    if not in_a:
        return "NEW, WORSE" if change.worse else "new"
    if not in_b:
        return "removed"
    if change.worse:
        return "WORSE"
    if change.better:
        return "better"
    return "~"


def _notes(
    a: Session,
    b: Session,
    per_step: bool,
    factor: float,
    coverage_a: float,
    coverage_b: float,
    shared: bool,
) -> list[str]:
    notes = []
    if a.estimated != b.estimated:
        which = "A" if a.estimated else "B"
        notes.append(
            f"run {which} is estimated and the other measured: the change includes the method"
        )
    elif a.estimated:
        notes.append("both runs are ESTIMATED")
    names_a = sorted(str(s.get("name")) for s in a.meta.get("sensors", []))
    names_b = sorted(str(s.get("name")) for s in b.meta.get("sensors", []))
    if names_a != names_b:
        notes.append(f"sensors differ: A {names_a or 'none'}, B {names_b or 'none'}")
    if per_step:
        notes.append(
            f"step counts differ (A {a.meta['steps']}, B {b.meta['steps']}): "
            "figures are joules per step"
        )
    notes.append(
        f"run-to-run variation taken as ±{100 * RUN_TO_RUN_REL:g}% of each figure "
        "(no per-step series in these runs to measure it from)"
    )
    if not shared:
        notes.append("the runs share no module: only the totals compare (--force)")
    elif coverage_a < 0.999 or coverage_b < 0.999:
        notes.append(
            f"modules in both runs hold {100 * coverage_a:.0f}% of A's energy and "
            f"{100 * coverage_b:.0f}% of B's; the rest is in modules new or removed"
        )
    if STARTUP_MODULE in set(a.layers()["module"]) | set(b.layers()["module"]):
        notes.append(f"{STARTUP_MODULE} is compared per run and never counts as a regression")
    if factor != 1.0:
        notes.append(
            f"every module moved by a similar factor (x{factor:.2f}): the machine changed "
            "(other load, clock speed), not the code; modules are judged against that factor"
        )
    return notes
