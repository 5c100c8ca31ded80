"""Ranked recommendations as terminal text."""

from __future__ import annotations

from collections.abc import Sequence

from greenprof.recommend.candidates import Candidate
from greenprof.report.units import format_energy


def render_candidates(
    candidates: Sequence[Candidate], *, total_energy_j: float, estimated: bool, n: int = 15
) -> str:
    """Return the top ``n`` candidates, one line each with its expected saving, risk and note."""
    if not candidates:
        return "No recommendation: no layer of a known type used measurable energy."
    unit = "J (estimated)" if estimated else "J"
    lines = [f"Expected savings in {unit} of the profiled run; risk = expected metric loss."]
    for rank, candidate in enumerate(candidates[:n], start=1):
        share = candidate.expected_saving_j / total_energy_j if total_energy_j > 0 else 0.0
        lines.append(
            f"{rank:>2}. {candidate.label}\n"
            f"    action {candidate.action}, saves ~{format_energy(candidate.expected_saving_j)}"
            f" ({share:.0%}), risk ~{candidate.expected_risk:.1%}"
            + (f"\n    note: {candidate.note}" if candidate.note else "")
        )
    if len(candidates) > n:
        lines.append(f"... and {len(candidates) - n} more")
    lines.append(
        "These are first guesses; `greenprof optimize` applies them one at a time and keeps "
        "only what re-profiling proves."
    )
    return "\n".join(lines)
