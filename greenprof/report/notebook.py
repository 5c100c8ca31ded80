"""A session in a notebook: a short HTML table of its top layers."""

from __future__ import annotations

import html

from greenprof.session import Session


def render_notebook_html(session: Session, n: int = 10) -> str:
    """Return the HTML a notebook shows for ``session``: its total and its top ``n`` rows."""
    unit = "J (estimated)" if session.estimated else "J"
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4g}</td><td>{:.4g}&ndash;{:.4g}</td></tr>".format(
            html.escape(str(r.module) or "(root)"),
            html.escape(str(r.type)),
            html.escape(str(r.phase)),
            r.energy_j,
            r.energy_lo_j,
            r.energy_hi_j,
        )
        for r in session.layers().head(n).itertuples()
    )
    return (
        f"<p>greenprof: {session.total_energy_j:.4g} {unit} in {session.duration_s:.3g} s</p>"
        "<table><tr><th>module</th><th>type</th><th>phase</th>"
        f"<th>energy ({unit})</th><th>range</th></tr>{rows}</table>"
    )
