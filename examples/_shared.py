"""What both examples do alike: train briefly, pin threads, and print the optimize outcome."""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

import greenprof
from greenprof.recommend.actions.bf16 import bf16_is_fast
from greenprof.recommend.task import OPTION_KEYS

#: Changes optimize may try in the examples: enough for the big wins, short enough for a demo.
BUDGET = 4


def train(
    model: nn.Module,
    batch: Callable[[torch.Generator], dict[str, torch.Tensor]],
    *,
    steps: int,
    lr: float,
    seed: int = 0,
    log_every: int = 50,
) -> None:
    """Train ``model`` for ``steps`` AdamW steps on ``batch(generator)`` (kwargs with ``labels``).

    Where the CPU computes bf16 natively, the forward pass runs under bf16 autocast: about three
    times faster here, which is what lets a transformer learn something in a minute.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.15
    )
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_is_fast("cpu"))
    model.train()
    started, recent = time.perf_counter(), []
    for step in range(1, steps + 1):
        with autocast:
            loss = model(**batch(generator)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        recent.append(float(loss.detach()))
        if step % log_every == 0 or step == steps:
            mean = sum(recent) / len(recent)
            print(
                f"  step {step:4d}/{steps}  loss {mean:.3f}  {time.perf_counter() - started:5.1f} s"
            )
            recent = []
    model.eval()


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous number.

    The examples measure inference single-threaded: on a shared machine the threads of a
    parallel kernel spin while waiting for a descheduled peer, which inflates the CPU time the
    energy estimate is based on and buries the differences between models in noise.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def print_outcome(result: Any, *, samples_per_call: int, metric: str, fmt: str) -> None:
    """Print what optimize kept and the before/after per sample, with intervals."""
    unit = "(estimated)" if result.estimated else "(measured)"
    for step in result.history:
        mark = "kept    " if step.accepted else "rejected"
        print(f"  {step.index:2d}. {mark} {step.label} {step.params or ''}\n      {step.reason}")

    # Per call, the figures are shared out over the samples; per new token they already are.
    per_token = result.objective == "j-per-token"
    count = 1 if per_token else samples_per_call

    def per_sample(value: float) -> str:
        return f"{value / count * 1e3:.3f} mJ"

    print(
        f"energy per {'new token' if per_token else 'sample'}: "
        f"{per_sample(result.energy_before_j)} "
        f"[{per_sample(result.energy_before_lo_j)}, {per_sample(result.energy_before_hi_j)}] -> "
        f"{per_sample(result.energy_after_j)} "
        f"[{per_sample(result.energy_after_lo_j)}, {per_sample(result.energy_after_hi_j)}] {unit}"
    )
    print(
        f"saved {result.saving:.1%} (range {result.saving_lo:.1%} to {result.saving_hi:.1%});"
        f" {metric} {format(result.metric_before, fmt)} -> {format(result.metric_after, fmt)}"
    )


def optimize_task(task: dict[str, Any], *, budget: int = BUDGET, out: str | None = None) -> Any:
    """Run ``greenprof.optimize`` on a ``make_task()`` dict, with the options the task suggests."""
    options = {key: task[key] for key in OPTION_KEYS if key in task}
    return greenprof.optimize(
        task["model"], task["workload"], task["evaluate"], budget=budget, out=out, **options
    )


def run_example(
    make_task: Callable[[int], dict[str, Any]],
    *,
    description: str,
    steps: int,
    out: str,
    metric: str,
    fmt: str,
) -> None:
    """Command line of an example: train, report the metric, optimize, print the outcome."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=steps, help="training steps")
    parser.add_argument("--budget", type=int, default=BUDGET, help="changes optimize may try")
    parser.add_argument("--out", default=out, help="report directory")
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    started = time.perf_counter()
    task = make_task(args.steps)
    print(f"{metric} before: {format(task['evaluate'](task['model']), fmt)}")
    result = optimize_task(task, budget=args.budget, out=args.out)
    print_outcome(result, samples_per_call=task["samples_per_call"], metric=metric, fmt=fmt)
    print(f"report: {args.out}/report.html  ({time.perf_counter() - started:.0f} s in all)")
