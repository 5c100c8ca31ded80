"""Joules per token from one profile of generate() against separate profiles; decode overhead.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/generation_split.py [--rounds 7] [--calls 24]

On the model of ``examples/generate.py`` (a small GPT-2 trained briefly on library source, the
same prompts, greedy completion):

1. **Split.** Each round profiles ``--calls`` generate() calls (*one profile*);
   ``session.generation()`` splits each call at the end of its first forward. Its prefill is
   generate()'s setup (arguments checked, generation config, logits processors and stopping
   criteria built, cache created, the first step's inputs prepared) and the prompt's forward;
   its decode is all the rest: the first token's choice, each later step's forward with
   generate()'s per-step bookkeeping (model kwargs and attention mask updated, logits
   processors, argmax, padding of ended rows, stopping criteria, next inputs prepared), and
   generate()'s finish. Each reference below is its own profile, cut at the same point:

   - *model work*. Prefill: the prompt's forward alone, ``model(ids, attention_mask=mask,
     position_ids=positions, use_cache=True, logits_to_keep=1)``, the call generate() makes
     (positions count from each row's first unpadded token; only the last position's logits
     are kept), repeated until the profile lasts ``--seconds``; one prefill is the profile's
     joules over the repeats. Decode: one hand-written greedy KV-cache loop per generate()
     call, from the cache and logits of a prefill run *before* the profile starts (one per
     loop: a loop extends its cache in place), so nothing is subtracted. Per step it does what
     greedy search needs and no more: argmax of the last logits, padding of rows that ended
     (EOS), attention mask and positions extended by one, the token fed with the cache. It
     makes as many tokens as generate() did and checks they are generate()'s own. The same
     model work as generate() on each side of the cut, without generate()'s Python: its setup
     (in greenprof's prefill) and its bookkeeping beyond the loop's (in greenprof's decode).
     ``generate() beyond model work`` says how big that is: a call's joules in the one
     profile minus this reference's prefill and decode.
   - *generate() cut*. Prefill: generate() stopped by a forward hook that raises at the end of
     its first forward (greenprof's boundary exactly), repeated until the profile lasts
     ``--seconds``. Decode: a profile of ``--calls`` whole generate() calls, per call, minus
     that prefill. Both sides then hold the same work, bookkeeping included, so the difference
     is greenprof's attribution (and noise).

   Per-token figures divide by the same counts everywhere: prompt tokens without padding, new
   tokens up to each row's EOS (greenprof's counts). Printed: medians over the rounds, the
   median and range of the per-round relative differences, the seconds behind each figure, and
   how far the two profiles of the same generate() calls (*one profile*, *whole*) differ: the
   machine's own noise between profiles, which no comparison of separate profiles can beat.
   A round's five profiles run in an order rotated round by round, each after a garbage
   collection, so that neither the order nor the last profile's garbage favours one of them.
2. **Decode overhead.** New tokens per second of ``--speed-calls`` generate() calls without a
   profiler, inside ``greenprof.profile()`` and inside ``torch.profiler.profile()`` (CPU
   activities), interleaved round by round; the overhead is the median of the per-round ratios,
   minus one.

Nothing here is a stored number: every figure comes from this run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
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
from gpt2_lm import NEWLINE, PAD, complete, prompts, split_stream, trained  # noqa: E402

import greenprof  # noqa: E402

REFERENCES = {"work": "model work", "cut": "generate() cut"}


def profiled(work: Callable[[], Any]) -> greenprof.Session:
    # The garbage of earlier profiles (their sessions) is collected now, not inside this one.
    gc.collect()
    with greenprof.profile(calibrate=False) as prof:
        work()
    return prof.session


def prefill(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> tuple[Any, Any]:
    """The prompt's forward as generate() makes it: ``(output, position ids)``.

    Positions count from each row's first unpadded token, as generate() numbers them.
    """
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    out = model(ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    return out, positions


def decode(model: torch.nn.Module, first: tuple[Any, Any], mask: torch.Tensor, steps: int):
    """Greedy KV-cache decoding of ``steps`` tokens per row from a prefill's ``first``.

    Rows that chose the EOS (a newline) get padding afterwards, as in generate(); the model
    runs ``steps - 1`` forwards, since the last token chosen is not fed back.
    """
    (out, positions), ended = first, torch.zeros(mask.shape[0], dtype=torch.bool)
    chosen = []
    for step in range(steps):
        token = torch.where(ended, PAD, out.logits[:, -1].argmax(dim=-1))
        ended |= token == NEWLINE
        chosen.append(token)
        if step + 1 < steps:
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            positions = positions[:, -1:] + 1
            out = model(
                token[:, None],
                attention_mask=mask,
                position_ids=positions,
                cache=out.cache,
                use_cache=True,
                logits_to_keep=1,
            )
    return torch.stack(chosen, dim=1)


class _Cut(Exception):
    """Stops generate() where greenprof's prefill ends."""


def _raise_cut(*_: Any) -> None:
    raise _Cut


def cut_generate(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> None:
    """generate() up to the end of its first outermost forward, and no further."""
    handle = model.register_forward_hook(_raise_cut)
    try:
        complete(model, ids, mask)
    except _Cut:
        pass
    finally:
        handle.remove()


def repeats_for(seconds: float, work: Callable[[], Any], trials: int = 10) -> int:
    """How many repeats of ``work`` take about ``seconds``, timed over ``trials`` runs."""
    started = time.perf_counter()
    for _ in range(trials):
        work()
    return math.ceil(seconds * trials / (time.perf_counter() - started))


def split_round(
    model, ids, mask, calls: int, repeats: dict[str, int], made: torch.Tensor, turn: int
) -> dict[str, Any]:
    """One round: per-token figures from one profile and from the two references.

    The five profiles run in an order rotated by ``turn``, so none is always first.
    """

    def generating() -> None:
        for _ in range(calls):
            complete(model, ids, mask)

    firsts = [prefill(model, ids, mask) for _ in range(calls)]  # outside the decode profile
    loops: list[torch.Tensor] = []

    def decoding() -> None:
        for first in firsts:
            loops.append(decode(model, first, mask, made.shape[1]))

    works: list[Callable[[], Any]] = [
        generating,
        lambda: [prefill(model, ids, mask) for _ in range(repeats["work"])],
        decoding,
        lambda: [cut_generate(model, ids, mask) for _ in range(repeats["cut"])],
        generating,
    ]
    order = [(turn + i) % len(works) for i in range(len(works))]
    sessions = dict(zip(order, (profiled(works[i]) for i in order), strict=True))
    one, pre, dec, cut, whole = (sessions[i] for i in range(len(works)))
    rows = one.generation()
    prompt, new = int(rows["prompt_tokens"].sum()) / calls, int(rows["new_tokens"].sum()) / calls
    work = (pre.total_energy_j / repeats["work"], dec.total_energy_j / calls)
    cut_j, cut_s = cut.total_energy_j / repeats["cut"], cut.duration_s / repeats["cut"]
    call_j = float((rows["prefill_j"] + rows["decode_j"]).sum()) / calls
    return {
        "one": (float(rows["prefill_j"].mean()) / prompt, float(rows["decode_j"].mean()) / new),
        "work": (work[0] / prompt, work[1] / new),
        "cut": (cut_j / prompt, (whole.total_energy_j / calls - cut_j) / new),
        "beyond": (call_j - sum(work)) / call_j,
        "drift": whole.total_energy_j / one.total_energy_j - 1,
        "one_s": (float(rows["prefill_s"].mean()), float(rows["decode_s"].mean())),
        "work_s": (pre.duration_s / repeats["work"], dec.duration_s / calls),
        "cut_s": (cut_s, whole.duration_s / calls - cut_s),
        "durations_s": [s.duration_s for s in (one, pre, dec, cut, whole)],
        "tokens": (prompt, new),
        "same_tokens": all(torch.equal(loop, made) for loop in loops),
        "estimated": one.estimated,
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


def print_split(rounds: list[dict[str, Any]], calls: int, repeats: dict[str, int]) -> None:
    """The per-token figures of one profile against each reference, with their differences."""
    med = statistics.median
    first = rounds[0]
    matched = all(r["same_tokens"] for r in rounds)
    print(
        f"\nper call: {first['tokens'][0]:g} prompt tokens, {first['tokens'][1]:g} new tokens; "
        f"the hand-written loop made generate()'s tokens: {'yes' if matched else 'NO'}"
    )
    one, pre, dec, cut, whole = (med(r["durations_s"][i] for r in rounds) for i in range(5))
    print(
        f"profiles, median s: one {one:.2f} ({calls} calls); model work: prefill {pre:.2f} "
        f"({repeats['work']} forwards), decode {dec:.2f} ({calls} loops); generate() cut: "
        f"prefill {cut:.2f} ({repeats['cut']} cut calls), whole {whole:.2f} ({calls} calls)"
    )
    drift = [r["drift"] for r in rounds]
    print(
        f"the same {calls} calls profiled twice a round (one, whole), joules differ by: median "
        f"{med(drift):+.1%}, range {min(drift):+.1%} to {max(drift):+.1%} (the machine's noise)"
    )
    unit = "J, ESTIMATED" if first["estimated"] else "J"
    for ref, name in REFERENCES.items():
        print(f"\nper-token figures against {name}, median of {len(rounds)} rounds ({unit})")
        print(f"{'':22}{'one profile':>14}{name:>16}{'difference':>12}")
        for i, label in ((1, "decode per new token"), (0, "prefill per prompt")):
            one = med(r["one"][i] for r in rounds)
            sep = med(r[ref][i] for r in rounds)
            diffs = [r["one"][i] / r[ref][i] - 1 for r in rounds]
            print(
                f"{label:22}{one * 1e3:11.4f} mJ{sep * 1e3:13.4f} mJ{(one / sep - 1):+11.1%}"
                f"   (per round: median {med(diffs):+.1%}, "
                f"range {min(diffs):+.1%} to {max(diffs):+.1%})"
            )
        for i, label in ((1, "decode s per call"), (0, "prefill s per call")):
            one = med(r["one_s"][i] for r in rounds)
            sep = med(r[f"{ref}_s"][i] for r in rounds)
            print(f"{label:22}{one * 1e3:11.3f} ms{sep * 1e3:13.3f} ms{one / sep - 1:+11.1%}")
        if ref == "work":
            beyond = [r["beyond"] for r in rounds]
            print(
                f"generate() beyond model work: {med(beyond):+.1%} of a call's joules "
                f"(per round: {min(beyond):+.1%} to {max(beyond):+.1%})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument(
        "--calls", type=int, default=generate.CALLS, help="generate() calls (and loops) a profile"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="each prefill profile's length")
    parser.add_argument("--skip-split", action="store_true", help="only the speed test")
    parser.add_argument("--speed-rounds", type=int, default=15, help="rounds of the speed test")
    parser.add_argument("--speed-calls", type=int, default=4, help="generate() calls a round")
    parser.add_argument("--steps", type=int, default=generate.TRAIN_STEPS, help="training steps")
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    model = trained(args.steps, **generate.SHAPE).eval()
    ids, mask = prompts(split_stream("test"), 8)
    rounds: list[dict[str, Any]] = []
    with threads(1), torch.inference_mode():
        made = complete(model, ids, mask)[:, ids.shape[1] :]  # also the warm-up
        repeats = {
            "work": repeats_for(args.seconds, lambda: prefill(model, ids, mask)),
            "cut": repeats_for(args.seconds, lambda: cut_generate(model, ids, mask)),
        }
        if not args.skip_split:
            for turn in range(args.rounds):
                rounds.append(split_round(model, ids, mask, args.calls, repeats, made, turn))
        speeds: dict[str, list[float]] = {"plain": [], "greenprof": [], "torch.profiler": []}
        for _ in range(args.speed_rounds):
            for name, around in (
                ("plain", contextlib.nullcontext),
                ("greenprof", lambda: greenprof.profile(calibrate=False)),
                ("torch.profiler", torch_profiler),
            ):
                speeds[name].append(rate(model, ids, mask, args.speed_calls, around))
    if rounds:
        print_split(rounds, args.calls, repeats)
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
