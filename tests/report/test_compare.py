import math

import pandas as pd
import pytest

from greenprof.report.compare import NoCommonModules, compare_sessions
from greenprof.report.compare_notes import MACHINE_SLOWER
from greenprof.report.console import render_comparison
from greenprof.session import LAYER_COLUMNS, Session
from greenprof.testing.synthetic import stepped_session


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


def test_worse_only_beyond_both_uncertainties() -> None:
    rows = compare_sessions(run(BEFORE), run(AFTER)).rows.set_index("module")
    assert rows.loc["a", "worse"] and rows.loc["a", "verdict"] == "WORSE"
    assert rows.loc["a", "delta_j"] == 3.0
    assert rows.loc["a", "delta_pct"] == pytest.approx(30.0)
    # Each run's estimate is its own: ±1 J and ±1 J in quadrature; run-to-run (no steps
    # recorded): 10% of each figure, and the two intervals must not overlap: 1.0 + 1.3.
    measured, run_to_run = math.hypot(1, 1), 0.1 * (10 + 13)
    assert rows.loc["a", "delta_uncertainty_j"] == pytest.approx(math.hypot(measured, run_to_run))
    assert not rows.loc["b", "worse"] and rows.loc["b", "verdict"] == "within noise"
    assert rows.loc["c", "better"] and rows.loc["c", "verdict"] == "better"
    assert rows.loc["new", "verdict"] == "NEW, WORSE" and math.isnan(rows.loc["new", "delta_pct"])
    assert rows.loc["old", "verdict"] == "removed" and rows.loc["old", "energy_b_j"] == 0.0


def test_a_new_module_inside_its_uncertainty_is_only_new() -> None:
    after = {**AFTER, "new": (0.686, 0.0, 1.42)}
    comparison = compare_sessions(run(BEFORE), run(after))
    rows = comparison.rows.set_index("module")
    assert rows.loc["new", "verdict"] == "new" and not rows.loc["new", "worse"]
    text = render_comparison(comparison)
    assert "new in B: new" in text and "removed in B: old" in text


def test_a_doubled_layer_is_flagged_unless_its_intervals_cannot_tell() -> None:
    wide = {m: (10.0, 7.0, 13.0) for m in "abcd"}
    doubled = {**wide, "b": (20.0, 14.0, 26.0)}
    assert compare_sessions(run(wide), run(doubled)).worse(5.0)["module"].tolist() == ["b"]
    # ±50% in each run: +10 J is inside hypot(5, 10) J, whatever the sensors.
    wider = {m: (10.0, 5.0, 15.0) for m in "abcd"}
    assert compare_sessions(run(wider), run({**wider, "b": (20.0, 10.0, 30.0)})).worse().empty


def test_a_machine_slower_as_a_whole_is_no_regression_but_one_layer_on_its_own_is() -> None:
    before = {m: (10.0, 9.5, 10.5) for m in "abcdef"}
    loaded = {m: (14.0, 13.3, 14.7) for m in "abcdef"}
    comparison = compare_sessions(run(before), run(loaded))
    assert comparison.machine_factor == pytest.approx(1.4)
    assert comparison.worse(5.0).empty
    # No load evidence in these runs: the benefit of the doubt, said so.
    assert any("no load evidence" in note for note in comparison.notes)
    assert comparison.rows.set_index("module").loc["a", "verdict"] == "machine"
    loaded["c"] = (28.0, 26.6, 29.4)
    comparison = compare_sessions(run(before), run(loaded))
    assert comparison.worse(5.0)["module"].tolist() == ["c"]
    # Without the load, c's doubling is judged against 1.0 and flagged too.
    assert compare_sessions(run(before), run({**before, "c": (20, 19, 21)})).worse(5.0)[
        "module"
    ].tolist() == ["c"]


def test_one_big_layer_that_got_worse_does_not_pass_for_the_machine() -> None:
    before = {"big": (80.0, 76, 84), "x": (5.0, 4.8, 5.2), "y": (5.0, 4.8, 5.2), "z": (5, 4.8, 5.2)}
    after = {**before, "big": (160.0, 152, 168)}
    comparison = compare_sessions(run(before), run(after))
    assert comparison.machine_factor == 1.0
    assert comparison.worse(5.0)["module"].tolist() == ["big"]


def test_runs_with_different_step_counts_compare_per_step() -> None:
    a, b = run(BEFORE), run({m: tuple(2 * v for v in e) for m, e in BEFORE.items()})
    a.meta["steps"], b.meta["steps"] = 10, 20
    comparison = compare_sessions(a, b)
    assert comparison.per_step and comparison.worse().empty
    assert comparison.total.delta_j == pytest.approx(0.0)
    assert any("joules per step" in note for note in comparison.notes)
    assert "total per step: +0 J" in render_comparison(comparison)


def test_runs_with_no_module_in_common_are_refused_unless_forced() -> None:
    other = run({"x": (5.0, 4.0, 6.0)})
    with pytest.raises(NoCommonModules, match="share no module"):
        compare_sessions(run(BEFORE), other)
    forced = compare_sessions(run(BEFORE), other, force=True)
    assert any("only the totals" in note for note in forced.notes)


def test_partial_overlap_states_the_coverage() -> None:
    comparison = compare_sessions(run(BEFORE), run(AFTER))
    assert comparison.coverage_a == pytest.approx(30 / 31)
    assert comparison.coverage_b == pytest.approx(29 / 31)
    assert any("97% of A's energy and 94% of B's" in n for n in comparison.notes)


def test_threshold_drops_small_regressions_but_keeps_new_ones() -> None:
    comparison = compare_sessions(run(BEFORE), run(AFTER))
    assert comparison.worse()["module"].tolist() == ["a", "new"]
    assert comparison.worse(threshold_pct=50.0)["module"].tolist() == ["new"]


def test_same_run_has_nothing_worse_and_total_change_is_zero() -> None:
    comparison = compare_sessions(run(BEFORE), run(BEFORE))
    assert comparison.worse().empty
    assert comparison.total.delta_j == 0.0 and not comparison.total_worse
    assert "no module got worse beyond uncertainty" in render_comparison(comparison)


def test_notes_when_methods_differ() -> None:
    comparison = compare_sessions(run(BEFORE, measured=False), run(AFTER))
    assert any("estimated" in note for note in comparison.notes)
    text = render_comparison(comparison)
    assert "note: run A is estimated" in text


def test_rendered_comparison_names_the_regressions() -> None:
    text = render_comparison(compare_sessions(run(BEFORE), run(AFTER), "runs/x", "runs/y"), n=3)
    assert text.splitlines()[0].startswith("A: runs/x  31 J")
    assert "2 module(s) got worse beyond uncertainty and by more than 5%: a, new" in text
    assert "... 2 more modules" in text
    line = next(line for line in text.splitlines() if line.endswith(" a"))
    assert "+3 J ±2.7 J" in line and "+30.0%" in line and "WORSE" in line


# ------------------------------------------------------------- runs with a per-step series
#: Self seconds per step: a few large layers, some small ones, the glue between them.
COSTS = {
    "embed": 0.002,
    "fc1": 0.010,
    "act": 0.0005,
    "fc2": 0.010,
    "norm": 0.0008,
    "head": 0.004,
    "(outside modules)": 0.003,
}
IDLE = {"cpu_per_wall": 0.97, "load_per_cpu": 0.1}
BUSY = {"cpu_per_wall": 0.55, "load_per_cpu": 1.5}


def test_the_same_script_run_again_and_again_is_never_a_regression() -> None:
    runs = [stepped_session(COSTS, noise_rel=0.15, seed=seed, **IDLE) for seed in range(8)]
    for a in runs:
        for b in runs:
            if a is not b:
                comparison = compare_sessions(a, b)
                assert comparison.worse().empty  # what --fail-on-regression counts
    assert comparison.measured_spread
    assert any("measured from each run's steps" in note for note in comparison.notes)


def _row(comparison, module: str):
    return comparison.rows.set_index("module").loc[module]


def test_the_spread_is_measured_from_the_windows_and_grows_with_their_noise() -> None:
    def compared(noise_rel: float):
        return compare_sessions(
            stepped_session(COSTS, noise_rel=noise_rel),
            stepped_session(COSTS, noise_rel=noise_rel, seed=1),
        )

    calm, noisy = compared(0.02), compared(0.3)
    assert _row(calm, "act")["run_to_run_j"] < _row(noisy, "act")["run_to_run_j"]
    # Deterministic: the bootstrap is seeded.
    assert _row(compared(0.3), "act")["run_to_run_j"] == _row(noisy, "act")["run_to_run_j"]


def test_one_layer_twice_as_expensive_is_flagged_alone() -> None:
    before = stepped_session(COSTS, noise_rel=0.15, **IDLE)
    after = stepped_session({**COSTS, "fc2": 0.020}, noise_rel=0.15, seed=1, **IDLE)
    comparison = compare_sessions(before, after)
    assert comparison.worse()["module"].tolist() == ["fc2"]
    assert _row(comparison, "fc2")["verdict"] == "WORSE"


def test_a_machine_slower_as_a_whole_is_no_regression_and_says_so() -> None:
    before = stepped_session(COSTS, **IDLE)
    slower = {m: 1.3 * c for m, c in COSTS.items()}
    comparison = compare_sessions(before, stepped_session(slower, seed=1, **BUSY))
    assert comparison.machine_factor == pytest.approx(1.3, rel=0.05)
    assert comparison.worse().empty and not comparison.total_worse
    note = next(n for n in comparison.notes if n.startswith(MACHINE_SLOWER))
    assert "not a code change" in note and "CPU per wall second 97% -> 55%" in note
    text = render_comparison(comparison)
    assert "(the machine's change: every module alike)" in text
    # A layer that got worse on its own, on top of the machine, is still caught.
    slower["fc1"] = 2 * 1.3 * COSTS["fc1"]
    comparison = compare_sessions(before, stepped_session(slower, seed=1, **BUSY))
    assert comparison.worse()["module"].tolist() == ["fc1"]


def test_everything_slower_on_an_idle_machine_is_the_codes_change() -> None:
    before = stepped_session(COSTS, **IDLE)
    slower = {m: 1.3 * c for m, c in COSTS.items()}
    comparison = compare_sessions(before, stepped_session(slower, seed=1, **IDLE))
    assert comparison.machine_factor == 1.0
    assert set(comparison.worse()["module"]) >= {"fc1", "fc2", "head"}
    assert any("not busier in B" in note for note in comparison.notes)


def test_a_rise_beyond_uncertainty_but_under_the_threshold_is_not_worse() -> None:
    before = stepped_session(COSTS, noise_rel=0.01)
    after = stepped_session({**COSTS, "fc1": 0.0125}, noise_rel=0.01, seed=1)
    comparison = compare_sessions(before, after, threshold_pct=30.0)
    fc1 = _row(comparison, "fc1")
    assert fc1["rose"] and not fc1["worse"] and fc1["verdict"] == "below threshold"
    assert "WORSE" not in render_comparison(comparison)
    assert compare_sessions(before, after, threshold_pct=5.0).worse()["module"].tolist() == ["fc1"]


def test_runs_with_different_step_counts_compare_per_step_with_measured_spread() -> None:
    a = stepped_session(COSTS, windows=40)
    b = stepped_session(COSTS, windows=80, seed=1)
    comparison = compare_sessions(a, b)
    assert comparison.per_step and comparison.measured_spread
    assert comparison.worse().empty
    assert comparison.total.delta_pct == pytest.approx(0.0, abs=5.0)


def test_an_old_run_without_steps_falls_back_and_says_so() -> None:
    new = stepped_session(COSTS)
    old = Session(new.meta, new.layers())
    comparison = compare_sessions(old, new)
    assert not comparison.measured_spread
    assert any("A recorded no per-step series" in note for note in comparison.notes)


def test_other_processes_taking_the_machine_make_a_slower_run_no_regression() -> None:
    # Beside another process on CPUs that share a core, B waits for no CPU and the load average
    # lags: what shows at once is the machine's busy time that was not the run's.
    before = stepped_session(COSTS, others_share=0.05, **IDLE)
    slower = {m: 1.5 * c for m, c in COSTS.items()}
    comparison = compare_sessions(before, stepped_session(slower, seed=1, others_share=0.5, **IDLE))
    assert comparison.worse().empty and not comparison.total_worse
    note = next(n for n in comparison.notes if n.startswith(MACHINE_SLOWER))
    assert "other processes' CPU 5% -> 50% of the machine" in note
    quiet = compare_sessions(before, stepped_session(slower, seed=1, others_share=0.05, **IDLE))
    assert set(quiet.worse()["module"]) >= {"fc1", "fc2", "head"}
