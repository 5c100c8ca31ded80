import re

import pandas as pd

from greenprof.report.html import render_html, write_html
from greenprof.report.units import DEFAULT_GRID_G_PER_KWH
from greenprof.session import Session

EVIL = "<script>alert(1)</script>"


def test_report_is_self_contained(make_session) -> None:
    page = render_html(make_session())
    assert page.startswith("<!DOCTYPE html>")
    # Nothing is fetched: no external scripts, styles, images or fonts.
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert (
        page.count("<img src='data:image/svg+xml;base64,") == 4
    )  # power over time, phases, per-layer power, module tree


def test_every_user_string_is_escaped(make_session) -> None:
    session = make_session(
        [
            (EVIL, EVIL, "forward", 1, 0.1, 5.0, 4.0, 6.0),
            ("fc", "Linear", "forward", 1, 0.1, 1, 1, 1),
        ],
        command=f"greenprof run {EVIL}",
        host=EVIL,
        warnings=[EVIL],
    )
    session.meta["sensors"][0]["name"] = EVIL
    page = render_html(session)
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the report's own sorting code


def test_measured_report_does_not_say_estimated(make_session) -> None:
    page = render_html(make_session(measured=True))
    content = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    assert "estimated" not in content.lower()  # no banner, no labels
    assert "MEASURED" in page


def test_estimated_report_says_so_everywhere(make_session) -> None:
    page = render_html(make_session(measured=False))
    assert "<b>ESTIMATED.</b>" in page
    assert "ESTIMATED</span>" in page  # the sensor's tag
    assert "Total energy (estimated)" in page and "CO2 (estimated)" in page
    assert "energy (J, est.)" in page and "Every layer (ESTIMATED)" in page


def test_totals_kwh_per_step_and_co2_with_its_assumption(make_session) -> None:
    session = make_session()  # 20 J over 10 steps
    page = render_html(session)
    assert "5.56e-06 kWh" in page
    assert ">2 J<" in page and "10 steps" in page
    assert DEFAULT_GRID_G_PER_KWH == 400
    assert ">2.22 mg<" in page  # 20 J = 5.56e-6 kWh, at 400 g/kWh
    assert f"assuming {DEFAULT_GRID_G_PER_KWH:g} g CO2/kWh" in page
    assert "assuming 50 g CO2/kWh" in render_html(session, grid_g_per_kwh=50)
    session.meta["grid_g_per_kwh"] = 25
    assert "assuming 25 g CO2/kWh" in render_html(session)


def test_no_steps_no_energy_per_step(make_session) -> None:
    assert "Per step" not in render_html(make_session(steps=None))


def test_layer_table_has_every_layer_with_sort_keys(make_session) -> None:
    session = make_session()
    page = render_html(session)
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr") == len(session.layers())
    fc_backward = next(row for row in body.split("</tr>") if ">fc<" in row and "backward" in row)
    assert "data-v='9'" in fc_backward  # joules
    assert "data-v='0.45'" in fc_backward  # share of 20 J
    assert "data-v='0.9'" in fc_backward  # joules per call
    assert "class=noise" in next(row for row in body.split("</tr>") if ">act<" in row)


def test_run_facts_and_warnings_are_shown(make_session) -> None:
    page = render_html(
        make_session(host="node7", torch_version="2.9", warnings=["sampler fell behind"])
    )
    for fact in ("greenprof run train.py", "node7", "2.9", "10 ms", "sampler fell behind"):
        assert fact in page


def test_write_html_into_a_directory(tmp_path, make_session) -> None:
    path = write_html(make_session(), tmp_path)
    assert path == tmp_path / "report.html"
    assert path.read_text(encoding="utf-8").endswith("</html>\n")


def test_report_of_a_session_with_nothing_in_it() -> None:
    page = render_html(Session({}, pd.DataFrame()))
    assert "ESTIMATED" in page  # no sensor at all cannot be called measured


def test_the_report_shows_how_each_layer_was_measured(make_session):
    session = make_session()
    from greenprof.report.html import render_html

    calibrated = session.meta | {
        "calibration": {
            "calibrated": True,
            "seconds": 1.5,
            "replayed": ["a", "b"],
            "shared": {"c": "b"},
            "energy_j": 12.0,
        }
    }
    page = render_html(type(session)(calibrated, session.layers(), session.samples()))
    assert "2 modules replayed alone after the run, 1 sharing a replayed module" in page
    assert "charged to no row" in page
    assert "Power of each layer while it runs" in page
