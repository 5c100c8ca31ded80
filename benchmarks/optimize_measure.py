"""Joules per workload call on a slow counter, as the optimize loop measures them, vs the truth.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/optimize_measure.py [--update-ms 100] [--call-ms 10]

The ground-truth simulator of tests/simulate.py is the only sensor: its counter updates every
``--update-ms`` with 2% noise, and each workload call (two layers of known power, ~``--call-ms``
long) is far shorter than that. "Before" and "after" are two variants of the model (the second
with its hot layer halved, as a compression would leave it). Printed per variant: the J/call that
greenprof.recommend.measure reports (median over counter windows, 95% interval), the truth
(the simulator's joules over the profiled calls / calls) and the error.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from simulate import Busy, GroundTruthSensor  # noqa: E402

from greenprof.recommend.measure import default_profiler, measure  # noqa: E402


def variant(hot_s: float, cold_s: float, update_s: float, seed: int) -> tuple[float, ...]:
    model = nn.Sequential(Busy(hot_s), Busy(cold_s))
    watts = {"0": 120.0, "1": 40.0}
    sim = GroundTruthSensor(
        model, lambda n, m: watts.get(n, 30.0), update_s=(update_s, update_s), seed=seed
    )
    calls = 0
    truth_so_far = 0.0

    def workload(m: nn.Module) -> None:
        nonlocal calls, truth_so_far
        calls += 1
        if calls == 2:  # the first profiled call (the first one warms up, unprofiled)
            sim.start_truth()
        m(torch.zeros(1))
        if calls >= 2:  # the truth up to the end of the latest call, not of the profile
            truth_so_far = sum(sim.finish().values())

    sim.install()
    try:
        with torch.no_grad():
            result = measure(
                model,
                workload,
                profiler=default_profiler(sensors=[sim], calibrate=False),
                min_seconds=3.0,
                max_repeats=2000,
            )
            truth_j = truth_so_far / result.repeats
    finally:
        sim.close()
    return result.energy_j, result.energy_lo_j, result.energy_hi_j, truth_j, result.time_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-ms", type=float, default=100.0)
    parser.add_argument("--call-ms", type=float, default=10.0)
    args = parser.parse_args()
    call_s = args.call_ms / 1e3
    print(f"counter updates every {args.update_ms:g} ms; calls of ~{args.call_ms:g} ms")
    for i, (name, hot) in enumerate((("before", 0.5), ("after", 0.25))):
        update_s = args.update_ms / 1e3
        energy, lo, hi, truth, time_s = variant(hot * call_s, 0.5 * call_s, update_s, i)
        print(
            f"  {name:6} measured {energy:.4f} J/call [{lo:.4f}, {hi:.4f}]"
            f"  truth {truth:.4f} J/call  error {abs(energy - truth) / truth:6.2%}"
            f"  ({time_s * 1e3:.2f} ms/call)"
        )


if __name__ == "__main__":
    main()
