"""Per-rank cost of profiling several processes: 1 rank against 2 (gloo, DDP on the CPU).

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/ranks.py [--steps 40] [--width 256] [--rounds 2]

For 1 and then 2 ranks launched through ``torch.distributed.run``, every rank trains a small MLP
under DistributedDataParallel and times its steps, alternating unprofiled and profiled blocks
(``greenprof.profile(sensors=["estimate"], calibrate=False)``) so that drift in the machine's
speed hits both alike. Each rank then saves its part and merges the parts present (what
``greenprof run`` does), timed; the launching process times one more merge of the whole run, as
``greenprof run --nproc-per-node`` does when the launcher returns. It prints the median step
time per rank of each variant, the ratio, and the merge seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(run_dir: Path, steps: int, width: int, rounds: int) -> None:
    import torch
    import torch.distributed as dist
    from torch import nn

    import greenprof
    from greenprof.launch import RankInfo, save_part_and_merge

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
    model = nn.parallel.DistributedDataParallel(nn.Sequential(*net, nn.Linear(width, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    batch = torch.randn(32, width)

    def step() -> float:
        start = time.perf_counter()
        model(batch).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - start

    for _ in range(5):  # warm-up: allocator, DDP buckets
        step()
    plain: list[float] = []
    profiled: list[float] = []
    session = None
    for _ in range(rounds):
        dist.barrier()
        plain += [step() for _ in range(steps)]
        dist.barrier()
        with greenprof.profile(sensors=["estimate"], calibrate=False) as prof:
            profiled += [step() for _ in range(steps)]
        session = prof.session
    assert session is not None
    dist.barrier()
    start = time.perf_counter()
    save_part_and_merge(session, run_dir, RankInfo(rank, world, int(os.environ["LOCAL_RANK"])))
    merge_s = time.perf_counter() - start
    result = {"plain_s": plain, "profiled_s": profiled, "merge_s": merge_s}
    (run_dir / f"bench-{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def launch(nproc: int, args: argparse.Namespace, run_dir: Path) -> list[dict[str, object]]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        __file__,
        "--worker",
        str(run_dir),
        f"--steps={args.steps}",
        f"--width={args.width}",
        f"--rounds={args.rounds}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return [json.loads((run_dir / f"bench-{r}.json").read_text()) for r in range(nproc)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=40, help="steps per block")
    parser.add_argument("--width", type=int, default=256, help="hidden width of the MLP")
    parser.add_argument("--rounds", type=int, default=2, help="unprofiled/profiled block pairs")
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.steps, args.width, args.rounds)
        return
    from greenprof.launch import merge_parts

    print(f"MLP width {args.width}, batch 32, {args.rounds} x {args.steps} steps per variant")
    print(
        f"{'ranks':>5} {'rank':>4} {'plain ms':>9} {'profiled ms':>12} {'ratio':>6} {'merge s':>8}"
    )
    for nproc in (1, 2):
        with tempfile.TemporaryDirectory() as folder:
            run_dir = Path(folder)
            for rank, r in enumerate(launch(nproc, args, run_dir)):
                plain = statistics.median(r["plain_s"]) * 1e3  # type: ignore[arg-type]
                profiled = statistics.median(r["profiled_s"]) * 1e3  # type: ignore[arg-type]
                print(
                    f"{nproc:>5} {rank:>4} {plain:>9.3f} {profiled:>12.3f} "
                    f"{profiled / plain:>6.2f} {r['merge_s']:>8.3f}"
                )
            start = time.perf_counter()
            merged = merge_parts(run_dir)
            merged.save(run_dir)
            print(
                f"      launcher's final merge of {len(merged.meta['ranks'])} part(s) "
                f"({len(merged.layers(by_rank=True))} rank rows): "
                f"{time.perf_counter() - start:.3f} s"
            )


if __name__ == "__main__":
    main()
