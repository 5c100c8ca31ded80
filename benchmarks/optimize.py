"""Reproduce the optimize figures of both examples and print them as a table.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/optimize.py [--out reports/optimize-benchmark] [--json FILE]

Trains the BERT classifier and the GPT-2 language model of ``examples/`` from scratch, runs
``greenprof.optimize`` on each with the options the example suggests, and prints energy per
sample (per new token for GPT-2, whose workload generates text) before and after (greenprof's
own re-profiled figures, with their intervals), the metric before and after, and whether the
targets hold: BERT at least 50% fewer joules per sample with accuracy at most one point lower,
GPT-2 at least 40% fewer joules per new token with perplexity at most 3% higher.
Nothing here is a stored number: every figure comes from this run.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
import time
from typing import Any

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import bert_classifier  # noqa: E402
import gpt2_lm  # noqa: E402
from _shared import BUDGET, optimize_task  # noqa: E402

#: Per example: module, metric name, the energy saving required, and the metric check.
CASES = {
    "bert": (bert_classifier, "accuracy", 0.50, lambda before, after: after >= before - 0.01),
    "gpt2": (gpt2_lm, "perplexity", 0.40, lambda before, after: after <= before * 1.03),
}


def run_case(name: str, budget: int, out: pathlib.Path) -> dict[str, Any]:
    module, metric, needed, metric_ok = CASES[name]
    started = time.perf_counter()
    task = module.make_task()
    result = optimize_task(task, budget=budget, out=str(out / name))
    # Per workload call, the joules are shared out over its samples; per new token they are not.
    per_token = result.objective == "j-per-token"
    per_sample = 1.0 if per_token else 1.0 / task["samples_per_call"]
    return {
        "model": name,
        "per": "new token" if per_token else "sample",
        "metric": metric,
        "metric_before": result.metric_before,
        "metric_after": result.metric_after,
        "energy_before_j": result.energy_before_j * per_sample,
        "energy_before_lo_j": result.energy_before_lo_j * per_sample,
        "energy_before_hi_j": result.energy_before_hi_j * per_sample,
        "energy_after_j": result.energy_after_j * per_sample,
        "energy_after_lo_j": result.energy_after_lo_j * per_sample,
        "energy_after_hi_j": result.energy_after_hi_j * per_sample,
        "saving": result.saving,
        "saving_lo": result.saving_lo,
        "estimated": result.estimated,
        "kept": [
            step.label + (f" {step.params}" if step.params else "") for step in result.accepted
        ],
        "tried": len(result.history),
        "target_met": result.saving_lo >= needed
        and metric_ok(result.metric_before, result.metric_after),
        "seconds": time.perf_counter() - started,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'model':<6} {'metric':<10} {'before':>8} {'after':>8}   "
        f"{'mJ before':>24} {'mJ after':>24} {'per':>10} {'saved':>7} {'(low)':>7} "
        f"{'target':>7} {'time':>6}"
    )
    for r in rows:
        before, after = (
            f"{_mj(r[f'energy_{side}_j'])} "
            f"[{_mj(r[f'energy_{side}_lo_j'])}-{_mj(r[f'energy_{side}_hi_j'])}]"
            for side in ("before", "after")
        )
        print(
            f"{r['model']:<6} {r['metric']:<10} "
            f"{r['metric_before']:>8.4f} {r['metric_after']:>8.4f}   "
            f"{before:>24} {after:>24} {r['per']:>10} {r['saving']:>7.1%} {r['saving_lo']:>7.1%} "
            f"{'met' if r['target_met'] else 'MISSED':>7} {r['seconds']:>5.0f}s"
        )
        print(f"       kept: {'; '.join(r['kept']) or 'nothing'}")
    if any(r["estimated"] for r in rows):
        print("Energy is ESTIMATED (CPU time x rated power): no hardware counter was readable.")


def _mj(energy_j: float) -> str:
    return f"{energy_j * 1e3:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("reports/optimize-benchmark")
    )
    parser.add_argument("--budget", type=int, default=BUDGET)
    parser.add_argument("--only", choices=sorted(CASES), action="append")
    parser.add_argument("--json", type=pathlib.Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    rows = [run_case(name, args.budget, args.out) for name in (args.only or sorted(CASES))]
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
