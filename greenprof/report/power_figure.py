"""The per-layer power chart: watts per (module, phase) row with its 95 % interval.

Energy adds this over a time profile: where compute-bound and memory-bound layers draw different
power, their joules are not in proportion to their time.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from greenprof.report.figures import PHASE_COLORS, _estimated_title, _shorten
from greenprof.report.tables import display_name
from greenprof.schema import OUTSIDE_MODULE
from greenprof.session import Session

#: How each row's power was measured, as the chart's hatching shows it.
METHOD_HATCH = {"replayed": "", "shared signature": "//", "fit": "..", "time split": "xx"}


def layer_power_figure(session: Session, n: int = 20) -> Figure:
    """Horizontal bars of the power of the ``n`` rows with most energy, whiskers at the interval.

    Bars are coloured by phase and hatched by how the power was measured (solid: replayed alone).
    """
    layers = session.layers()
    layers = layers[(layers["module"] != OUTSIDE_MODULE) & (layers["time_s"] > 0)].head(n)
    figure = Figure(figsize=(10, 0.32 * max(len(layers), 3) + 1.4), layout="constrained")
    axes = figure.subplots()
    rows = np.arange(len(layers))
    for row, r in zip(rows, layers.itertuples(), strict=True):
        axes.barh(
            row,
            r.power_w,
            color=PHASE_COLORS.get(r.phase, "#9D9D9D"),
            hatch=METHOD_HATCH.get(r.method, ""),
            edgecolor="white",
        )
    if len(layers):
        power = layers["power_w"].to_numpy()
        below = np.maximum(power - layers["power_lo_w"].to_numpy(), 0.0)
        above = np.maximum(layers["power_hi_w"].to_numpy() - power, 0.0)
        axes.errorbar(power, rows, xerr=[below, above], fmt="none", ecolor="#333", capsize=2)
    labels = [
        f"{_shorten(display_name(r.module))} {r.phase[:3]}"
        + (f" [{r.method}]" if r.method and r.method != "replayed" else "")
        for r in layers.itertuples()
    ]
    axes.set_yticks(rows, labels)
    axes.invert_yaxis()
    axes.set_xlim(left=0)
    unit = "W, estimated" if session.estimated else "W"
    axes.set_xlabel(f"power while the layer runs ({unit})")
    axes.set_title(_estimated_title(f"Power of the top {len(layers)} layers", session))
    axes.grid(axis="x", alpha=0.3)
    return figure
