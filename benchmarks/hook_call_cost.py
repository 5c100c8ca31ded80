"""Cost of greenprof's forward hooks per module call, on the main thread and on a worker thread.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/hook_call_cost.py [--layers 200] [--calls 200] [--rounds 9]

Two measures, each on the thread that installed the hooks and on another thread:

- end to end: a model of many tiny Linear layers runs without gradients (so that the hooks
  dominate), timed without hooks and under a bare :class:`HookRecorder` (the timeline is not fed);
  the extra time is divided by the module calls;
- hooks alone: the recorder's forward pre- and post-hook are called directly for a leaf module
  inside an open parent, without the module's own work or PyTorch's module call. These are the
  general path; the main thread's common call takes the inline path of
  :mod:`greenprof.track.calls`, which only the end-to-end figure shows.

Each prints the minimum and median over rounds in microseconds per module call; the minimum is
the figure least disturbed by other load on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable

import torch

from greenprof.track.hooks import HookRecorder


def forwards_s(model: torch.nn.Module, x: torch.Tensor, calls: int) -> float:
    with torch.no_grad():
        t0 = time.perf_counter()
        for _ in range(calls):
            model(x)
        return time.perf_counter() - t0


def hooks_s(rec: HookRecorder, parent: torch.nn.Module, leaf: torch.nn.Module, calls: int) -> float:
    args = (None,)
    rec._forward_pre(parent, args)
    t0 = time.perf_counter()
    for _ in range(calls):
        rec._forward_pre(leaf, args)
        rec._forward_post(leaf, args, {}, None)
    elapsed = time.perf_counter() - t0
    rec._forward_post(parent, args, {}, None)
    return elapsed


def run_on(thread: bool, fn: Callable[..., float], *args: object) -> float:
    if not thread:
        return fn(*args)
    out: list[float] = []
    worker = threading.Thread(target=lambda: out.append(fn(*args)))
    worker.start()
    worker.join()
    return out[0]


def report(label: str, us: list[float]) -> None:
    print(f"  {label:28s} min {min(us):6.2f} us   median {statistics.median(us):6.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=200)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(args.layers)]).eval()
    x = torch.randn(1, 4)
    module_calls = (args.layers + 1) * args.calls
    hook_calls = module_calls
    print(f"{args.layers} Linear(4, 4), {args.calls} forwards, {args.rounds} rounds")
    for thread in (False, True):
        where = "worker thread" if thread else "main thread"
        end_to_end, alone = [], []
        for _ in range(args.rounds):
            plain = run_on(thread, forwards_s, model, x, args.calls)
            with HookRecorder() as rec:
                run_on(thread, forwards_s, model, x, 1)  # names registered on the first call
                hooked = run_on(thread, forwards_s, model, x, args.calls)
                rec.drain()
                direct = run_on(thread, hooks_s, rec, model, model[0], hook_calls)
                rec.drain()
            end_to_end.append((hooked - plain) / module_calls * 1e6)
            alone.append(direct / hook_calls * 1e6)
        report(f"{where}, end to end", end_to_end)
        report(f"{where}, hooks alone", alone)


if __name__ == "__main__":
    main()
