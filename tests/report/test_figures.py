import base64

import pandas as pd
import pytest

from greenprof.attribute.tree import inclusive_energy
from greenprof.report import figures
from greenprof.session import Session


def test_icicle_children_lie_inside_their_parent_and_tiny_nodes_are_dropped() -> None:
    layers = pd.DataFrame(
        [
            ("", "Net", "forward", 1, 0.1, 10.0, 10.0, 10.0),
            ("a", "Block", "forward", 1, 0.1, 5.0, 5.0, 5.0),
            ("a.x", "Linear", "forward", 1, 0.1, 20.0, 20.0, 20.0),
            ("b", "Linear", "forward", 1, 0.1, 30.0, 30.0, 30.0),
            ("c", "Linear", "forward", 1, 0.1, 0.01, 0.01, 0.01),
        ],
        columns=["module", "type", "phase", "calls", "time_s", *_energy_columns()],
    )
    boxes = figures.icicle_boxes(inclusive_energy(layers)).set_index("module")
    assert "c" not in boxes.index  # 0.01 J of 65 J
    assert boxes.loc["", "width"] == pytest.approx(65.01)
    for child, parent in (("a", ""), ("b", ""), ("a.x", "a")):
        assert boxes.loc[child, "x"] >= boxes.loc[parent, "x"]
        child_end = boxes.loc[child, "x"] + boxes.loc[child, "width"]
        assert child_end <= boxes.loc[parent, "x"] + boxes.loc[parent, "width"] + 1e-9
    assert boxes.loc["a", "depth"] == 1 and boxes.loc["a.x", "depth"] == 2
    a_end = boxes.loc["a", "x"] + boxes.loc["a", "width"]
    b_end = boxes.loc["b", "x"] + boxes.loc["b", "width"]
    assert a_end <= boxes.loc["b", "x"] or b_end <= boxes.loc["a", "x"]  # siblings never overlap


def test_figures_are_svg_without_timestamps(synthetic) -> None:
    for draw in (figures.power_figure, figures.phase_stack_figure, figures.tree_figure):
        uri = figures.to_data_uri(draw(synthetic))
        assert uri.startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(uri.split(",", 1)[1]).decode()
        assert "<svg" in svg and "<dc:date>" not in svg


def test_figures_of_an_empty_session_still_draw() -> None:
    empty = Session({"duration_s": 0.0})
    for draw in (figures.power_figure, figures.phase_stack_figure, figures.tree_figure):
        assert figures.to_data_uri(draw(empty))


def _energy_columns() -> list[str]:
    return ["energy_j", "energy_lo_j", "energy_hi_j"]
