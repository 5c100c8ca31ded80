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


def _section(page: str, title: str) -> str:
    return page.split(f"<h2>{title}</h2>", 1)[1].split("</section>", 1)[0]


def test_a_run_of_several_ranks_has_a_ranks_section(make_session) -> None:
    by_rank = [
        {"rank": 0, "host": "n1", "energy_j": 12.0, "energy_lo_j": 11.0, "energy_hi_j": 13.0}
        | {"duration_s": 2.0, "steps": 10},
        {"rank": 1, "host": "n1", "energy_j": 8.0, "energy_lo_j": 7.0, "energy_hi_j": 9.0}
        | {"duration_s": 3.0, "steps": 10},
    ]
    page = render_html(make_session(by_rank=by_rank, ranks=[0, 1], missing_ranks=[2], world_size=3))
    ranks = _section(page, "Ranks")
    rows = ranks.split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("</tr>")
    assert "<td>0</td><td>n1</td><td>12 J ±1 J</td><td>2 s</td><td>10</td><td>1.2 J</td>" in rows[0]
    assert "<td>1</td>" in rows[1] and "<td>3 s</td>" in rows[1]
    assert "<td>2</td><td></td><td>wrote no part</td>" in rows[2]
    assert "slowest: rank 1" in ranks and "from 8 J to 12 J" in ranks
    assert "Rank(s) 2 of 3 wrote no part" in ranks


def test_one_process_has_no_ranks_or_regions_section(make_session) -> None:
    page = render_html(make_session())
    assert "<h2>Ranks</h2>" not in page and "<h2>Regions</h2>" not in page


def test_regions_have_their_energy_time_and_top_layers(make_session) -> None:
    session = make_session()
    layers = session.layers()
    layers.loc[(layers["module"] == "fc") & (layers["phase"] == "forward"), "region"] = "eval"
    page = render_html(Session(session.meta, layers, session.samples()))
    regions = _section(page, "Regions")
    rows = regions.split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("</tr>")
    assert rows[0].startswith("\n<tr><td>(outside any region)</td><td>14 J ±")
    assert (
        "<tr><td>eval</td><td>6 J ±500 mJ</td><td>30.0%</td><td>400 ms</td><td>fc 6 J</td>"
        in (rows[1])
    )
    assert "fc 9 J" in rows[0]  # the backward stayed outside
