"""HTML report sections that split a run: per rank (several processes) and per region."""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd

from greenprof.report.tables import display_name, module_rows, region_rows
from greenprof.report.units import format_duration, format_energy, format_plus, format_share
from greenprof.session import Session

#: Layers listed under each region.
REGION_TOP_LAYERS = 5


def ranks_html(session: Session) -> str:
    """Energy, time and steps of each rank, their spread, and the ranks that wrote nothing.

    ``""`` for a run of one process.
    """
    ranks = session.by_rank()
    missing = [int(r) for r in session.meta.get("missing_ranks") or []]
    if len(ranks) + len(missing) <= 1:
        return ""
    est = " (estimated)" if session.estimated else ""
    rows = [
        [
            str(r.rank),
            str(r.host or ""),
            _amount(r.energy_j, r.energy_lo_j, r.energy_hi_j),
            format_duration(float(r.duration_s)),
            _steps(r.steps),
            _per_step(r.energy_j, r.steps),
        ]
        for r in ranks.itertuples()
    ]
    rows += [[str(r), "", "wrote no part", "", "", ""] for r in missing]
    table = _table(
        ["rank", "host", f"energy{est}", "duration", "steps", f"per step{est}"], rows, "ranks"
    )
    notes = [_spread(ranks)]
    if missing:
        notes.append(
            f"Rank(s) {', '.join(map(str, missing))} of {session.meta.get('world_size', '?')} "
            "wrote no part (crashed, killed or still running): their joules are missing from "
            "every figure in this report."
        )
    return table + "".join(f"<p class=sub>{html.escape(n)}</p>" for n in notes if n)


def regions_html(session: Session) -> str:
    """Per region: its energy with uncertainty, share, time and top layers; ``""`` without any."""
    regions = region_rows(session)
    if regions.empty:
        return ""
    est = " (estimated)" if session.estimated else ""
    total = session.total_energy_j
    rows = []
    for r in regions.itertuples():
        top = module_rows(session, regions=[r.region]).head(REGION_TOP_LAYERS)
        rows.append(
            [
                r.region or "(outside any region)",
                _amount(r.energy_j, r.energy_lo_j, r.energy_hi_j),
                format_share(r.energy_j / total) if total > 0 else "",
                format_duration(float(r.time_s)),
                ", ".join(
                    f"{display_name(m.module)} {format_energy(m.energy_j)}"
                    for m in top.itertuples()
                ),
            ]
        )
    return _table(
        ["region", f"energy{est}", "share", "time", f"top layers (self energy{est})"],
        rows,
        "regions",
    ) + (
        "<p class=sub>Joules and self time of the layer rows that ran inside each region "
        "(the innermost one), with their 95% interval.</p>"
    )


def _spread(ranks: pd.DataFrame) -> str:
    """One sentence on how far the ranks are apart: the straggler and the energy range."""
    if len(ranks) < 2:
        return ""
    duration = ranks["duration_s"].astype(float)
    slowest = ranks.loc[duration.idxmax()]
    median_s = float(duration.median())
    text = (
        f"Duration from {format_duration(float(duration.min()))} to "
        f"{format_duration(float(duration.max()))} (slowest: rank {int(slowest['rank'])}"
    )
    if median_s > 0:
        text += f", {float(slowest['duration_s']) / median_s - 1:+.0%} against the median"
    energy = ranks["energy_j"].astype(float)
    return (
        text + f"); energy per rank from {format_energy(float(energy.min()))} to "
        f"{format_energy(float(energy.max()))} (a rank that owns no sensor shows 0 J)."
    )


def _amount(energy_j: float, lo_j: float, hi_j: float) -> str:
    return f"{format_energy(float(energy_j))} {format_plus(energy_j, lo_j, hi_j)}".rstrip()


def _steps(steps: object) -> str:
    return str(_count(steps)) if _count(steps) else ""


def _per_step(energy_j: float, steps: object) -> str:
    return format_energy(float(energy_j) / _count(steps)) if _count(steps) else ""


def _count(steps: object) -> int:
    """Steps as a whole number; 0 where none were counted (None or NaN from the table)."""
    try:
        return max(int(float(steps)), 0)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f"<div class=scroll><table id={table_id}><thead><tr>{head}</tr></thead>\n<tbody>\n"
        f"{body}\n</tbody></table></div>"
    )
