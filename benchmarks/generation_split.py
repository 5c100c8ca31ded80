"""Joules per token from one profile of generate() against separate profiles; decode overhead.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/generation_split.py [--rounds 7] [--calls 4]

On the model of ``examples/generate.py`` (a small GPT-2 trained briefly on library source):

1. **Split.** Each round profiles, in turn: ``--calls`` generate() calls (the split greenprof
   makes inside one profile: ``session.generation()``); the prefill alone, as
   ``generate(max_new_tokens=1)`` (generate's setup and first forward; repeated
   ``PREFILLS_PER_CALL`` times per call so the profile lasts); and the generate() calls again.
   Separately measured, prefill per prompt token is the prefill profile's joules over its
   prompt tokens, decode per new token is (generate profile - prefill profile) over the new
   tokens. Printed: the medians over the rounds, and the median and range of the per-round
   relative differences.
2. **Decode overhead.** New tokens per second of the same generate() calls without a profiler,
   inside ``greenprof.profile()`` and inside ``torch.profiler.profile()`` (CPU activities),
   interleaved round by round; the overhead is the median of the per-round ratios, minus one.

Nothing here is a stored number: every figure comes from this run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import pathlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import generate  # noqa: E402
from _shared import threads  # noqa: E402
from gpt2_lm import complete, prompts, split_stream, trained  # noqa: E402

import greenprof  # noqa: E402

#: The prefill profile repeats each call's prefill this often: alone, one prefill lasts a few
#: milliseconds, too short for a sensor's windows.
PREFILLS_PER_CALL = 10


def profiled(work: Callable[[], Any]) -> greenprof.Session:
    with greenprof.profile(calibrate=False) as prof:
        work()
    return prof.session


def split_round(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, calls: int):
    """One round: per-token figures from one profile and from separate ones."""

    def generating() -> None:
        for _ in range(calls):
            complete(model, ids, mask)

    def prefilling() -> None:
        for _ in range(calls * PREFILLS_PER_CALL):
            # generate()'s own setup and first step, the first new token chosen: its prefill.
            model.generate(ids, attention_mask=mask, max_new_tokens=1, do_sample=False)

    one = profiled(generating).generation()
    prefill = profiled(prefilling)
    again = profiled(generating)
    prompt, new = float(one["prompt_tokens"].sum()), float(one["new_tokens"].sum())
    prefill_j = prefill.total_energy_j / PREFILLS_PER_CALL  # the prefill of ``calls`` calls
    return {
        "one_decode": float(one["decode_j"].sum()) / new,
        "one_prefill": float(one["prefill_j"].sum()) / prompt,
        "sep_decode": (again.total_energy_j - prefill_j) / new,
        "sep_prefill": prefill_j / prompt,
        "estimated": prefill.estimated,
    }


def rate(model, ids, mask, calls: int, around: Callable[[], Any]) -> float:
    """New tokens per second of ``calls`` generate() calls inside ``around()``."""
    tokens = 0
    with around():
        started = time.perf_counter()
        for _ in range(calls):
            out = complete(model, ids, mask)
            tokens += out.shape[0] * (out.shape[1] - ids.shape[1])
        elapsed = time.perf_counter() - started
    return tokens / elapsed


def torch_profiler() -> Any:
    return torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])


def print_split(rounds: list[dict[str, Any]], calls: int) -> None:
    """The per-token figures of one profile against separate ones, with their differences."""
    unit = "J (ESTIMATED)" if rounds[0]["estimated"] else "J"
    print(f"\nper-token figures, median of {len(rounds)} rounds, {calls} calls each ({unit})")
    print(f"{'':22}{'one profile':>14}{'separate':>14}{'difference':>12}")
    for kind, label in (("decode", "decode per new token"), ("prefill", "prefill per prompt")):
        one = statistics.median(r[f"one_{kind}"] for r in rounds)
        sep = statistics.median(r[f"sep_{kind}"] for r in rounds)
        diffs = [r[f"one_{kind}"] / r[f"sep_{kind}"] - 1 for r in rounds]
        print(
            f"{label:22}{one * 1e3:11.4f} mJ{sep * 1e3:11.4f} mJ{(one / sep - 1):+11.1%}"
            f"   (per round: median {statistics.median(diffs):+.1%}, "
            f"range {min(diffs):+.1%} to {max(diffs):+.1%})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=4, help="generate() calls per profile")
    parser.add_argument("--skip-split", action="store_true", help="only the speed test")
    parser.add_argument("--speed-rounds", type=int, default=15, help="rounds of the speed test")
    parser.add_argument("--steps", type=int, default=generate.TRAIN_STEPS, help="training steps")
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    model = trained(args.steps, **generate.SHAPE).eval()
    ids, mask = prompts(split_stream("test"), 8)
    with threads(1), torch.inference_mode():
        complete(model, ids, mask)  # warm-up
        rounds = (
            []
            if args.skip_split
            else [split_round(model, ids, mask, args.calls) for _ in range(args.rounds)]
        )
        speeds: dict[str, list[float]] = {"plain": [], "greenprof": [], "torch.profiler": []}
        for _ in range(args.speed_rounds):
            for name, around in (
                ("plain", contextlib.nullcontext),
                ("greenprof", lambda: greenprof.profile(calibrate=False)),
                ("torch.profiler", torch_profiler),
            ):
                speeds[name].append(rate(model, ids, mask, args.calls, around))
    if rounds:
        print_split(rounds, args.calls)
    print(f"\ndecode speed, new tokens/s, median of {args.speed_rounds} interleaved rounds")
    plain = speeds["plain"]
    for name in ("plain", "greenprof", "torch.profiler"):
        ratios = [p / s - 1 for p, s in zip(plain, speeds[name], strict=True)]
        print(
            f"  {name:15}{statistics.median(speeds[name]):9.0f} tokens/s"
            + (f"   overhead {statistics.median(ratios):+.1%}" if name != "plain" else "")
        )


if __name__ == "__main__":
    main()
