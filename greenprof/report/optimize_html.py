"""The optimize report: what was tried, what was kept, and the joules before and after.

One self-contained HTML file (inline CSS, inline SVG figure, no network), in the look of the run
report. Every string from the user's model or run (module names, reasons, errors) is escaped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.figure import Figure

from greenprof.attribute.uncertainty import uncertainty_j
from greenprof.report import figures
from greenprof.report.html import (
    PAGE_CSS,
    SORT_JS,
    card_section,
    escape_text,
    num_cell,
    section,
    text_cell,
)
from greenprof.report.tables import display_name
from greenprof.report.units import format_energy, format_plus, format_share
from greenprof.version import __version__

if TYPE_CHECKING:
    from greenprof.optimize_result import OptimizeResult, Step

logger = logging.getLogger(__name__)

KEPT_COLOR = "#1b6b34"
REJECTED_COLOR = "#9d9d9d"
FAILED_COLOR = "#9b1c1c"


def render_optimize_html(result: OptimizeResult) -> str:
    """Return the report of an optimize run as one self-contained HTML document."""
    estimated = " (ESTIMATED)" if result.estimated else ""
    body = "\n".join(
        [
            _heading(result),
            _cards(result),
            section(f"Energy versus metric{estimated}", _chart(result)),
            section(f"Every change tried{estimated}", _steps_table(result)),
            section(f"Per layer, before and after{estimated}", _layers_table(result)),
            f"<footer><p class=sub>greenprof {escape_text(__version__)}</p></footer>",
        ]
    )
    return (
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        '<meta name=viewport content="width=device-width,initial-scale=1">\n'
        f"<title>greenprof optimize{escape_text(estimated)}</title>\n"
        f"<style>{PAGE_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n<script>{SORT_JS}</script>\n</body>\n</html>\n"
    )


def _heading(result: OptimizeResult) -> str:
    lines = [
        "<h1>greenprof optimize</h1>",
        f"<p class=sub>{escape_text(result.before.meta.get('command', ''))}</p>",
    ]
    if result.estimated:
        lines.append(
            "<p class=alert><b>ESTIMATED.</b> No hardware energy counter was readable: joules are "
            "estimated from CPU time and a rated power. Differences between the models are still "
            "meaningful for the CPU work; absolute joules are estimates.</p>"
        )
    if result.error:
        lines.append(f"<p class=alert><b>Stopped early:</b> {escape_text(result.error)}</p>")
    return "\n".join(lines)


def _cards(result: OptimizeResult) -> str:
    unit = " (estimated)" if result.estimated else ""
    kept = len(result.accepted)
    cards = [
        (
            f"Before, per {result.per}{unit}",
            format_energy(result.energy_before_j),
            _range(result.energy_before_lo_j, result.energy_before_hi_j),
        ),
        (
            f"After, per {result.per}{unit}",
            format_energy(result.energy_after_j),
            _range(result.energy_after_lo_j, result.energy_after_hi_j),
        ),
        (
            f"Saved{unit}",
            format_share(result.saving),
            f"{format_share(result.saving_lo)} to {format_share(result.saving_hi)}",
        ),
        (
            "Metric",
            f"{result.metric_before:.4g} → {result.metric_after:.4g}",
            f"allowed drop {result.allowed_drop:.4g}",
        ),
        ("Changes", f"{kept} kept of {len(result.history)}", f"stopped: {result.stopped}"),
    ]
    return card_section(cards)


def _range(lo_j: float, hi_j: float) -> str:
    return f"95% interval {format_energy(lo_j)} to {format_energy(hi_j)}"


def _chart(result: OptimizeResult) -> str:
    caption = (
        f"Each tried change: joules per {result.per} after it (with its 95% interval) against "
        "the metric. Green: kept; grey: rejected. The dashed line is the worst metric allowed; "
        "the black diamond is the original model."
    )
    try:
        uri = figures.to_data_uri(energy_metric_figure(result))
    except Exception:  # a figure that fails must not cost the user the whole report
        logger.exception("energy/metric figure failed")
        return "<p>The figure could not be drawn.</p>"
    return (
        f"<figure><img src='{uri}' alt='{escape_text(caption)}'>"
        f"<figcaption>{escape_text(caption)}</figcaption></figure>"
    )


def energy_metric_figure(result: OptimizeResult) -> Figure:
    """Draw energy per call (x) against the metric (y) for the original and every tried change."""
    figure = Figure(figsize=(7.5, 4.2))
    axes = figure.add_subplot()
    axes.errorbar(
        [result.energy_before_j],
        [result.metric_before],
        xerr=[
            [result.energy_before_j - result.energy_before_lo_j],
            [result.energy_before_hi_j - result.energy_before_j],
        ],
        fmt="D",
        color="black",
        label="original",
    )
    for step in result.history:
        if step.energy_after_j is None or step.metric_after is None:
            continue
        color = KEPT_COLOR if step.accepted else REJECTED_COLOR
        axes.errorbar(
            [step.energy_after_j],
            [step.metric_after],
            xerr=[
                [step.energy_after_j - (step.energy_after_lo_j or step.energy_after_j)],
                [(step.energy_after_hi_j or step.energy_after_j) - step.energy_after_j],
            ],
            fmt="o",
            color=color,
        )
        axes.annotate(
            str(step.index),
            (step.energy_after_j, step.metric_after),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    kept = [(result.energy_before_j, result.metric_before)] + [
        (s.energy_after_j, s.metric_after) for s in result.history if s.accepted
    ]
    axes.plot(*zip(*kept, strict=True), color=KEPT_COLOR, linewidth=1, alpha=0.6, label="kept path")
    limit = result.metric_before + (
        -result.allowed_drop if result.higher_is_better else result.allowed_drop
    )
    axes.axhline(limit, linestyle="--", color=FAILED_COLOR, linewidth=1, label="worst allowed")
    unit = f"J per {result.per}" + (" (estimated)" if result.estimated else "")
    axes.set_xlabel(unit)
    axes.set_ylabel(
        "metric" + (" (higher is better)" if result.higher_is_better else " (lower is better)")
    )
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes.grid(alpha=0.3)
    return figure


def _steps_table(result: OptimizeResult) -> str:
    if not result.history:
        return "<p>No change was tried.</p>"
    headers = [
        ("#", "num"),
        ("change", "text"),
        ("parameters", "text"),
        ("layers", "num"),
        (f"before ({_short(result)})", "num"),
        (f"after ({_short(result)})", "num"),
        ("±", "num"),
        ("saved", "num"),
        ("metric", "num"),
        ("kept", "text"),
        ("why", "text"),
        ("seconds", "num"),
    ]
    rows = "\n".join(_step_row(step) for step in result.history)
    return _table("steps", headers, rows, f"Energies are joules per {result.per}, 95% intervals.")


def _short(result: OptimizeResult) -> str:
    """The energy unit in a column heading: ``J/call`` or ``J/new token``."""
    return "J/new token" if result.objective == "j-per-token" else "J/call"


def _step_row(step: Step) -> str:
    params = ", ".join(f"{k}={v}" for k, v in step.params.items())
    if step.distill_steps:
        params += f"{', ' if params else ''}distilled {step.distill_steps} steps"
    after = step.energy_after_j if step.energy_after_j is not None else math.nan
    lo = step.energy_after_lo_j if step.energy_after_lo_j is not None else after
    hi = step.energy_after_hi_j if step.energy_after_hi_j is not None else after
    plus = float(uncertainty_j(after, lo, hi))
    saving = step.saving if step.saving is not None else math.nan
    metric = step.metric_after if step.metric_after is not None else math.nan
    targets = ", ".join(display_name(t) for t in step.targets)
    cells = [
        num_cell(step.index, str(step.index)),
        text_cell(step.label),
        text_cell(params),
        f"<td class=n data-v='{len(step.targets)}' title='{escape_text(targets)}'>"
        f"{len(step.targets)}</td>",
        num_cell(step.energy_before_j, format_energy(step.energy_before_j)),
        num_cell(after, _maybe(after, format_energy)),
        num_cell(plus, format_plus(after, lo, hi) if not math.isnan(after) else ""),
        num_cell(saving, _maybe(saving, format_share)),
        num_cell(metric, _maybe(metric, lambda v: f"{v:.4g}")),
        text_cell("yes" if step.accepted else "no"),
        f"<td style='min-width:22em'>{escape_text(step.reason)}</td>",
        num_cell(step.seconds, f"{step.seconds:.1f}"),
    ]
    style = f" style='color:{KEPT_COLOR};font-weight:600'" if step.accepted else ""
    return f"<tr{style}>{''.join(cells)}</tr>"


def _layers_table(result: OptimizeResult) -> str:
    rows = per_layer_change(result)
    headers = [
        ("module", "text"),
        ("type before", "text"),
        ("type after", "text"),
        ("before (J/call)", "num"),
        ("after (J/call)", "num"),
        ("change", "num"),
    ]
    body = "\n".join(
        "<tr>"
        + text_cell(display_name(r.module))
        + text_cell(r.type_before)
        + text_cell(r.type_after)
        + num_cell(r.before_j, _maybe(r.before_j, format_energy))
        + num_cell(r.after_j, _maybe(r.after_j, format_energy))
        + num_cell(r.change_j, _maybe(r.change_j, format_energy))
        + "</tr>"
        for r in rows.itertuples()
    )
    return _table(
        "layers",
        headers,
        body,
        "Self energy per module, all phases, per workload call. A module missing on one side "
        "was removed, replaced or added by a change.",
    )


def per_layer_change(result: OptimizeResult) -> pd.DataFrame:
    """Self joules per workload call of each module before and after, hottest-before first."""
    sides = []
    for session, repeats, side in (
        (result.before, result.meta.get("repeats_before", 1), "before"),
        (result.after, result.meta.get("repeats_after", 1), "after"),
    ):
        frame = session.by_module()[["module", "type", "energy_j"]]
        frame = frame.assign(energy_j=frame["energy_j"] / max(int(repeats or 1), 1))
        sides.append(frame.rename(columns={"type": f"type_{side}", "energy_j": f"{side}_j"}))
    merged = sides[0].merge(sides[1], on="module", how="outer")
    merged["change_j"] = merged["after_j"].fillna(0.0) - merged["before_j"].fillna(0.0)
    merged[["type_before", "type_after"]] = merged[["type_before", "type_after"]].fillna("")
    return merged.sort_values("before_j", ascending=False, na_position="last").reset_index(
        drop=True
    )


def _table(name: str, headers: list[tuple[str, str]], body: str, note: str) -> str:
    head = "".join(
        f"<th data-type={kind}{' class=n' if kind == 'num' else ''}>{escape_text(title)}</th>"
        for title, kind in headers
    )
    return (
        f"<div class=scroll><table class=sortable id={name}>"
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>"
        f"<p class=sub>{escape_text(note)}</p>"
    )


def _maybe(value: float, fmt: Callable[[float], str]) -> str:
    return "" if math.isnan(value) else fmt(value)
