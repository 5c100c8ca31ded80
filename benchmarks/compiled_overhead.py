"""greenprof.profile() on a torch.compile-d MLP: graph breaks, compiled frames and step time.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/compiled_overhead.py [--backend inductor] [--steps 50] [--rounds 5]

A 6-layer MLP (hidden 512, batch 64) is compiled and trained with SGD. It prints the frames
compiled and the graph breaks dynamo counted when it first compiles the model without profiling
and (after a reset) under greenprof.profile(), then the median step time of both, timed in
interleaved rounds so that drift in the machine's speed hits each equally, and the session's rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torch._dynamo
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

import greenprof


def make_model() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(6):
        layers += [nn.Linear(512, 512), nn.ReLU()]
    return nn.Sequential(*layers)


def steps_s(model, opt, x, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times


def compile_counts(backend: str, profiled: bool) -> tuple[int, int]:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    counter = CompileCounterWithBackend(backend)
    model = make_model()
    compiled = torch.compile(model, backend=counter)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(64, 512)
    if profiled:
        with greenprof.profile(calibrate=False):
            steps_s(compiled, opt, x, 3)
    else:
        steps_s(compiled, opt, x, 3)
    breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
    return counter.frame_count, breaks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    # torch warns that global hooks also fire for the OptimizedModule: greenprof expects that.
    warnings.filterwarnings("ignore", message="Using `torch.compile")
    for profiled in (False, True):
        frames, breaks = compile_counts(args.backend, profiled)
        label = "greenprof.profile()" if profiled else "plain"
        print(f"{label:20s} frames compiled {frames}, graph breaks {breaks}")
    torch._dynamo.reset()
    model = make_model()
    compiled = torch.compile(model, backend=args.backend)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(64, 512)
    steps_s(compiled, opt, x, 5)  # compile and warm up
    plain, profiled = [], []
    prof = None
    for _ in range(args.rounds):
        plain += steps_s(compiled, opt, x, args.steps)
        prof = greenprof.profile(calibrate=False)
        with prof:
            profiled += steps_s(compiled, opt, x, args.steps)
    base = statistics.median(plain)
    print(f"backend {args.backend}, {args.rounds}x{args.steps} steps each")
    for label, times in (("plain", plain), ("greenprof", profiled)):
        med = statistics.median(times)
        print(f"  {label:10s} median step {med * 1e3:8.3f} ms   ratio {med / base:6.3f}")
    assert prof is not None and prof.session is not None
    rows = prof.session.layers()[["module", "type", "phase", "calls"]]
    print(rows.to_string(index=False))


if __name__ == "__main__":
    main()
