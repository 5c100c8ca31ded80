import json

import pandas as pd
import pytest

from greenprof.errors import SessionFormatError
from greenprof.session import FORMAT_VERSION, LAYER_COLUMNS, OUTSIDE_MODULE, Session


def make_session() -> Session:
    layers = pd.DataFrame(
        [
            ["encoder.0", "Linear", "forward", 10, 0.5, 40.0, 38.0, 42.0],
            ["encoder.0", "Linear", "backward", 10, 0.9, 70.0, 66.0, 74.0],
            ["", "Net", "forward", 10, 0.01, 1.0, 0.9, 1.1],
            [OUTSIDE_MODULE, "", "other", 0, 0.2, 9.0, 8.0, 10.0],
        ],
        columns=LAYER_COLUMNS,
    )
    meta = {
        "total_energy_j": 120.0,
        "duration_s": 1.6,
        "sensors": [{"name": "rapl:package-0", "device": "cpu", "measured": True}],
        "warnings": ["something to say"],
    }
    return Session(meta, layers)


def test_round_trip_keeps_tables_and_meta(tmp_path):
    session = make_session()
    session.save(tmp_path)
    loaded = Session.load(tmp_path)
    pd.testing.assert_frame_equal(loaded.layers(), session.layers(), check_dtype=False)
    assert loaded.total_energy_j == 120.0
    assert loaded.meta["format_version"] == FORMAT_VERSION
    assert loaded.warnings == ["something to say"]
    assert not loaded.estimated
    assert loaded.layers().module.tolist()[2] == ""


def test_queries_read_like_sentences():
    session = make_session()
    assert session.total() == 120.0
    by_module = session.by_module()
    assert by_module.iloc[0].module == "encoder.0"
    assert by_module.iloc[0].energy_j == pytest.approx(110.0)
    assert by_module.iloc[0].calls == 10  # forward and backward of 10 calls, not 20
    assert set(session.by_phase().phase) == {"forward", "backward", "other"}


def test_notebook_repr_is_a_small_escaped_table():
    session = make_session()
    session._layers.loc[0, "module"] = "<script>x</script>"
    html = session._repr_html_()
    assert "<table>" in html and "&lt;script&gt;" in html and "<script>" not in html


def test_a_sensor_list_with_an_estimate_marks_the_session_estimated():
    session = make_session()
    session.meta["sensors"].append({"name": "cpu-estimate", "device": "cpu", "measured": False})
    assert session.estimated


def test_newer_format_is_refused_with_the_fix(tmp_path):
    make_session().save(tmp_path)
    meta = json.loads((tmp_path / "session.json").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "session.json").write_text(json.dumps(meta))
    with pytest.raises(SessionFormatError, match="Upgrade greenprof"):
        Session.load(tmp_path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "session.json").unlink(), "session.json: missing"),
        (lambda d: (d / "session.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "session.json").write_text("[]"), "expected a JSON object"),
        (lambda d: (d / "layers.csv").unlink(), "layers.csv: missing"),
        (lambda d: (d / "layers.csv").write_text(""), "empty file"),
        (lambda d: (d / "layers.csv").write_text("module,type\nx,y\n"), "missing columns"),
    ],
)
def test_damaged_run_directories_name_the_file_and_the_problem(tmp_path, damage, message):
    make_session().save(tmp_path)
    damage(tmp_path)
    with pytest.raises(SessionFormatError, match=message):
        Session.load(tmp_path)


def test_a_number_column_with_text_is_reported_with_its_line(tmp_path):
    make_session().save(tmp_path)
    text = (tmp_path / "layers.csv").read_text().splitlines()
    text[2] = text[2].replace("70.0", "seventy")
    (tmp_path / "layers.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(SessionFormatError, match="line 3: column energy_j"):
        Session.load(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(SessionFormatError, match="no such run directory"):
        Session.load(tmp_path / "nope")


def test_a_run_directory_without_a_region_column_reads_as_outside_any_region(tmp_path):
    import pandas as pd

    Session({"total_energy_j": 1.0}).save(tmp_path)
    old = pd.DataFrame([["lin", "Linear", "forward", 2, 0.1, 1.0, 0.9, 1.1]], columns=LAYER_COLUMNS)
    old.to_csv(tmp_path / "layers.csv", index=False)
    layers = Session.load(tmp_path).layers()
    assert list(layers["region"]) == [""]
    assert layers["energy_j"].sum() == 1.0
