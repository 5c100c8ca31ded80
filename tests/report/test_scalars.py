import pytest

from greenprof.report.scalars import energy_scalars
from greenprof.session import Session


def test_totals_per_step_ranks_regions_and_top_layers(make_session) -> None:
    session = make_session(  # 20 J in 10 steps, measured
        by_rank=[
            {"rank": 0, "energy_j": 15.0, "duration_s": 2.0},
            {"rank": 1, "energy_j": 5.0, "duration_s": 1.5},
        ]
    )
    layers = session.layers()
    layers.loc[layers["module"] == "act", "region"] = "eval"
    figures = energy_scalars(Session(session.meta, layers))
    assert figures["greenprof/energy_j"] == 20.0
    assert figures["greenprof/energy_lo_j"] == pytest.approx(18.0)
    assert figures["greenprof/energy_per_step_j"] == 2.0
    assert figures["greenprof/energy_per_step_hi_j"] == pytest.approx(2.2)
    assert figures["greenprof/steps"] == 10
    assert figures["greenprof/rank/1/energy_j"] == 5.0
    assert figures["greenprof/rank/0/duration_s"] == 2.0
    assert figures["greenprof/region/eval_j"] == pytest.approx(0.1)
    assert figures["greenprof/region/(none)_j"] == pytest.approx(19.9)
    assert figures["greenprof/layer/fc_j"] == 15.0  # forward and backward, self
    assert not any("estimated" in name for name in figures)


def test_estimated_figures_say_so_and_no_steps_no_per_step(make_session) -> None:
    figures = energy_scalars(make_session(measured=False, steps=None))
    assert figures["greenprof/estimated_energy_j"] == 20.0
    assert figures["greenprof/layer/fc_estimated_j"] == 15.0
    assert not any("per_step" in name or "rank/" in name for name in figures)
    assert "greenprof/energy_j" not in figures
