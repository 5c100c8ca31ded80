"""Plain-text tables for the terminal: the session summary, ``greenprof top`` and ``compare``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from greenprof.report.generation import generation_lines
from greenprof.report.tables import (
    calibration_text,
    display_name,
    module_rows,
    region_rows,
    sensor_rows,
)
from greenprof.report.units import (
    format_duration,
    format_energy,
    format_plus,
    format_share,
)
from greenprof.session import Session

if TYPE_CHECKING:
    from greenprof.report.compare import Comparison


def render_summary(
    session: Session,
    n: int = 10,
    phases: Iterable[str] | None = None,
    regions: Iterable[str] | None = None,
    by_rank: bool = False,
) -> str:
    """Return a terminal table of the ``n`` modules with most self energy.

    Args:
        session: the profile.
        n: how many modules to list.
        phases: restrict to these phases (``forward``, ``backward``, ...); all when ``None``.
        regions: restrict to these regions ("" is outside any region); all when ``None``.
        by_rank: one row per (rank, module), with a rank column, for runs of several ranks.

    Returns:
        Text: a header with totals and sensors (saying ESTIMATED where anything is estimated),
        the table (energy, ±uncertainty, share of the total, self time, calls) and warnings.
    """
    phases = list(phases) if phases is not None else None
    regions = list(regions) if regions is not None else None
    rows = module_rows(session, phases, regions, by_rank=by_rank)
    lines = _header(session, phases, regions)
    table = [
        [
            *([str(r.rank)] if by_rank else []),
            format_energy(r.energy_j),
            format_plus(r.energy_j, r.energy_lo_j, r.energy_hi_j),
            format_share(r.share),
            format_duration(r.time_s),
            str(r.calls),
            f"{display_name(r.module)} ({r.type})" if r.type else display_name(r.module),
            "noise" if r.noise else "",
        ]
        for r in rows.head(n).itertuples()
    ]
    headers = [*(["rank"] if by_rank else []), "energy", "±", "share", "time", "calls"]
    lines += _table([*headers, "module (type)", ""], table, right=len(headers))
    if len(rows) > n:
        rest = rows.iloc[n:]
        lines.append(
            f"... {len(rest)} more {'rows' if by_rank else 'modules'}, "
            f"{format_energy(rest['energy_j'].sum())} ({format_share(rest['share'].sum())})"
        )
    lines += generation_lines(session)
    lines += warning_lines(session.warnings)
    return "\n".join(lines)


#: The terminal shows at most this many warnings; the report and session.json keep all.
MAX_WARNING_LINES = 5


def warning_lines(warnings: list[str]) -> list[str]:
    """At most :data:`MAX_WARNING_LINES` warnings, then a pointer to where the rest are."""
    shown = [f"warning: {w}" for w in warnings[:MAX_WARNING_LINES]]
    if len(warnings) > MAX_WARNING_LINES:
        shown.append(
            f"... {len(warnings) - MAX_WARNING_LINES} more warnings in the HTML report "
            "(and session.json)"
        )
    return shown


def render_comparison(
    comparison: Comparison, n: int = 20, threshold_pct: float | None = None
) -> str:
    """Return a terminal table of per-module changes from run A to run B.

    Modules that got worse beyond their uncertainty and by more than ``threshold_pct`` (default:
    the comparison's) come first, marked ``WORSE``; then the largest changes, each with its
    verdict (``within noise``, ``below threshold``, ``machine``, ``better``, ``new``,
    ``removed``, ``once``).
    """
    if threshold_pct is None:
        threshold_pct = comparison.threshold_pct
    rows = comparison.rows
    total = comparison.total
    unit = "/step" if comparison.per_step else ""
    amount_a = _amount(total.energy_a_j, total.energy_a_lo_j, total.energy_a_hi_j) + unit
    amount_b = _amount(total.energy_b_j, total.energy_b_lo_j, total.energy_b_hi_j) + unit
    if comparison.machine_factor != 1.0:
        verdict = "(the machine's change: every module alike)"
    elif total.worse(threshold_pct):
        verdict = "WORSE"
    else:
        verdict = "better" if total.better else "(within uncertainty and threshold)"
    label = "total per step" if comparison.per_step else "total"
    lines = [
        f"A: {comparison.label_a}  {amount_a}",
        f"B: {comparison.label_b}  {amount_b}",
        f"{label}: {_delta(total.delta_j, total.delta_uncertainty_j, total.delta_pct)} {verdict}",
    ]
    lines += [f"note: {note}" for note in comparison.notes]
    table = [
        [
            format_energy(r.energy_a_j),
            format_energy(r.energy_b_j),
            _delta(r.delta_j, r.delta_uncertainty_j),
            "" if math.isnan(r.delta_pct) else f"{r.delta_pct:+.1f}%",
            r.verdict,
            display_name(r.module),
        ]
        for r in rows.head(n).itertuples()
    ]
    lines += _table(["A", "B", "Δ", "Δ%", "", "module"], table, right=4)
    if len(rows) > n:
        lines.append(f"... {len(rows) - n} more modules")
    for verdict, what in (("new", "new in B"), ("removed", "removed in B")):
        listed = rows[rows["verdict"].str.lower().str.startswith(verdict)]["module"]
        if len(listed):
            names = ", ".join(display_name(m) for m in listed.head(5))
            more = f" and {len(listed) - 5} more" if len(listed) > 5 else ""
            lines.append(f"{what}: {names}{more}")
    worse = comparison.worse(threshold_pct)
    above = f" and by more than {threshold_pct:g}%" if threshold_pct > 0 else ""
    if len(worse):
        names = ", ".join(display_name(m) for m in worse["module"].head(5))
        more = f" and {len(worse) - 5} more" if len(worse) > 5 else ""
        lines.append(f"{len(worse)} module(s) got worse beyond uncertainty{above}: {names}{more}")
    else:
        lines.append(f"no module got worse beyond uncertainty{above}")
    return "\n".join(lines)


def _header(
    session: Session, phases: list[str] | None, regions: list[str] | None = None
) -> list[str]:
    meta = session.meta
    total = session.total_energy_j
    kind = "ESTIMATED" if session.estimated else "measured"
    amount = _amount(total, session.total_energy_lo_j, session.total_energy_hi_j)
    first = f"greenprof: {amount} {kind} in {format_duration(session.duration_s)}"
    steps = meta.get("steps")
    if isinstance(steps, int) and steps > 0:
        first += f", {steps} steps, {format_energy(total / steps)}/step"
    sensors = ", ".join(f"{s.get('name', '?')} {s['label']}" for s in sensor_rows(session))
    lines = [first, f"sensors: {sensors or 'none (ESTIMATED)'}"]
    if meta.get("command"):
        lines.append(f"command: {meta['command']}")
    calibration = calibration_text(meta)
    if calibration:
        lines.append(f"calibration: {calibration}")
    if phases is not None:
        lines.append(f"phases: {', '.join(phases)}")
    per_region = region_rows(session)
    if len(per_region):
        parts = [
            f"{r.region or '(none)'} {_amount(r.energy_j, r.energy_lo_j, r.energy_hi_j)}"
            for r in per_region.itertuples()
        ]
        lines.append(f"regions: {', '.join(parts)}")
    if regions is not None:
        lines.append(f"showing regions: {', '.join(r or '(none)' for r in regions)}")
    lines.append("")
    return lines


def _amount(energy_j: float, energy_lo_j: float, energy_hi_j: float) -> str:
    plus = format_plus(energy_j, energy_lo_j, energy_hi_j)
    return f"{format_energy(energy_j)} {plus}" if plus else format_energy(energy_j)


def _delta(delta_j: float, plus_j: float, pct: float = math.nan) -> str:
    sign = "+" if delta_j >= 0 else "-"
    text = f"{sign}{format_energy(abs(delta_j))} ±{format_energy(plus_j)}"
    return text if math.isnan(pct) else f"{text} ({pct:+.1f}%)"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: int) -> list[str]:
    """Return aligned lines; the first ``right`` columns are numbers and align right."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i < right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]
