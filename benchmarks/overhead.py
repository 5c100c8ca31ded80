"""Per-step overhead of greenprof.profile() on BERT training steps, against torch.profiler.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/overhead.py [--steps 30] [--skip-base]

For (a) a tiny BERT (2 layers, hidden 128, batch 4x32) and (b) a BERT-base-size model (12 layers,
hidden 768, batch 4x32), it times training steps without profiling, under greenprof.profile() and
under torch.profiler (CPU activities) and, for reference, with bare full module backward hooks
(the costly alternative to greenprof's output-node hooks). The variants are interleaved in rounds
so that drift in the machine's speed hits each equally; it prints the median step time of each and
the ratios. The time greenprof spends after the block (attribution) is printed separately.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time

import torch
import transformers

import greenprof


def make_model(
    layers: int, hidden: int, vocab: int = 30522
) -> transformers.BertForSequenceClassification:
    config = transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(2, hidden // 64),
        intermediate_size=4 * hidden,
        max_position_embeddings=64,
        num_labels=2,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def step_times(model, optimizer, batch, labels, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = model(input_ids=batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times


def torch_profiler():
    return torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])


@contextlib.contextmanager
def full_backward_hooks():
    """The way greenprof avoids: full backward hooks on every module, timestamps only."""
    from torch.nn.modules import module as nn_module

    events: list[tuple[int, int]] = []

    def stamp(*_args):
        events.append((time.perf_counter_ns(), 0))

    handles = [
        nn_module.register_module_forward_pre_hook(stamp),
        nn_module.register_module_forward_hook(stamp),
        nn_module.register_module_full_backward_pre_hook(stamp),
        nn_module.register_module_full_backward_hook(stamp),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def measure(name: str, layers: int, hidden: int, steps: int, rounds: int) -> None:
    model = make_model(layers, hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(0, 30522, (4, 32))
    labels = torch.randint(0, 2, (4,))
    step_times(model, optimizer, batch, labels, 3)  # warm up allocator and kernels
    results: dict[str, list[float]] = {
        "plain": [],
        "greenprof": [],
        "torch.profiler": [],
        "full bwd hooks": [],
    }
    attribution_s = []
    for _ in range(rounds):
        results["plain"] += step_times(model, optimizer, batch, labels, steps)
        prof = greenprof.profile()
        with prof:
            results["greenprof"] += step_times(model, optimizer, batch, labels, steps)
            t_exit = time.perf_counter()
        attribution_s.append(time.perf_counter() - t_exit)
        with torch_profiler():
            results["torch.profiler"] += step_times(model, optimizer, batch, labels, steps)
        with full_backward_hooks():
            results["full bwd hooks"] += step_times(model, optimizer, batch, labels, steps)
    base = statistics.median(results["plain"])
    print(f"\n({name}) {layers} layers, hidden {hidden}, batch 4x32, {rounds}x{steps} steps each")
    for label, times in results.items():
        med = statistics.median(times)
        print(f"  {label:15s} median step {med * 1e3:8.2f} ms   ratio {med / base:6.3f}")
    print(
        f"  greenprof attribution after the block: median {statistics.median(attribution_s):.3f} s"
    )
    print(f"  greenprof sensors: {', '.join(s['name'] for s in prof.session.meta['sensors'])}")


class GcCounter:
    """Counts garbage collections and the seconds they take, through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.collections = 0
        self.seconds = 0.0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.collections += 1
            self.seconds += time.perf_counter() - self._t0


def small_mlp_steps(model, optimizer, x, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = model(x).square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times


def measure_small(steps: int, rounds: int, heap_objects: int) -> None:
    """A model of 36 small modules with short steps: the per-call cost dominates."""
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for _ in range(12):
        layers += [torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.GELU()]
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(16, 64)
    heap = [[i] for i in range(heap_objects)]  # live objects that every full collection walks
    small_mlp_steps(model, optimizer, x, 5)
    variants = ("plain", "greenprof", "torch.profiler")
    ratios: dict[str, list[float]] = {v: [] for v in variants}
    medians: dict[str, list[float]] = {v: [] for v in variants}
    worst_s: dict[str, float] = dict.fromkeys(variants, 0.0)
    counters = {v: GcCounter() for v in variants}
    for _ in range(rounds):
        for variant in variants:
            ctx = {
                "plain": contextlib.nullcontext(),
                "greenprof": greenprof.profile(),
                "torch.profiler": torch_profiler(),
            }[variant]
            with ctx:
                gc.callbacks.append(counters[variant])
                try:
                    times = small_mlp_steps(model, optimizer, x, steps)
                finally:
                    gc.callbacks.remove(counters[variant])
            medians[variant].append(statistics.median(times))
            worst_s[variant] = max(worst_s[variant], max(times))
        for variant in variants:
            ratios[variant].append(medians[variant][-1] / medians["plain"][-1])
    print(
        f"\n(small MLP) 36 modules, batch 16x64, {rounds}x{steps} steps each, "
        f"{len(heap):,} extra live objects"
    )
    for variant in variants:
        gcc = counters[variant]
        per_1000 = gcc.collections * 1000 / (rounds * steps)
        print(
            f"  {variant:15s} median step {statistics.median(medians[variant]) * 1e3:7.3f} ms   "
            f"median ratio {statistics.median(ratios[variant]):6.3f}   worst step "
            f"{worst_s[variant] * 1e3:7.2f} ms   GC {gcc.collections} ({per_1000:.1f}/1000 steps, "
            f"{gcc.seconds * 1e3:.1f} ms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="steps per round (tiny model)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-base", action="store_true", help="only the tiny model")
    parser.add_argument("--small-only", action="store_true", help="only the small-module cases")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    measure_small(10 * args.steps, args.rounds, 0)
    measure_small(10 * args.steps, args.rounds, 3_000_000)
    if args.small_only:
        return
    measure("a: tiny BERT", 2, 128, args.steps, args.rounds)
    if not args.skip_base:
        measure("b: BERT-base size", 12, 768, max(3, args.steps // 6), args.rounds)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
