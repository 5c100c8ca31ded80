"""Memory growth of a long profiled training run.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/memory.py [--steps 10000]

Trains the tiny BERT of benchmarks/overhead.py (2 layers, hidden 128, batch 4x32) for ``--steps``
steps inside one greenprof.profile() block and prints the process's resident memory at step 1,000
and at the end, and the growth in between (target: at most 50 MB over 10,000 steps).
"""

from __future__ import annotations

import argparse
import time

import psutil
import torch
from overhead import make_model

import greenprof


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--baseline-step", type=int, default=1_000, help="also the report period")
    parser.add_argument("--vocab", type=int, default=30522, help="smaller runs faster")
    args = parser.parse_args()
    model = make_model(2, 128, vocab=args.vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(0, args.vocab, (4, 32))
    labels = torch.randint(0, 2, (4,))
    baseline = None
    t0 = time.perf_counter()
    with greenprof.profile() as prof:
        for step in range(1, args.steps + 1):
            model(input_ids=batch, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step == args.baseline_step:
                baseline = rss_mb()
            if step % args.baseline_step == 0:
                print(
                    f"step {step}: RSS {rss_mb():.1f} MB ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
        end = rss_mb()
    print(f"end: RSS {end:.1f} MB ({time.perf_counter() - t0:.0f} s)")
    if baseline is not None:
        print(f"growth after step {args.baseline_step}: {end - baseline:+.1f} MB")
    print(f"after attribution: RSS {rss_mb():.1f} MB; steps recorded {prof.session.meta['steps']}")


if __name__ == "__main__":
    main()
