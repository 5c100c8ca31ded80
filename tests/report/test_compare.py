import math

import pandas as pd
import pytest

from greenprof.report.compare import compare_sessions
from greenprof.report.console import render_comparison
from greenprof.session import LAYER_COLUMNS, Session


def run(energies: dict[str, tuple[float, float, float]], measured: bool = True) -> Session:
    """A session with one forward row per module: {module: (joules, lo, hi)}."""
    rows = [(m, "Linear", "forward", 1, 0.1, *e) for m, e in energies.items()]
    frame = pd.DataFrame(rows, columns=LAYER_COLUMNS)
    total = float(frame["energy_j"].sum())
    meta = {
        "total_energy_j": total,
        "total_energy_lo_j": float(frame["energy_lo_j"].sum()),
        "total_energy_hi_j": float(frame["energy_hi_j"].sum()),
        "sensors": [{"name": "s", "measured": measured}],
    }
    return Session(meta, frame)


BEFORE = {"a": (10.0, 9.0, 11.0), "b": (10.0, 9.0, 11.0), "c": (10.0, 9.0, 11.0), "old": (1, 1, 1)}
AFTER = {
    "a": (13.0, 12.0, 14.0),
    "b": (11.0, 10.0, 12.0),
    "c": (5.0, 4.0, 6.0),
    "new": (2, 1.5, 2.5),
}


def test_worse_only_beyond_uncertainty() -> None:
    rows = compare_sessions(run(BEFORE), run(AFTER)).rows.set_index("module")
    assert rows.loc["a", "worse"] and rows.loc["a", "verdict"] == "WORSE"
    assert rows.loc["a", "delta_j"] == 3.0
    assert rows.loc["a", "delta_pct"] == pytest.approx(30.0)
    assert rows.loc["a", "delta_uncertainty_j"] == pytest.approx(2.0)  # Δ in [1, 5]
    assert not rows.loc["b", "worse"] and rows.loc["b", "verdict"] == "~"  # intervals overlap
    assert rows.loc["c", "better"] and rows.loc["c", "verdict"] == "better"
    assert rows.loc["new", "verdict"] == "NEW, WORSE" and math.isnan(rows.loc["new", "delta_pct"])
    assert rows.loc["old", "verdict"] == "gone" and rows.loc["old", "energy_b_j"] == 0.0


def test_worse_modules_come_first() -> None:
    rows = compare_sessions(run(BEFORE), run(AFTER)).rows
    assert rows["module"].tolist()[:2] == ["a", "new"]


def test_threshold_drops_small_regressions_but_keeps_new_ones() -> None:
    comparison = compare_sessions(run(BEFORE), run(AFTER))
    assert comparison.worse()["module"].tolist() == ["a", "new"]
    assert comparison.worse(threshold_pct=50.0)["module"].tolist() == ["new"]


def test_same_run_has_nothing_worse_and_total_change_is_zero() -> None:
    comparison = compare_sessions(run(BEFORE), run(BEFORE))
    assert comparison.worse().empty
    assert comparison.total.delta_j == 0.0 and not comparison.total.worse
    assert "no module got worse beyond uncertainty" in render_comparison(comparison)


def test_notes_when_methods_differ() -> None:
    comparison = compare_sessions(run(BEFORE, measured=False), run(AFTER))
    assert any("estimated" in note for note in comparison.notes)
    text = render_comparison(comparison)
    assert "note: run A is estimated" in text


def test_rendered_comparison_names_the_regressions() -> None:
    text = render_comparison(compare_sessions(run(BEFORE), run(AFTER), "runs/x", "runs/y"), n=3)
    assert text.splitlines()[0].startswith("A: runs/x  31 J")
    assert "2 module(s) got worse beyond uncertainty: a, new" in text
    assert "... 2 more modules" in text
    line = next(line for line in text.splitlines() if line.endswith(" a"))
    assert "+3 J ±2 J" in line and "+30.0%" in line and "WORSE" in line
