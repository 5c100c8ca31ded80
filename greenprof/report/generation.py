"""Joules per token in the summary and the HTML report (from ``Session.generation()``)."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from greenprof.report.units import format_duration, format_energy, format_plus
from greenprof.session import Session


def _totals(rows: pd.DataFrame) -> dict[str, Any]:
    """Every row summed: joules with bounds, tokens and seconds of prefill and decode."""
    return {c: float(rows[c].sum()) for c in rows.columns if c.endswith(("_j", "_s", "_tokens"))}


def _per(energy_j: float, lo_j: float, hi_j: float, count: float) -> str:
    """Joules per token with their ± (``"n/a"`` without tokens)."""
    if count <= 0:
        return "n/a"
    e, lo, hi = energy_j / count, lo_j / count, hi_j / count
    return f"{format_energy(e)} {format_plus(e, lo, hi)}".rstrip()


def generation_headline(session: Session) -> str:
    """One line: J per new token (decode), J per prompt token (prefill), tokens per second.

    ``""`` when the session generated nothing.
    """
    rows = session.generation()
    if rows.empty:
        return ""
    t = _totals(rows)
    rate = t["new_tokens"] / t["decode_s"] if t["decode_s"] > 0 else float("nan")
    label = " (ESTIMATED)" if session.estimated else ""
    return (
        f"generation{label}: {int(t['new_tokens'])} new tokens in {len(rows)} call(s), "
        f"decode {_per(t['decode_j'], t['decode_lo_j'], t['decode_hi_j'], t['new_tokens'])}"
        f"/new token, prefill "
        f"{_per(t['prefill_j'], t['prefill_lo_j'], t['prefill_hi_j'], t['prompt_tokens'])}"
        f"/prompt token, {rate:.3g} new tokens/s"
    )


def generation_html(session: Session) -> str:
    """A small table, one row per generate() call or counted region; ``""`` when none."""
    rows = session.generation()
    if rows.empty:
        return ""
    headers = [
        "call",
        "prompt tokens",
        "new tokens",
        "prefill",
        "decode",
        "J/new token",
        "J/prompt token",
        "note",
    ]
    body = []
    for r in rows.itertuples():
        cells = [
            r.source,
            str(r.prompt_tokens),
            str(r.new_tokens),
            f"{format_energy(r.prefill_j)} in {format_duration(r.prefill_s)}",
            f"{format_energy(r.decode_j)} in {format_duration(r.decode_s)}",
            _per(r.decode_j, r.decode_lo_j, r.decode_hi_j, r.new_tokens),
            _per(r.prefill_j, r.prefill_lo_j, r.prefill_hi_j, r.prompt_tokens),
            r.note,
        ]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return (
        f"<div class=scroll><table id=generation><thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table></div><p class=sub>"
        + html.escape(generation_headline(session))
        + ". Prefill is each call's first forward, decode the rest; joules per new token are "
        "decode joules over new tokens, with their 95% interval.</p>"
    )


__all__ = ["generation_headline", "generation_html"]
