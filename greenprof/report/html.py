"""The self-contained HTML report: one file, no network, opens from disk.

Figures are inline SVG data URIs, the layer table sorts with a few lines of inline JavaScript, and
every string that came from the user's run (module names, command, warnings) is HTML-escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import math
from pathlib import Path
from typing import Any

from greenprof.attribute.uncertainty import NOISE_REL
from greenprof.report import figures
from greenprof.report.breakdown_html import ranks_html, regions_html
from greenprof.report.generation import generation_html
from greenprof.report.power_figure import layer_power_figure
from greenprof.report.tables import calibration_text, display_name, layer_rows, sensor_rows
from greenprof.report.units import (
    co2_g,
    format_duration,
    format_energy,
    format_plus,
    format_share,
    format_si,
    grid_intensity,
    kwh,
)
from greenprof.session import REPORT_FILE, Session
from greenprof.version import __version__

logger = logging.getLogger(__name__)


PAGE_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;
margin:0;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#555;margin:0 0 12px;word-break:break-all}
.alert{background:#fff4d6;border:1px solid #e0b84c;padding:8px 12px;border-radius:6px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}.card span{color:#555;font-size:12px}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.sortable th{cursor:pointer;user-select:none;background:#eef1f5;position:sticky;top:0}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
.facts th{width:180px;background:#fafbfc}
.tag{font-size:11px;font-weight:600;padding:1px 6px;border-radius:4px;margin-left:6px}
.MEASURED{background:#dff3e4;color:#1b6b34}.ESTIMATED{background:#fff0c2;color:#7a5600}
.FAILED{background:#fde2e1;color:#9b1c1c}
.noise{color:#999}
figure{background:#fff;border:1px solid #dde1e6;border-radius:8px;margin:12px 0;padding:8px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:#555;font-size:12px;margin-top:4px}
.scroll{max-height:640px;overflow:auto;border:1px solid #dde1e6;border-radius:8px}
code{word-break:break-all}
"""

# Sorts a table by the clicked column: numbers by their data-v, text by content. Numbers start
# largest first, since the question is always "what costs most".
SORT_JS = """
(function () {
  function value(row, col, numeric) {
    var cell = row.cells[col], raw = cell.getAttribute("data-v");
    if (raw === null) raw = cell.textContent;
    if (!numeric) return raw.toLowerCase();
    var number = parseFloat(raw);
    return isNaN(number) ? -Infinity : number;
  }
  function sortBy(table, th, col) {
    var numeric = th.getAttribute("data-type") === "num";
    var first = numeric ? "descending" : "ascending";
    var current = th.getAttribute("aria-sort");
    var order = current === first ? (numeric ? "ascending" : "descending") : first;
    var sign = order === "ascending" ? 1 : -1;
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, col, numeric), y = value(b, col, numeric);
      return x < y ? -sign : x > y ? sign : 0;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(th.parentNode.cells, function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", order);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(table, th, col);
        }
      });
    });
  });
})();
"""

# Defence in depth behind the escaping: the page may load nothing from anywhere, and only the
# sorting script above (pinned by its hash) may run.
_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{base64.b64encode(hashlib.sha256(SORT_JS.encode()).digest()).decode()}'"
)


def render_html(session: Session, *, grid_g_per_kwh: float | None = None) -> str:
    """Return the report of ``session`` as one self-contained HTML document.

    Args:
        session: the profile.
        grid_g_per_kwh: grid carbon intensity for the CO2 estimate; by default the one stored in
            the run (``meta["grid_g_per_kwh"]``), else
            :data:`~greenprof.report.units.DEFAULT_GRID_G_PER_KWH`.
    """
    grid = grid_intensity(session.meta, grid_g_per_kwh)
    estimated = " (ESTIMATED)" if session.estimated else ""
    body = "\n".join(
        [
            _heading(session),
            _totals(session, grid),
            section("Run", _facts(session)),
            section("Warnings", _warnings(session)),
            section("Figures", _figures(session)),
            section("Ranks", ranks_html(session)),
            section("Regions", regions_html(session)),
            section("Generation", generation_html(session)),
            section(f"Every layer{estimated}", _layer_table(session)),
            f"<footer><p class=sub>greenprof {escape_text(__version__)}</p></footer>",
        ]
    )
    title = f"greenprof report: {session.meta.get('command') or 'profile'}{estimated}"
    return (
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        f'<meta http-equiv=Content-Security-Policy content="{_CSP}">\n'
        '<meta name=viewport content="width=device-width,initial-scale=1">\n'
        f"<title>{escape_text(title)}</title>\n<style>{PAGE_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n<script>{SORT_JS}</script>\n</body>\n</html>\n"
    )


def write_html(session: Session, path: str | Path, *, grid_g_per_kwh: float | None = None) -> Path:
    """Render ``session`` and write it to ``path`` (a file, or a directory to hold report.html)."""
    target = Path(path)
    if target.is_dir():
        target = target / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(session, grid_g_per_kwh=grid_g_per_kwh), encoding="utf-8")
    logger.debug("wrote %s", target)
    return target


def _is_number(value: object) -> bool:
    """True for a real number read from JSON (where a boolean is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def escape_text(value: object) -> str:
    """Return ``value`` as text safe inside HTML elements and attribute values."""
    return html.escape(str(value), quote=True)


def section(title: str, content: str) -> str:
    """Wrap ``content`` in a titled ``<section>``; nothing when there is no content."""
    if not content:
        return ""
    return f"<section>\n<h2>{escape_text(title)}</h2>\n{content}\n</section>"


def _heading(session: Session) -> str:
    meta = session.meta
    lines = [
        "<h1>greenprof energy report</h1>",
        f"<p class=sub><code>{escape_text(meta.get('command') or '(no command recorded)')}</code>"
        f" &middot; {escape_text(meta.get('started_at', ''))}</p>",
    ]
    if session.estimated:
        estimated = [s["name"] for s in sensor_rows(session) if s["label"] == "ESTIMATED"]
        source = ", ".join(map(str, estimated)) or "no sensor recorded"
        lines.append(
            "<p class=alert><b>ESTIMATED.</b> Some or all joules in this report are not "
            f"measured by a hardware counter but estimated ({escape_text(source)}). Every number "
            "below is an estimate.</p>"
        )
    if meta.get("interrupted"):
        lines.append("<p class=alert>The run was interrupted; it covers what ran until then.</p>")
    return "\n".join(lines)


def _totals(session: Session, grid_g_per_kwh: float) -> str:
    total = session.total_energy_j
    plus = format_plus(total, session.total_energy_lo_j, session.total_energy_hi_j)
    tag = " (estimated)" if session.estimated else ""
    cards = [
        (f"Total energy{tag}", format_energy(total), plus or "uncertainty not reported"),
        (f"Total{tag}", f"{kwh(total):.3g} kWh", f"{total:,.1f} J"),
        ("Duration", format_duration(session.duration_s), _mean_power(session)),
    ]
    steps = session.meta.get("steps")
    if isinstance(steps, int) and steps > 0:
        cards.append((f"Per step{tag}", format_energy(total / steps), f"{steps} steps"))
    cards.append(
        (
            f"CO2{tag}",
            format_si(co2_g(total, grid_g_per_kwh), "g"),
            f"assuming {grid_g_per_kwh:g} g CO2/kWh grid intensity",
        )
    )
    return card_section(cards)


def card_section(cards: list[tuple[str, str, str]]) -> str:
    """Return the row of headline cards: ``(label, value, note)`` each, all escaped."""
    html_cards = "".join(
        f"<div class=card><span>{escape_text(label)}</span><b>{escape_text(value)}</b>"
        f"<span>{escape_text(note)}</span></div>"
        for label, value, note in cards
    )
    return f"<section id=totals class=cards>{html_cards}</section>"


def _mean_power(session: Session) -> str:
    if session.duration_s <= 0:
        return ""
    return f"mean {format_si(session.total_energy_j / session.duration_s, 'W')}"


def _facts(session: Session) -> str:
    meta = session.meta
    interval = meta.get("interval_s")
    facts = [
        ("Command", meta.get("command")),
        ("Started", meta.get("started_at")),
        ("Host", meta.get("host")),
        ("Platform", meta.get("platform")),
        ("Python / torch", f"{meta.get('python_version', '?')} / {meta.get('torch_version', '?')}"),
        ("greenprof", meta.get("greenprof_version")),
        ("Sampling interval", format_duration(interval) if _is_number(interval) else None),
        ("Exit status", _exit_text(meta)),
        ("Calibration", calibration_text(meta)),
    ]
    rows = "".join(
        f"<tr><th>{escape_text(name)}</th><td>{escape_text(value)}</td></tr>"
        for name, value in facts
        if value not in (None, "")
    )
    return f"<table class=facts>{rows}<tr><th>Sensors</th><td>{_sensors(session)}</td></tr></table>"


def _exit_text(meta: dict[str, object]) -> str | None:
    status = meta.get("exit_status")
    if status is None:
        return None
    return f"{status} (interrupted)" if meta.get("interrupted") else str(status)


def _sensors(session: Session) -> str:
    items = []
    for sensor in sensor_rows(session):
        energy = sensor.get("energy_j")
        amount = format_energy(energy) if _is_number(energy) else ""
        detail = f"failed: {sensor['failed']}" if sensor.get("failed") else amount
        method = f", {sensor['method']}" if sensor.get("method") else ""
        items.append(
            f"<li>{escape_text(sensor.get('name'))} ({escape_text(sensor.get('device'))})"
            f"<span class='tag {sensor['label']}'>{sensor['label']}</span> "
            f"{escape_text(detail)}{escape_text(method)}</li>"
        )
    return f"<ul>{''.join(items)}</ul>" if items else "none recorded (ESTIMATED)"


def _warnings(session: Session) -> str:
    if not session.warnings:
        return ""
    return "<ul>" + "".join(f"<li>{escape_text(w)}</li>" for w in session.warnings) + "</ul>"


def _figures(session: Session) -> str:
    specs = (
        (
            figures.power_figure,
            "Power over time per sensor: the derivative of each sensor's "
            "cumulative energy, averaged over bins no shorter than the sensor updates.",
        ),
        (figures.phase_stack_figure, "Self energy of the modules that cost most, by phase."),
        (
            layer_power_figure,
            "Power of each layer while it runs, with its 95% interval. Solid bars were measured by "
            "replaying the layer alone after the run; hatched ones share a replayed layer's "
            "power (//), come from the fit over the run's windows (..) or assume equal power "
            "(xx).",
        ),
        (
            figures.tree_figure,
            "The module tree: each box is as wide as the module's inclusive "
            "energy; the part not covered by its children below is its self energy.",
        ),
    )
    parts = []
    for draw, caption in specs:
        try:
            uri = figures.to_data_uri(draw(session))
        except Exception:  # a figure that fails must not cost the user the whole report
            logger.exception("figure %s failed", draw.__name__)
            parts.append(f"<p>Figure {escape_text(draw.__name__)} could not be drawn.</p>")
            continue
        parts.append(
            f"<figure><img src='{uri}' alt='{escape_text(caption)}'>"
            f"<figcaption>{escape_text(caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


def _layer_table(session: Session) -> str:
    unit = "J, est." if session.estimated else "J"
    headers = [
        ("module", "text"),
        ("type", "text"),
        ("phase", "text"),
        (f"energy ({unit})", "num"),
        ("±", "num"),
        ("share", "num"),
        ("time", "num"),
        ("calls", "num"),
        (f"per call ({unit})", "num"),
        ("power (W" + (", est.)" if session.estimated else ")"), "num"),
        ("measured by", "text"),
    ]
    head = "".join(
        f"<th data-type={kind}{' class=n' if kind == 'num' else ''}>{escape_text(name)}</th>"
        for name, kind in headers
    )
    body = "\n".join(_layer_row(row) for row in layer_rows(session).itertuples())
    return (
        "<div class=scroll><table class=sortable id=layers>"
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>"
        "<p class=sub>Self energy per module and phase, and the power the layer draws while it "
        "runs (95% interval). Grey rows are noise: their interval reaches further than "
        f"±{NOISE_REL:.0%} from the value. Click a column to sort.</p>"
    )


def _layer_row(r: Any) -> str:
    """Return one ``<tr>`` for a row of :func:`~greenprof.report.tables.layer_rows`."""
    cells = [
        text_cell(display_name(r.module)),
        text_cell(r.type),
        text_cell(r.phase),
        num_cell(r.energy_j, format_energy(r.energy_j)),
        num_cell(r.uncertainty_j, format_plus(r.energy_j, r.energy_lo_j, r.energy_hi_j)),
        num_cell(r.share, format_share(r.share)),
        num_cell(r.time_s, format_duration(r.time_s)),
        num_cell(r.calls, str(r.calls)),
        num_cell(r.energy_per_call_j, _per_call(r.energy_per_call_j)),
        num_cell(r.power_w, f"{r.power_w:.3g} [{r.power_lo_w:.3g}, {r.power_hi_w:.3g}]"),
        text_cell(r.method),
    ]
    noise = " class=noise" if r.noise else ""
    return f"<tr{noise}>{''.join(cells)}</tr>"


def _per_call(energy_j: float) -> str:
    return "" if math.isnan(energy_j) else format_energy(energy_j)


def text_cell(text: object) -> str:
    """Return a table cell holding escaped text."""
    return f"<td>{escape_text(text)}</td>"


def num_cell(value: float, text: str) -> str:
    """Return a right-aligned table cell that sorts by ``value`` and shows ``text``."""
    number = "" if isinstance(value, float) and math.isnan(value) else f"{value:.9g}"
    return f"<td class=n data-v='{number}'>{escape_text(text)}</td>"
