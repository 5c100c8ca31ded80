"""Microseconds the hooks add per module call, forward only and forward + backward.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/hook_cost.py [--layers 200] [--steps 200]

A model of many tiny Linear layers (8x8, batch 1) makes the per-call cost of the hooks dominate
the step. Steps run without hooks and under a bare :class:`HookRecorder` (no sampler, no
timeline) alternately; a step's time is the CPU time of the calling thread (autograd runs CPU
backward there), and each variant keeps its fastest step, so that other processes on the machine
disturb the figures little. The cost per module call is ``(hooked - plain) / module calls``, for
the forward, the backward and the whole step.
Variants: forward under ``no_grad``; forward + backward with positional inputs; forward +
backward with the layers called by keyword (``layer(x=h)``, the Llama style).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from greenprof.track.hooks import HookRecorder


class KwargLinear(nn.Linear):
    """A Linear layer whose input comes by keyword."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return super().forward(x)


class Chain(nn.Module):
    """Calls its layers one after the other, positionally or by keyword."""

    def __init__(self, layers: int, by_keyword: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(KwargLinear(8, 8) for _ in range(layers))
        self.by_keyword = by_keyword

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # noqa: D102
        for layer in self.layers:
            h = layer(x=h) if self.by_keyword else layer(h)
        return h


def one_step_s(model: nn.Module, x: torch.Tensor, backward: bool) -> tuple[float, float]:
    """Seconds of this thread's CPU time of one step's forward and of its backward."""
    t0 = time.thread_time()
    if backward:
        loss = model(x).sum()
        t1 = time.thread_time()
        loss.backward()
    else:
        with torch.no_grad():
            model(x)
        t1 = time.thread_time()
    return t1 - t0, time.thread_time() - t1


def measure(label: str, model: nn.Module, backward: bool, steps: int) -> None:
    x = torch.randn(1, 8, requires_grad=backward)
    calls = sum(1 for _ in model.modules())  # one call of each module per step
    rec = HookRecorder()
    plain: list[tuple[float, float]] = []
    hooked: list[tuple[float, float]] = []
    for i in range(steps + 5):  # the first steps warm up (and register the modules' names)
        plain.append(one_step_s(model, x, backward))
        with rec:
            hooked.append(one_step_s(model, x, backward))
        rec.drain()
        if i < 5:
            plain.clear()
            hooked.clear()
    # Fastest step of each: the one least disturbed by other processes.
    parts = [(min(p[j] for p in plain), min(h[j] for h in hooked)) for j in (0, 1)]
    total = min(sum(p) for p in plain), min(sum(h) for h in hooked)
    print(f"  {label}  ({calls} module calls a step)")
    for name, (base, cost) in zip(("forward", "backward", "step"), [*parts, total], strict=True):
        if name == "backward" and not backward:
            continue
        print(
            f"    {name:8s} plain {base * 1e6 / calls:6.2f} us/call   hooked "
            f"{cost * 1e6 / calls:6.2f} us/call   cost {(cost - base) * 1e6 / calls:6.2f} us/call"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=200)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.layers} Linear(8, 8) layers, 1 thread")
    positional, by_keyword = Chain(args.layers, False), Chain(args.layers, True)
    measure("forward only (no_grad)", positional, False, args.steps)
    measure("forward + backward", positional, True, args.steps)
    measure("forward + backward, keyword inputs", by_keyword, True, args.steps)


if __name__ == "__main__":
    main()
