"""Per-step overhead of greenprof.profile() against torch.profiler, on six workloads.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/overhead.py --quick     # a few minutes on two cores
    .venv/bin/python benchmarks/overhead.py             # more rounds and steps
    .venv/bin/python benchmarks/overhead.py --only encoder gpt2 --threads 1

Workloads:
  encoder      training steps of a small transformer encoder (35 modules, a few ms a step),
               where the cost per module call dominates;
  encoder+heap the same with 3 million small live lists, which every full collection walks:
               a profiler that leaves objects behind per event pays for it in garbage collection;
  mlp          training steps of a small MLP (5 Linear layers 64 wide, batch 32; well under a
               millisecond a step), the cheapest module calls a profiler meets;
  gpt2         greedy decoding with a GPT-2 built from a config (4 layers, 128 wide), 32 new
               tokens per ``generate(do_sample=False)`` call; reported as tokens/s too;
  bert-tiny    training steps of a 2-layer BERT (hidden 128, batch 4x32);
  bert-base    training steps of a BERT-base-size model (12 layers, hidden 768, batch 4x32).

Variants, interleaved in rounds in one process (the order rotates each round, so that no variant
always runs first): no profiler, ``greenprof.profile(calibrate=False)`` (calibration runs after
the block and is no part of a step) and ``torch.profiler.profile`` with CPU activities. Each
variant's block starts with untimed steps (at least ``START_ROOT_CALLS`` root calls, two
BERT-base steps: the start of a profile, whose one-time allocations are counted apart as
"start"). Per round, each
variant's median step time (wall clock and process CPU time) is divided by that round's plain
median; the figure printed is the median of these per-round ratios, with their range (the
noise). Per variant it also prints the garbage collections during its timed steps
(``gc.callbacks``; how many were full ones) and the seconds they took, and the worst step's
delay over the round's plain median (a drain of greenprof's buffers at a step boundary would
show there). For greenprof: the time spent after the block (attribution), whether every step's
events were kept, and what its sampler thread cost.

Timing on a shared machine is noisy: read the range, and rerun on a quiet one for final figures.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import transformers

import greenprof

VARIANTS = ("plain", "greenprof", "torch.profiler")
#: Untimed root calls at the start of each block (whole steps): more than the 20 steps whose
#: spans a profile keeps for its report.
START_ROOT_CALLS = 25


class GcCounter:
    """Counts garbage collections and the seconds they take, through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.collections = 0
        self.full = 0  # of the oldest generation: these walk every live object
        self.seconds = 0.0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.collections += 1
            self.full += info["generation"] == 2
            self.seconds += time.perf_counter() - self._t0


@dataclass
class Workload:
    name: str
    step: Callable[[], object]
    steps: int  # timed steps per variant and round
    root: str = ""  # module whose calls count the steps greenprof kept ("" = the root model)
    calls_per_step: int = 1
    tokens_per_step: int = 0
    keep: list = field(default_factory=list)  # objects kept alive during the measurement
    start_steps: int = 0  # untimed steps at a block's start (0: START_ROOT_CALLS root calls)

    def untimed_steps(self) -> int:
        return self.start_steps or -(-START_ROOT_CALLS // self.calls_per_step)


@dataclass
class Tally:
    ratios_wall: list[float] = field(default_factory=list)
    ratios_cpu: list[float] = field(default_factory=list)
    medians_s: list[float] = field(default_factory=list)
    worst_delay_s: float = 0.0
    gc: GcCounter = field(default_factory=GcCounter)
    after_block_s: list[float] = field(default_factory=list)
    gc_start: GcCounter = field(default_factory=GcCounter)  # during the untimed start
    kept: list[tuple[int, int]] = field(default_factory=list)  # (root calls seen, calls made)
    sampler: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------- workloads
def training_step(model, optimizer, forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        forward().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def encoder(steps: int, heap_objects: int = 0) -> Workload:
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.1, batch_first=True)
    body = torch.nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
    model = torch.nn.Sequential(torch.nn.Embedding(1000, 64), body, torch.nn.Linear(64, 2))
    n_modules = len(list(model.modules()))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, 1000, (8, 32))
    step = training_step(model, optimizer, lambda: model(tokens).square().mean())
    name = f"encoder ({n_modules} modules, batch 8x32)"
    keep: list = []
    if heap_objects:
        keep = [[i] for i in range(heap_objects)]  # live objects every full collection walks
        gc.collect()  # they are old now: a later full collection is the step's, not theirs
        name = f"encoder + {heap_objects:,} live objects"
    return Workload(name, step, steps, keep=keep)


def mlp(steps: int) -> Workload:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = [torch.nn.Linear(32, 64), torch.nn.ReLU()]
    for _ in range(3):
        layers += [torch.nn.Linear(64, 64), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    x, y = torch.randn(32, 32), torch.randint(0, 10, (32,))
    loss = torch.nn.CrossEntropyLoss()
    step = training_step(model, optimizer, lambda: loss(model(x), y))
    n_modules = len(list(model.modules()))
    name = f"mlp ({n_modules} modules, batch 32, width 64)"
    # Two root modules (the model and the loss): rows are named by class.
    return Workload(name, step, steps, root="Sequential")


def gpt2(steps: int, new_tokens: int = 32) -> Workload:
    config = transformers.GPT2Config(n_layer=4, n_embd=128, n_head=4, n_positions=128)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.generation_config.pad_token_id = config.eos_token_id
    prompt = torch.randint(0, config.vocab_size, (1, 8))

    def step() -> None:
        with torch.no_grad():
            model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
            )

    name = f"gpt2 greedy decoding (4 layers, 128 wide, {new_tokens} new tokens a call)"
    # One forward per new token: the root model is called new_tokens times per generate().
    return Workload(name, step, steps, calls_per_step=new_tokens, tokens_per_step=new_tokens)


def bert(steps: int, layers: int, hidden: int) -> Workload:
    config = transformers.BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(2, hidden // 64),
        intermediate_size=4 * hidden,
        max_position_embeddings=64,
        num_labels=2,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(0, config.vocab_size, (4, 32))
    labels = torch.randint(0, 2, (4,))
    step = training_step(model, optimizer, lambda: model(input_ids=batch, labels=labels).loss)
    # A BERT-base step lasts seconds: two untimed ones hold the start of a profile in a small
    # part of their time, where 25 would make the run last many minutes.
    start_steps = 2 if layers >= 12 else 0
    name = f"bert {layers} layers, hidden {hidden}, batch 4x32"
    return Workload(name, step, steps, start_steps=start_steps)


# ---------------------------------------------------------------------------- measuring
def torch_profiler():
    return torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])


def timed_block(variant: str, work: Workload, tally: Tally) -> tuple[list[float], list[float]]:
    """Run one variant's block: an untimed step, then ``work.steps`` timed ones."""
    prof = greenprof.profile(calibrate=False) if variant == "greenprof" else None
    ctx = prof if prof is not None else torch_profiler() if variant != "plain" else None
    walls: list[float] = []
    cpus: list[float] = []
    gc.collect()  # each block starts clean of the previous block's garbage
    with ctx if ctx is not None else contextlib.nullcontext():
        # The start of a profile (each module's key, the columns, the spans of the first steps
        # kept for the report) allocates once: counted apart, so that the timed steps show the
        # steady state.
        gc.callbacks.append(tally.gc_start)
        try:
            for _ in range(work.untimed_steps()):
                work.step()
        finally:
            gc.callbacks.remove(tally.gc_start)
        gc.callbacks.append(tally.gc)
        try:
            for _ in range(work.steps):
                w0, c0 = time.perf_counter(), time.process_time()
                work.step()
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
        finally:
            gc.callbacks.remove(tally.gc)
        t_exit = time.perf_counter()
    if prof is not None and prof.session is not None:
        tally.after_block_s.append(time.perf_counter() - t_exit)
        layers = prof.session.layers()
        root = layers[(layers.module == work.root) & (layers.phase == "forward")]
        made = (work.steps + work.untimed_steps()) * work.calls_per_step
        tally.kept.append((int(root.calls.sum()), made))
        tally.sampler.append(dict(prof.session.meta["sampler"], wall_s=prof.session.duration_s))
    return walls, cpus


def measure(work: Workload, rounds: int) -> dict[str, Tally]:
    tallies = {v: Tally() for v in VARIANTS}
    work.step()  # warm up the allocator and kernels
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        times = {v: timed_block(v, work, tallies[v]) for v in order}
        plain_wall = statistics.median(times["plain"][0])
        plain_cpu = statistics.median(times["plain"][1])
        for variant, (walls, cpus) in times.items():
            tally = tallies[variant]
            tally.medians_s.append(statistics.median(walls))
            tally.ratios_wall.append(statistics.median(walls) / plain_wall)
            tally.ratios_cpu.append(statistics.median(cpus) / plain_cpu)
            tally.worst_delay_s = max(tally.worst_delay_s, max(walls) - plain_wall)
    return tallies


def report(work: Workload, rounds: int, tallies: dict[str, Tally]) -> None:
    print(f"\n({work.name}) {rounds} rounds x {work.steps} steps per variant")
    for variant, t in tallies.items():
        line = (
            f"  {variant:15s} step {statistics.median(t.medians_s) * 1e3:8.2f} ms  "
            f"wall x{statistics.median(t.ratios_wall):.3f} "
            f"[{min(t.ratios_wall):.3f}-{max(t.ratios_wall):.3f}]  "
            f"cpu x{statistics.median(t.ratios_cpu):.3f} "
            f"[{min(t.ratios_cpu):.3f}-{max(t.ratios_cpu):.3f}]  "
            f"GC {t.gc.collections} ({t.gc.full} full, {t.gc.seconds * 1e3:.1f} ms; "
            f"start {t.gc_start.collections})  "
            f"worst step +{t.worst_delay_s * 1e3:.2f} ms"
        )
        if work.tokens_per_step:
            line += f"  {work.tokens_per_step / statistics.median(t.medians_s):.0f} tokens/s"
        print(line)
    g = tallies["greenprof"]
    if g.kept:
        seen, made = sum(k[0] for k in g.kept), sum(k[1] for k in g.kept)
        cpu_s = sum(s["thread_cpu_s"] for s in g.sampler)
        wall_s = sum(s["wall_s"] for s in g.sampler)
        ticks = sum(s["ticks"] for s in g.sampler)
        missed = sum(s["missed_ticks"] for s in g.sampler)
        print(
            f"  greenprof: after the block {statistics.median(g.after_block_s):.2f} s (median); "
            f"root calls kept {seen} of {made}; sampler thread {cpu_s / wall_s:.2%} of a core, "
            f"missed {missed} of {ticks + missed} ticks"
        )


def workloads(quick: bool, only: list[str] | None) -> dict[str, Callable[[], Workload]]:
    scale = 1 if quick else 3
    table: dict[str, Callable[[], Workload]] = {
        "encoder": lambda: encoder(60 * scale),
        "encoder+heap": lambda: encoder(60 * scale, heap_objects=3_000_000),
        "mlp": lambda: mlp(300 * scale),
        "gpt2": lambda: gpt2(6 * scale),
        "bert-tiny": lambda: bert(20 * scale, 2, 128),
        "bert-base": lambda: bert(3 * scale, 12, 768),
    }
    if only:
        unknown = sorted(set(only) - set(table))
        if unknown:
            raise SystemExit(f"unknown workload(s) {unknown}; choose from {sorted(table)}")
        table = {k: v for k, v in table.items() if k in only}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    parser.add_argument("--rounds", type=int, default=None, help="[5; 3 with --quick]")
    parser.add_argument("--only", nargs="+", metavar="WORKLOAD", help="run only these")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads [torch's default]; 1 steadies timing on a shared machine",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 5)
    transformers.logging.set_verbosity_error()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    started = time.perf_counter()
    for make in workloads(args.quick, args.only).values():
        work = make()
        report(work, rounds, measure(work, rounds))
        del work
        gc.collect()
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
