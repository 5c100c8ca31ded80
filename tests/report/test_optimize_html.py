"""The optimize report: self-contained, escaped, and showing every step and layer."""

from __future__ import annotations

import re

import pandas as pd
from torch import nn

from greenprof.optimize_result import OptimizeResult, Step
from greenprof.report.optimize_html import per_layer_change, render_optimize_html
from greenprof.session import LAYER_COLUMNS, Session

EVIL = "<script>alert('x')</script>"


def session(rows: list[tuple[str, str, float]], estimated: bool = True) -> Session:
    frame = pd.DataFrame(
        [(m, t, "forward", 2, 0.1, j, j * 0.9, j * 1.1) for m, t, j in rows], columns=LAYER_COLUMNS
    )
    sensors = [{"name": "cpu-estimate", "device": "cpu", "measured": not estimated}]
    return Session({"sensors": sensors, "command": f"greenprof optimize {EVIL}"}, frame)


def step(index: int, accepted: bool, after: float | None, reason: str) -> Step:
    return Step(
        index=index,
        action="int8_dynamic",
        label=f"int8 dynamic on {EVIL}",
        targets=[EVIL, "fc"],
        params={"backend": "legacy"},
        expected_saving_j=1.0,
        expected_risk=0.005,
        energy_before_j=4.0,
        energy_before_lo_j=3.9,
        energy_before_hi_j=4.1,
        metric_before=0.9,
        energy_after_j=after,
        energy_after_lo_j=None if after is None else after - 0.1,
        energy_after_hi_j=None if after is None else after + 0.1,
        metric_after=None if after is None else 0.89,
        accepted=accepted,
        reason=reason,
        seconds=1.5,
    )


def result(**changes: object) -> OptimizeResult:
    values = dict(
        model=nn.Linear(2, 2),
        history=[
            step(1, True, 2.0, "energy -50%"),
            step(2, False, None, f"could not apply: {EVIL}"),
        ],
        before=session([(EVIL, "Linear", 6.0), ("fc", "Linear", 2.0)]),
        after=session([(EVIL, "Linear", 3.0), ("fc.down", "Linear", 0.5)]),
        metric_before=0.9,
        metric_after=0.89,
        energy_before_j=4.0,
        energy_before_lo_j=3.9,
        energy_before_hi_j=4.1,
        energy_after_j=2.0,
        energy_after_lo_j=1.9,
        energy_after_hi_j=2.1,
        allowed_drop=0.01,
        stopped="budget spent",
        meta={"repeats_before": 2, "repeats_after": 2},
    )
    values.update(changes)
    return OptimizeResult(**values)


def test_report_is_self_contained_and_escaped():
    page = render_optimize_html(result(error=EVIL))
    assert "<script>alert" not in page
    assert page.count("&lt;script&gt;alert(") >= 4
    assert not re.search(r"(src|href)=['\"]?https?://", page)
    assert "data:image/svg+xml;base64," in page


def test_report_says_estimated_and_shows_every_step():
    page = render_optimize_html(result())
    assert "<b>ESTIMATED.</b>" in page and "Before, per workload call (estimated)" in page
    body = page.split("id=steps>", 1)[1].split("</table>", 1)[0]
    assert body.count("<tr") == 3  # header and two steps
    assert "could not apply" in body
    assert "50.0%" in page  # the saving card


def test_measured_run_is_not_called_estimated():
    measured = result(
        before=session([("fc", "Linear", 1.0)], estimated=False),
        after=session([("fc", "Linear", 0.5)], estimated=False),
    )
    page = render_optimize_html(measured).split("</style>", 1)[1]
    assert "ESTIMATED" not in page and "estimated" not in page


def test_per_layer_change_is_per_call_and_keeps_vanished_and_new_layers():
    rows = per_layer_change(result()).set_index("module")
    assert rows.loc[EVIL, "before_j"] == 3.0 and rows.loc[EVIL, "after_j"] == 1.5
    assert pd.isna(rows.loc["fc", "after_j"]) and rows.loc["fc", "change_j"] == -1.0
    assert pd.isna(rows.loc["fc.down", "before_j"]) and rows.loc["fc.down", "type_before"] == ""
    assert list(rows.index[:2]) == [EVIL, "fc"]
