"""Cost of greenprof's forward hooks per module call, on the main thread and on a worker thread.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/hook_call_cost.py [--layers 200] [--calls 200] [--rounds 7]

A model of many tiny Linear layers runs without gradients, so that the hooks dominate; each round
times the same forwards without hooks and under a bare :class:`HookRecorder` (the timeline is not
fed). It prints the median extra microseconds per module call (pre- plus post-hook), for a model
run on the thread that installed the hooks and for one run on another thread.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import torch

from greenprof.track.hooks import HookRecorder


def time_calls(model: torch.nn.Module, x: torch.Tensor, calls: int) -> float:
    with torch.no_grad():
        t0 = time.perf_counter()
        for _ in range(calls):
            model(x)
        return time.perf_counter() - t0


def on_thread(fn, *args) -> float:
    out: list[float] = []
    worker = threading.Thread(target=lambda: out.append(fn(*args)))
    worker.start()
    worker.join()
    return out[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=200)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(args.layers)]).eval()
    x = torch.randn(1, 4)
    module_calls = (args.layers + 1) * args.calls
    for where, run in (("main thread", time_calls), ("worker thread", None)):
        extra_us = []
        for _ in range(args.rounds):

            def timed(model=model, run=run):
                if run is None:
                    return on_thread(time_calls, model, x, args.calls)
                return run(model, x, args.calls)

            plain = timed()
            with HookRecorder() as rec:
                timed()  # names registered on the first call
                rec.drain()
                hooked = timed()
                rec.drain()
            extra_us.append((hooked - plain) / module_calls * 1e6)
        print(
            f"{where:14s}: {statistics.median(extra_us):6.2f} us extra per module call "
            f"(median of {args.rounds} rounds; {args.layers} Linear(4, 4), {args.calls} forwards)"
        )


if __name__ == "__main__":
    main()
