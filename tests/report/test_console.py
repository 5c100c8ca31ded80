from greenprof.report.console import render_summary
from greenprof.session import OUTSIDE_MODULE


def _table_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    return [line for line in lines[start:] if line and not line.startswith(("...", "warning"))]


def test_summary_lists_modules_by_self_energy_with_share_and_uncertainty(make_session) -> None:
    text = render_summary(make_session(), n=10)
    rows = _table_lines(text)
    assert rows[0].split()[:2] == ["15", "J"]  # fc: forward 6 J + backward 9 J
    assert "fc (Linear)" in rows[0]
    assert "±1.5 J" in rows[0]  # 15 J in [13.5, 16.5]
    assert "75.0%" in rows[0]  # of 20 J
    assert any(OUTSIDE_MODULE in row for row in rows)
    assert any("(root) (Net)" in row for row in rows)
    assert "measured" in text.splitlines()[0] and "ESTIMATED" not in text


def test_summary_header_says_estimated(make_session) -> None:
    text = render_summary(make_session(measured=False))
    assert "ESTIMATED" in text.splitlines()[0]
    assert "s0 ESTIMATED" in text


def test_summary_truncates_and_counts_the_rest(make_session) -> None:
    text = render_summary(make_session(), n=2)
    assert len(_table_lines(text)) == 2
    assert "... 3 more modules" in text


def test_summary_filters_phases_and_flags_noise(make_session) -> None:
    text = render_summary(make_session(), phases=["forward"])
    rows = _table_lines(text)
    assert rows[0].split()[:2] == ["6", "J"]
    assert "optimizer:SGD" not in text and OUTSIDE_MODULE not in text
    act = next(row for row in rows if "act (ReLU)" in row)
    assert act.endswith("noise")


def test_summary_shows_energy_per_step_and_warnings(make_session) -> None:
    text = render_summary(make_session(warnings=["counter wrapped twice"]))
    assert "10 steps, 2 J/step" in text
    assert text.splitlines()[-1] == "warning: counter wrapped twice"


def test_session_str_is_the_summary(make_session) -> None:
    session = make_session()
    assert str(session) == render_summary(session)


def test_an_unreported_uncertainty_is_not_shown_as_zero(make_session) -> None:
    session = make_session(total_energy_lo_j=20.0, total_energy_hi_j=20.0)
    first = render_summary(session).splitlines()[0]
    assert first.startswith("greenprof: 20 J measured") and "±" not in first
    session._layers["energy_lo_j"] = session._layers["energy_j"]
    session._layers["energy_hi_j"] = session._layers["energy_j"]
    lines = render_summary(session).splitlines()
    rows = lines[lines.index(next(line for line in lines if line.startswith("---"))) + 1 :]
    assert rows and not any("±" in row for row in rows)
