import json

import pandas as pd

from greenprof.report.chrome import chrome_trace, write_chrome_trace
from greenprof.session import Session


def test_trace_has_a_slice_per_span_and_a_counter_per_sensor(synthetic, tmp_path) -> None:
    path = write_chrome_trace(synthetic, tmp_path / "trace.json")
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    assert len(slices) == len(synthetic.spans())
    assert {e["cat"] for e in slices} == {"forward", "backward", "optimizer"}
    for event in slices:
        assert event["dur"] >= 0 and event["ts"] >= 0
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
    counters = [e for e in events if e["ph"] == "C"]
    assert {e["name"] for e in counters} == {
        "nvml:0 power (measured)",
        "rapl:package-0 power (measured)",
    }
    for name in {e["name"] for e in counters}:
        times = [e["ts"] for e in counters if e["name"] == name]
        assert times == sorted(times)
    assert all(set(e["args"]) == {"W"} and e["args"]["W"] > 0 for e in counters)


def test_parents_come_before_the_children_they_contain(synthetic) -> None:
    slices = [e for e in chrome_trace(synthetic)["traceEvents"] if e["ph"] == "X"]
    assert slices[0]["name"] == "(root)" and slices[1]["args"]["depth"] == 1
    assert [e["ts"] for e in slices] == sorted(e["ts"] for e in slices)


def test_estimated_power_is_labelled(synthetic_estimated) -> None:
    names = {e["name"] for e in chrome_trace(synthetic_estimated)["traceEvents"] if e["ph"] == "C"}
    assert "estimate:cpu power (estimated)" in names


def test_slices_are_ordered_so_that_each_nests_in_the_one_before() -> None:
    spans = pd.DataFrame(
        [("", "backward", 1.0, 1.00003, 0), ("head", "backward", 1.0, 1.05, 1)],
        columns=["module", "phase", "t0_s", "t1_s", "depth"],
    )
    events = chrome_trace(Session({}, None, None, spans))["traceEvents"]
    assert [e["name"] for e in events if e["ph"] == "X"] == ["head", "(root)"]
