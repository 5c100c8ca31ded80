"""Joules per token in the summary and the HTML report (from ``Session.generation()``).

Three views of the same rows: a headline (joules per new and per prompt token, tokens per
second), prefill against decode (tokens, time, joules, share, rate), and the layers that cost
most per decoded token (each module's self joules in region ``decode`` over the new tokens made
there).
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from greenprof.attribute.generation import decoded_in
from greenprof.report.tables import display_name, module_rows
from greenprof.report.units import format_duration, format_energy, format_plus, format_share
from greenprof.session import Session

#: Layers listed per decoded token: in the terminal summary and in the HTML report.
TERMINAL_LAYERS = 3
HTML_LAYERS = 10


def _totals(rows: pd.DataFrame) -> dict[str, Any]:
    """Every row summed: joules with bounds, tokens and seconds of prefill and decode."""
    return {c: float(rows[c].sum()) for c in rows.columns if c.endswith(("_j", "_s", "_tokens"))}


def _per(energy_j: float, lo_j: float, hi_j: float, count: float) -> str:
    """Joules per token with their ± (``"n/a"`` without tokens)."""
    if count <= 0:
        return "n/a"
    e, lo, hi = energy_j / count, lo_j / count, hi_j / count
    return f"{format_energy(e)} {format_plus(e, lo, hi)}".rstrip()


def _rate(count: float, seconds: float) -> str:
    return f"{count / seconds:.3g}" if seconds > 0 and count > 0 else "n/a"


def generation_headline(session: Session) -> str:
    """One line: J per new token (decode), J per prompt token (prefill), tokens per second.

    ``""`` when the session generated nothing.
    """
    rows = session.generation()
    if rows.empty:
        return ""
    t = _totals(rows)
    label = " (ESTIMATED)" if session.estimated else ""
    return (
        f"generation{label}: {int(t['new_tokens'])} new tokens in {len(rows)} call(s), "
        f"decode {_per(t['decode_j'], t['decode_lo_j'], t['decode_hi_j'], t['new_tokens'])}"
        f"/new token, prefill "
        f"{_per(t['prefill_j'], t['prefill_lo_j'], t['prefill_hi_j'], t['prompt_tokens'])}"
        f"/prompt token, {_rate(t['new_tokens'], t['decode_s'])} new tokens/s"
    )


def phase_rows(session: Session) -> list[dict[str, str]]:
    """Prefill against decode, one dict of display texts each; ``[]`` when nothing generated.

    Keys: ``phase``, ``tokens``, ``time``, ``energy``, ``plus``, ``share`` (of the generation's
    joules), ``per_token`` (with its ±) and ``rate`` (tokens per second).
    """
    rows = session.generation()
    if rows.empty:
        return []
    t = _totals(rows)
    both_j = t["prefill_j"] + t["decode_j"]
    out = []
    for phase, count, kind in (
        ("prefill", t["prompt_tokens"], "prompt"),
        ("decode", t["new_tokens"], "new"),
    ):
        energy_j, lo_j, hi_j = (t[f"{phase}{s}"] for s in ("_j", "_lo_j", "_hi_j"))
        out.append(
            {
                "phase": phase,
                "tokens": f"{int(count)} {kind} tokens",
                "time": format_duration(t[f"{phase}_s"]),
                "energy": format_energy(energy_j),
                "plus": format_plus(energy_j, lo_j, hi_j),
                "share": format_share(energy_j / both_j) if both_j > 0 else "n/a",
                "per_token": _per(energy_j, lo_j, hi_j, count),
                "rate": _rate(count, t[f"{phase}_s"]),
            }
        )
    return out


def decode_layers(session: Session, n: int | None = None) -> pd.DataFrame:
    """The modules that cost most per decoded token, highest first (``n`` of them).

    Each module's self joules in region ``decode`` (all phases) and its bounds, divided by the
    new tokens whose decoding ran there (:func:`~greenprof.attribute.generation.decoded_in`).
    Columns of :func:`~greenprof.report.tables.module_rows` plus ``j_per_token``,
    ``lo_j_per_token``, ``hi_j_per_token`` and ``tokens``; empty when no token was decoded.
    """
    tokens = decoded_in(session.generation())
    rows = module_rows(session, regions=["decode"])
    rows = rows[rows["energy_j"] > 0] if tokens > 0 else rows.iloc[0:0]
    rows = (rows if n is None else rows.head(n)).copy()
    for column, source in (
        ("j_per_token", "energy_j"),
        ("lo_j_per_token", "energy_lo_j"),
        ("hi_j_per_token", "energy_hi_j"),
    ):
        rows[column] = rows[source] / tokens if tokens > 0 else math.nan
    rows["tokens"] = tokens
    return rows.reset_index(drop=True)


def _layer_text(r: Any) -> str:
    plus = format_plus(r.j_per_token, r.lo_j_per_token, r.hi_j_per_token)
    return f"{display_name(r.module)} {format_energy(r.j_per_token)} {plus}".rstrip()


def generation_lines(session: Session, n: int = TERMINAL_LAYERS) -> list[str]:
    """The summary's lines: the headline, prefill against decode, the costliest decode layers.

    ``[]`` when the session generated nothing.
    """
    headline = generation_headline(session)
    if not headline:
        return []
    lines = [headline]
    for p in phase_rows(session):
        lines.append(
            f"  {p['phase']:<8}{p['tokens']:>18}  {p['time']:>9}  "
            f"{p['energy']} {p['plus']} ({p['share']})  {p['per_token']}/token  "
            f"{p['rate']} tokens/s"
        )
    layers = decode_layers(session, n)
    if not layers.empty:
        lines.append(
            "  costliest per decoded token: "
            + ", ".join(_layer_text(r) for r in layers.itertuples())
        )
    return lines


def _table(table_id: str, headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
        for cells in rows
    )
    return (
        f"<div class=scroll><table id={table_id}><thead><tr>{head}</tr></thead>\n<tbody>\n"
        f"{body}\n</tbody></table></div>"
    )


def _calls_table(rows: pd.DataFrame) -> str:
    headers = ["call", "prompt tokens", "new tokens", "prefill", "decode"]
    headers += ["J/new token", "J/prompt token", "new tokens/s", "note"]
    cells = [
        [
            r.source,
            r.prompt_tokens,
            r.new_tokens,
            f"{format_energy(r.prefill_j)} in {format_duration(r.prefill_s)}",
            f"{format_energy(r.decode_j)} in {format_duration(r.decode_s)}",
            _per(r.decode_j, r.decode_lo_j, r.decode_hi_j, r.new_tokens),
            _per(r.prefill_j, r.prefill_lo_j, r.prefill_hi_j, r.prompt_tokens),
            _rate(r.new_tokens, r.decode_s),
            r.note,
        ]
        for r in rows.itertuples()
    ]
    return _table("generation", headers, cells)


def generation_html(session: Session, n: int = HTML_LAYERS) -> str:
    """Prefill against decode, one row per call, the costliest layers per decoded token.

    ``""`` when the session generated nothing.
    """
    rows = session.generation()
    if rows.empty:
        return ""
    unit = " (estimated)" if session.estimated else ""
    phases = [
        [p[k] for k in ("phase", "tokens", "time", "energy", "plus", "share", "per_token", "rate")]
        for p in phase_rows(session)
    ]
    parts = [
        f"<p><b>{html.escape(generation_headline(session))}</b></p>",
        _table(
            "generation-phases",
            ["", "tokens", "time", f"energy{unit}", "±", "share", "per token", "tokens/s"],
            phases,
        ),
        _calls_table(rows),
        "<p class=sub>Prefill runs from each call's start to the end of its first forward, "
        "decode the rest; joules per new token are decode joules over new tokens, with their "
        "95% interval.</p>",
    ]
    layers = decode_layers(session, n)
    if not layers.empty:
        cells = [
            [
                display_name(r.module),
                r.type,
                format_energy(r.j_per_token),
                format_plus(r.j_per_token, r.lo_j_per_token, r.hi_j_per_token),
                format_energy(r.energy_j),
                format_duration(r.time_s),
            ]
            for r in layers.itertuples()
        ]
        headers = ["module", "type", f"J/decoded token{unit}", "±", "decode energy", "time"]
        parts += [
            _table("generation-layers", headers, cells),
            f"<p class=sub>The {len(layers)} modules that cost most per decoded token: self "
            f"joules in region decode over its {int(layers['tokens'].iloc[0])} new tokens, "
            "95% intervals.</p>",
        ]
    return "\n".join(parts)


__all__ = [
    "decode_layers",
    "generation_headline",
    "generation_html",
    "generation_lines",
    "phase_rows",
]
