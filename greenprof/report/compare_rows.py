"""The two runs' module rows side by side, made comparable (per step when the steps differ)."""

from __future__ import annotations

import pandas as pd

from greenprof.schema import STARTUP_MODULE
from greenprof.session import Session

_BOUNDS = ["energy_j", "energy_lo_j", "energy_hi_j"]


def scales(a: Session, b: Session) -> tuple[float, float, bool]:
    """Multipliers that make the runs comparable: per step when their step counts differ."""
    steps_a, steps_b = a.meta.get("steps"), b.meta.get("steps")
    if isinstance(steps_a, int) and isinstance(steps_b, int) and steps_a > 0 and steps_b > 0:
        if steps_a != steps_b:
            return 1.0 / steps_a, 1.0 / steps_b, True
    return 1.0, 1.0, False


def share(joined: pd.DataFrame, mask: pd.Series, column: str) -> float:
    """Share of ``column``'s sum in the rows of ``mask`` (1.0 when the column sums to zero)."""
    total = float(joined[column].sum())
    return float(joined.loc[mask, column].sum()) / total if total > 0 else 1.0


def same_sensors(a: Session, b: Session) -> bool:
    """True when both runs used the same sensors, measured or estimated alike."""

    def kinds(s: Session) -> list[tuple[str, bool]]:
        return sorted((str(x.get("name")), bool(x.get("measured"))) for x in s.meta["sensors"])

    return bool(a.meta["sensors"]) and kinds(a) == kinds(b)


def change_columns() -> list[str]:
    """``energy_a_j, energy_a_lo_j, energy_a_hi_j`` and the same for B, in that order."""
    return [f"energy_{side}{bound}_j" for side in "ab" for bound in ("", "_lo", "_hi")]


def join(a: pd.DataFrame, b: pd.DataFrame, scale_a: float, scale_b: float) -> pd.DataFrame:
    """Return module rows of A and B side by side, scaled.

    Columns ``module, type, present_a, present_b`` and :func:`change_columns`; ``(startup)`` is
    never scaled: it happens once per run, whatever the steps.
    """
    keep = ["module", "type", *_BOUNDS]
    a, b = a[keep].copy(), b[keep].copy()
    a.loc[a["module"] != STARTUP_MODULE, _BOUNDS] *= scale_a
    b.loc[b["module"] != STARTUP_MODULE, _BOUNDS] *= scale_b
    joined = a.merge(b, on="module", how="outer", suffixes=("_a", "_b"))
    joined["type"] = joined["type_b"].fillna(joined["type_a"]).fillna("")
    joined = joined.rename(
        columns={f"{c}_{s}": c.replace("energy", f"energy_{s}") for c in _BOUNDS for s in "ab"}
    )
    joined[change_columns()] = joined[change_columns()].fillna(0.0)
    joined["present_a"] = joined["module"].isin(a["module"])
    joined["present_b"] = joined["module"].isin(b["module"])
    return joined[["module", "type", "present_a", "present_b", *change_columns()]]
