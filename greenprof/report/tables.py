"""Session data shaped for display: the rows every renderer shows, computed in one place."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from greenprof.attribute.tree import self_per_module
from greenprof.attribute.uncertainty import is_noise, uncertainty_j
from greenprof.report.units import format_duration, format_energy
from greenprof.session import PHASES, Session

ROOT_LABEL = "(root)"


def display_name(module: str) -> str:
    """Return how a qualified module name is shown: the root ``""`` reads ``(root)``."""
    return module if module else ROOT_LABEL


def module_rows(
    session: Session,
    phases: Iterable[str] | None = None,
    regions: Iterable[str] | None = None,
    *,
    by_rank: bool = False,
) -> pd.DataFrame:
    """Return self energy per module over the chosen phases and regions, highest first.

    Args:
        session: the profile.
        phases: phases to include; all when ``None``.
        regions: regions to include ("" is outside any region); all when ``None``.
        by_rank: one row per (rank, module), with a ``rank`` column (see ``Session.layers``).

    Returns:
        Columns ``module, type, calls, time_s, energy_j, energy_lo_j, energy_hi_j, share,
        uncertainty_j, noise``; ``calls`` as :func:`greenprof.attribute.tree.self_per_module` counts
        them, ``share`` of the session's total energy.
    """
    layers = session.layers(by_rank=by_rank)
    if phases is not None:
        layers = layers[layers["phase"].isin(list(phases))]
    if regions is not None:
        layers = layers[layers["region"].isin(list(regions))]
    if by_rank:
        per_rank = [
            self_per_module(rows).reset_index().assign(rank=rank)
            for rank, rows in layers.groupby("rank", sort=True)
        ]
        rows = (
            pd.concat(per_rank, ignore_index=True)
            if per_rank
            else self_per_module(layers).reset_index().assign(rank=0)
        )
    else:
        rows = self_per_module(layers).reset_index()
    order = ["energy_j", "rank", "module"] if by_rank else ["energy_j", "module"]
    return _with_derived(rows, session.total_energy_j).sort_values(
        order, ascending=[False] + [True] * (len(order) - 1), ignore_index=True
    )


def layer_rows(session: Session) -> pd.DataFrame:
    """Return one row per (module, phase) with share, joules per call and uncertainty."""
    rows = session.layers()
    rows = _with_derived(rows, session.total_energy_j)
    calls = rows["calls"].to_numpy(dtype=float)
    rows["energy_per_call_j"] = np.divide(
        rows["energy_j"].to_numpy(dtype=float),
        calls,
        out=np.full(len(rows), np.nan),
        where=calls > 0,
    )
    return rows.sort_values(["energy_j", "module"], ascending=[False, True], ignore_index=True)


def region_rows(session: Session) -> pd.DataFrame:
    """Return energy and time per region ("" outside any), highest first; empty without any."""
    layers = session.layers()
    if not (layers["region"] != "").any():
        return layers.iloc[0:0][["region", "time_s", "energy_j", "energy_lo_j", "energy_hi_j"]]
    grouped = layers.groupby("region", as_index=False)[
        ["time_s", "energy_j", "energy_lo_j", "energy_hi_j"]
    ].sum()
    return grouped.sort_values("energy_j", ascending=False, ignore_index=True)


def phase_matrix(session: Session, n: int) -> pd.DataFrame:
    """Return the ``n`` modules with most self energy as rows, phases as columns, in joules."""
    layers = session.layers()
    top = module_rows(session)["module"].head(n)
    pivot = layers[layers["module"].isin(top)].pivot_table(
        index="module", columns="phase", values="energy_j", aggfunc="sum", fill_value=0.0
    )
    columns = [p for p in PHASES if p in pivot.columns]
    return pivot.reindex(index=list(top), columns=columns, fill_value=0.0)


def sensor_rows(session: Session) -> list[dict[str, object]]:
    """Return the sensors of a run, each with a ``label`` of MEASURED, ESTIMATED or FAILED."""
    sensors = []
    for sensor in session.meta.get("sensors", []):
        if not isinstance(sensor, dict):
            continue
        row = dict(sensor)
        if row.get("failed"):
            row["label"] = "FAILED"
        else:
            row["label"] = "MEASURED" if row.get("measured") else "ESTIMATED"
        sensors.append(row)
    return sensors


def _with_derived(rows: pd.DataFrame, total_energy_j: float) -> pd.DataFrame:
    rows = rows.copy()
    bounds = (rows["energy_j"], rows["energy_lo_j"], rows["energy_hi_j"])
    rows["share"] = rows["energy_j"] / total_energy_j if total_energy_j > 0 else 0.0
    rows["uncertainty_j"] = uncertainty_j(*(b.to_numpy(dtype=float) for b in bounds))
    rows["noise"] = is_noise(*(b.to_numpy(dtype=float) for b in bounds))
    return rows


def calibration_text(meta: dict[str, object]) -> str | None:
    """How the per-layer powers were measured, in one line (None for runs that predate it)."""
    facts = meta.get("calibration")
    if not isinstance(facts, dict):
        return None
    if not facts.get("calibrated"):
        return str(facts.get("note") or "not calibrated")
    replayed = facts.get("replayed") or []
    shared = facts.get("shared") or {}
    text = (
        f"{len(replayed)} modules replayed alone after the run"
        + (f", {len(shared)} sharing a replayed module's power" if shared else "")
        + f", in {format_duration(float(facts.get('seconds', 0.0)))}"
    )
    energy = facts.get("energy_j")
    if isinstance(energy, (int, float)) and not isinstance(energy, bool):
        text += f" ({format_energy(float(energy))}, charged to no row)"
    return text
