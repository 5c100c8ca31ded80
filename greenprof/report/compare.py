"""Per-module energy change between two runs, with uncertainty.

A module got *worse* only when its lower bound in run B is above its upper bound in run A: the
intervals do not overlap, so the change is more than the measurement can blur.

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
from greenprof.report.tables import module_rows
from greenprof.session import Session

_BOUNDS = ["energy_j", "energy_lo_j", "energy_hi_j"]


@dataclass(frozen=True)
class Change:
    """One quantity in run A and run B, and how it moved.

    Attributes:
        energy_a_j: joules in run A, with bounds ``energy_a_lo_j`` / ``energy_a_hi_j``.
        energy_b_j: joules in run B, with bounds ``energy_b_lo_j`` / ``energy_b_hi_j``.
    """

    energy_a_j: float
    energy_a_lo_j: float
    energy_a_hi_j: float
    energy_b_j: float
    energy_b_lo_j: float
    energy_b_hi_j: float

    @property
    def delta_j(self) -> float:
        """B minus A, in joules."""
        return self.energy_b_j - self.energy_a_j

    @property
    def delta_uncertainty_j(self) -> float:
        """The ``±`` of :attr:`delta_j`: the widest the two intervals allow."""
        return float(
            uncertainty_j(
                self.delta_j,
                self.energy_b_lo_j - self.energy_a_hi_j,
                self.energy_b_hi_j - self.energy_a_lo_j,
            )
        )

    @property
    def delta_pct(self) -> float:
        """Change relative to A in percent; NaN when A is zero."""
        return 100.0 * self.delta_j / self.energy_a_j if self.energy_a_j > 0 else math.nan

    @property
    def worse(self) -> bool:
        """True when B's lower bound exceeds A's upper bound."""
        return self.energy_b_lo_j > self.energy_a_hi_j

    @property
    def better(self) -> bool:
        """True when B's upper bound is below A's lower bound."""
        return self.energy_b_hi_j < self.energy_a_lo_j


@dataclass
class Comparison:
    """Run A against run B.

    Attributes:
        label_a: what run A is called in output (its directory, usually).
        label_b: likewise for run B.
        total: the change of the whole-run energy.
        rows: one row per module (see :func:`compare_sessions`).
        notes: caveats, e.g. that one run is estimated and the other measured.
    """

    label_a: str
    label_b: str
    total: Change
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def worse(self, threshold_pct: float = 0.0) -> pd.DataFrame:
        """Return modules that got worse beyond uncertainty and by more than ``threshold_pct``.

        A module new in B counts when it is worse beyond uncertainty, whatever the threshold.
        """
        rows = self.rows
        above = rows["delta_pct"].isna() | (rows["delta_pct"] > threshold_pct)
        return rows[rows["worse"] & above].reset_index(drop=True)


def compare_sessions(a: Session, b: Session, label_a: str = "A", label_b: str = "B") -> Comparison:
    """Return the per-module change of self energy (all phases) from run ``a`` to run ``b``.

    Returns:
        A :class:`Comparison` whose ``rows`` hold ``module, type, energy_a_j, energy_a_lo_j,
        energy_a_hi_j, energy_b_j, energy_b_lo_j, energy_b_hi_j, delta_j, delta_uncertainty_j,
        delta_pct, worse, better, verdict``, worse modules first, then by size of change.
    """
    joined = _join(module_rows(a), module_rows(b))
    changes = [Change(*values) for values in joined[_change_columns()].itertuples(index=False)]
    joined["delta_j"] = [c.delta_j for c in changes]
    joined["delta_uncertainty_j"] = [c.delta_uncertainty_j for c in changes]
    joined["delta_pct"] = [c.delta_pct for c in changes]
    joined["worse"] = [c.worse for c in changes]
    joined["better"] = [c.better for c in changes]
    joined["verdict"] = [
        _verdict(c, in_a, in_b)
        for c, in_a, in_b in zip(changes, joined["present_a"], joined["present_b"], strict=True)
    ]
    joined["_size"] = np.abs(joined["delta_j"])
    rows = joined.sort_values(["worse", "_size", "module"], ascending=[False, False, True])
    total = Change(
        a.total_energy_j,
        a.total_energy_lo_j,
        a.total_energy_hi_j,
        b.total_energy_j,
        b.total_energy_lo_j,
        b.total_energy_hi_j,
    )
    rows = rows.drop(columns="_size").reset_index(drop=True)
    return Comparison(label_a, label_b, total, rows, _notes(a, b))


def _change_columns() -> list[str]:
    return [f"energy_{side}{bound}_j" for side in "ab" for bound in ("", "_lo", "_hi")]


def _join(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    keep = ["module", "type", *_BOUNDS]
    joined = a[keep].merge(b[keep], on="module", how="outer", suffixes=("_a", "_b"))
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
        return "gone"
    if change.worse:
        return "WORSE"
    if change.better:
        return "better"
    return "~"


def _notes(a: Session, b: Session) -> list[str]:
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
    return notes
