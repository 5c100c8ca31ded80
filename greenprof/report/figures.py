"""The report's figures, drawn with matplotlib (no pyplot, so no global state or GUI backend).

Each ``*_figure`` function returns a :class:`matplotlib.figure.Figure`; :func:`to_data_uri` turns
one into an ``<img>``-ready SVG data URI. Sizes do not grow with run length: power curves are
downsampled and tiny tree nodes are left out.
"""

from __future__ import annotations

import base64
import io
import zlib
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from greenprof.report.power import phase_intervals, power_w, sensor_series
from greenprof.report.tables import display_name, module_rows, phase_matrix, sensor_rows
from greenprof.report.units import format_energy
from greenprof.session import Session

#: One colour per phase, the same in every figure.
PHASE_COLORS = {
    "forward": "#4C78A8",
    "backward": "#F58518",
    "optimizer": "#54A24B",
    "other": "#9D9D9D",
}
#: Most points drawn per power curve: about one per pixel of the plot, and small as SVG.
MAX_POWER_POINTS = 600
#: Tree nodes narrower than this share of the total are left out (with their children).
MIN_TREE_SHARE = 0.002

_SHADED = ("forward", "backward", "optimizer")
# Width of the tree's axes and of one 7 pt character, in points: enough to decide what fits.
_AXES_WIDTH_PT = 650.0
_CHAR_PT = 4.3
_RC = {"svg.fonttype": "none", "svg.hashsalt": "greenprof", "font.size": 9}


def to_data_uri(figure: Figure) -> str:
    """Return ``figure`` as an SVG ``data:`` URI (text kept as text, no timestamp inside)."""
    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def power_figure(session: Session) -> Figure:
    """Return power over time per sensor, with the traced steps' phases shaded.

    Power is the derivative of each sensor's cumulative energy, averaged over bins no finer than
    the sensor updates. When the span trace covers only the start of a long run, a second panel
    zooms into it so the phases can be seen.
    """
    series = sensor_series(session.samples())
    spans = session.spans()
    shading = phase_intervals(spans, _SHADED)
    trace = (float(spans["t0_s"].min()), float(spans["t1_s"].max())) if len(spans) else None
    duration_s = max(session.duration_s, max((t[-1] for t, _ in series.values()), default=0.0))
    zoom = trace is not None and duration_s > 0 and (trace[1] - trace[0]) < 0.25 * duration_s
    figure = Figure(figsize=(10, 6.2 if zoom else 3.6), layout="constrained")
    axes = figure.subplots(2 if zoom else 1, 1, squeeze=False)[:, 0]
    labels = _sensor_labels(session)
    calibration = session.meta.get("calibration")
    if isinstance(calibration, dict) and calibration.get("calibrated"):
        # The sensors kept reading while the layers were replayed after the run.
        end_s = session.duration_s + float(calibration.get("seconds", 0.0))
        axes[0].axvspan(
            session.duration_s, end_s, color="#9D9D9D", alpha=0.15, label="calibration (no row)"
        )
    _draw_power(axes[0], series, labels, shading, None)
    axes[0].set_title(_estimated_title("Power over time", session))
    if zoom:
        _draw_power(axes[1], series, labels, shading, trace)
        axes[1].set_title("Zoom: the traced steps, phases shaded")
    return figure


def phase_stack_figure(session: Session, n: int = 15) -> Figure:
    """Return horizontal bars of the ``n`` modules with most self energy, split by phase.

    A whisker on each bar spans the module's energy interval (all phases).
    """
    matrix = phase_matrix(session, n)
    bounds = module_rows(session).set_index("module").reindex(matrix.index)
    figure = Figure(figsize=(10, 0.32 * max(len(matrix), 3) + 1.2), layout="constrained")
    axes = figure.subplots()
    # Numeric positions: two long names shortened alike must still get a bar each.
    rows = np.arange(len(matrix))
    left = np.zeros(len(matrix))
    for phase in matrix.columns:
        values = matrix[phase].to_numpy(dtype=float)
        axes.barh(rows, values, left=left, color=PHASE_COLORS[phase], label=phase)
        left += values
    if len(matrix):
        below = np.maximum(bounds["energy_j"] - bounds["energy_lo_j"], 0.0)
        above = np.maximum(bounds["energy_hi_j"] - bounds["energy_j"], 0.0)
        axes.errorbar(
            bounds["energy_j"], rows, xerr=[below, above], fmt="none", ecolor="#333", capsize=2
        )
    axes.set_yticks(rows, [_shorten(display_name(m)) for m in matrix.index])
    axes.invert_yaxis()
    axes.set_xlim(left=0)
    axes.set_xlabel(_energy_axis("self energy", session))
    axes.set_title(_estimated_title(f"Top {len(matrix)} modules by self energy", session))
    if len(matrix.columns):
        axes.legend(loc="lower right", frameon=False)
    axes.grid(axis="x", alpha=0.3)
    return figure


def tree_figure(session: Session) -> Figure:
    """Return an icicle chart of the module tree: width is inclusive energy, top to bottom.

    The part of a box not covered by its children's boxes below it is the module's self energy.
    Boxes are coloured by module type and labelled with inclusive and self joules where they fit.
    """
    boxes = icicle_boxes(session.inclusive())
    depth = int(boxes["depth"].max()) + 1 if len(boxes) else 1
    figure = Figure(figsize=(10, 0.55 * depth + 1.1), layout="constrained")
    axes = figure.subplots()
    total = float(boxes.loc[boxes["depth"] == 0, "width"].sum()) if len(boxes) else 0.0
    colors = _type_colors(boxes["type"])
    colors[""] = "#D9D9D9"  # containers that never ran themselves (ModuleList)
    for box in boxes.itertuples():
        axes.add_patch(
            Rectangle(
                (box.x, box.depth),
                box.width,
                0.92,
                facecolor=colors[box.type],
                edgecolor="white",
                linewidth=0.6,
            )
        )
        label = _box_label(box, box.width / total * _AXES_WIDTH_PT) if total > 0 else ""
        if label:
            axes.text(
                box.x + box.width / 2,
                box.depth + 0.46,
                label,
                ha="center",
                va="center",
                fontsize=7,
                clip_on=True,
            )
    axes.set_xlim(0, total or 1.0)
    axes.set_ylim(depth, 0)
    axes.set_yticks([d + 0.46 for d in range(depth)], [f"depth {d}" for d in range(depth)])
    axes.set_xlabel(_energy_axis("inclusive energy", session))
    axes.set_title(
        _estimated_title("Energy by module tree (width = inclusive; uncovered = self)", session)
    )
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    return figure


def icicle_boxes(tree: pd.DataFrame) -> pd.DataFrame:
    """Lay out a tree from :func:`greenprof.attribute.tree.inclusive_energy` as icicle boxes.

    Returns:
        Columns ``module, type, depth, x, width, self_energy_j``: each child starts where its
        previous sibling ended, inside its parent's span; nodes under :data:`MIN_TREE_SHARE` of
        the total are left out with their descendants.
    """
    positive = tree[tree["energy_j"] > 0]
    children: dict[str | None, list[Any]] = {}
    for row in positive.itertuples():
        children.setdefault(row.parent if isinstance(row.parent, str) else None, []).append(row)
    total = float(sum(r.energy_j for r in children.get(None, [])))
    boxes: list[tuple[str, str, int, float, float, float]] = []
    cursor = 0.0
    pending = []
    for row in children.get(None, []):
        pending.append((row, cursor))
        cursor += row.energy_j
    while pending:
        row, x = pending.pop()
        if total <= 0 or row.energy_j / total < MIN_TREE_SHARE:
            continue
        boxes.append((row.module, row.type, row.depth, x, row.energy_j, row.self_energy_j))
        offset = x
        for child in children.get(row.module, []):
            pending.append((child, offset))
            offset += child.energy_j
    columns = ["module", "type", "depth", "x", "width", "self_energy_j"]
    return pd.DataFrame(boxes, columns=columns)


def _draw_power(
    axes: Axes,
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    labels: dict[str, str],
    shading: dict[str, np.ndarray],
    window: tuple[float, float] | None,
) -> None:
    for phase, intervals in shading.items():
        if len(intervals):
            axes.broken_barh(
                intervals,
                (0, 1),
                transform=axes.get_xaxis_transform(),
                alpha=0.15,
                color=PHASE_COLORS[phase],
                linewidth=0,
            )
    for sensor, (t_s, energy_j) in series.items():
        start, stop = window if window else (None, None)
        edges_s, watts = power_w(
            t_s, energy_j, max_points=MAX_POWER_POINTS, start_s=start, stop_s=stop
        )
        mid_s = (edges_s[:-1] + edges_s[1:]) / 2
        axes.plot(mid_s, watts, linewidth=0.9, label=labels.get(sensor, sensor))
    if window:
        axes.set_xlim(*window)
    axes.set_xlabel("time since start (s)")
    axes.set_ylabel("power (W)")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    handles, names = axes.get_legend_handles_labels()
    handles += [Patch(color=PHASE_COLORS[p], alpha=0.3) for p, i in shading.items() if len(i)]
    names += [p for p, i in shading.items() if len(i)]
    if handles:
        axes.legend(handles, names, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def _sensor_labels(session: Session) -> dict[str, str]:
    return {
        str(s.get("name")): f"{s.get('name')} ({s.get('device', '?')}) {s['label']}"
        for s in sensor_rows(session)
    }


def _type_colors(types: pd.Series) -> dict[str, str]:
    palette = matplotlib.colormaps["tab20"].colors
    # crc32, not hash(): the same type gets the same colour in every report.
    return {t: to_hex(palette[zlib.crc32(t.encode()) % len(palette)]) for t in set(types)}


def _box_label(box: Any, width_pt: float) -> str:
    """Return the longest label that fits a box ``width_pt`` wide: full, name only, or none."""
    name = display_name(box.module).rsplit(".", 1)[-1] if box.module else display_name("")
    full = f"{name}\n{format_energy(box.width)} (self {format_energy(box.self_energy_j)})"
    for text in (full, name):
        if max(len(line) for line in text.split("\n")) * _CHAR_PT < width_pt:
            return text
    return ""


def _shorten(name: str, limit: int = 42) -> str:
    if len(name) <= limit:
        return name
    keep = (limit - 1) // 2
    return f"{name[:keep]}…{name[-keep:]}"


def _estimated_title(title: str, session: Session) -> str:
    return f"{title} (ESTIMATED)" if session.estimated else title


def _energy_axis(what: str, session: Session) -> str:
    return f"{what} (J, estimated)" if session.estimated else f"{what} (J)"
