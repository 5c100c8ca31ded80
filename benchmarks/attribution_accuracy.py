"""How close greenprof's per-layer joules come to the truth, on a simulated energy counter.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/attribution_accuracy.py [--seconds 3]

Each case runs a real model's inference under greenprof.profile() with the ground-truth simulator
of tests/simulate.py as the only sensor: power depends on which module runs (a power map), and the
counter updates only every 20-100 ms with noise, so the true joules per layer are known. Every run
is attributed twice from the same recording, by the time split and by the power fit, and once as
greenprof chooses by itself ("auto"), and then as greenprof.profile() reports it after
calibrating by replay ("calibrated"; the "chosen" column gives the calibration seconds). With
--train the steps include backward and an optimizer step, and the simulator draws backward power
per layer. Printed per case: total error, energy-weighted median of the
per-layer errors, and the worst error among the ten layers with the most true energy.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from simulate import GroundTruthSensor  # noqa: E402

import greenprof  # noqa: E402
from greenprof.attribute.fit import attribute  # noqa: E402
from greenprof.profiler.frames import column_classes  # noqa: E402
from greenprof.session import OUTSIDE_MODULE  # noqa: E402


def mlp():
    model = nn.Sequential(
        nn.Linear(1024, 4096),
        nn.GELU(),
        nn.Linear(4096, 1024),
        nn.LayerNorm(1024),
        nn.Linear(1024, 2048),
        nn.ReLU(),
        nn.Linear(2048, 10),
    )
    return model, torch.randn(128, 1024)


def cnn():
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 16 * 16, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
    return model, torch.randn(16, 3, 64, 64)


def transformer():
    layer = nn.TransformerEncoderLayer(256, 4, 1024, batch_first=True)
    model = nn.Sequential(
        nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Linear(256, 10)
    )
    return model, torch.randn(8, 128, 256)


MODELS = {"mlp": mlp, "cnn": cnn, "transformer": transformer}


def power_map(kind: str, model: nn.Module, seed: int):
    rng = np.random.default_rng(seed)
    random_w = {name: float(rng.uniform(20, 100)) for name, _ in model.named_modules()}

    def watts(name: str, module: nn.Module) -> float:
        if kind == "equal":
            return 50.0
        if kind == "by-type":
            return 90.0 if isinstance(module, (nn.Linear, nn.Conv2d)) else 30.0
        return random_w[name]

    return watts


def errors(session_layers, truth: dict[str, float]) -> tuple[float, float, float, float]:
    """Weighted median error, worst of the top 10 (+ share), worst >= 1%, coverage, width."""
    rows = session_layers.assign(
        key=[
            m if p != "backward" else f"{m} (backward)"
            for m, p in zip(session_layers.module, session_layers.phase, strict=True)
        ]
    )
    grouped = rows.groupby("key")[["energy_j", "energy_lo_j", "energy_hi_j"]].sum()
    names = [n for n in truth if truth[n] > 0 and n != OUTSIDE_MODULE]
    true_j = np.array([truth[n] for n in names])
    est = np.array([grouped.energy_j.get(n, 0.0) for n in names])
    err = np.abs(est - true_j) / true_j
    order = np.argsort(err)
    cum = np.cumsum(true_j[order]) / true_j.sum()
    weighted_median = float(err[order][np.searchsorted(cum, 0.5)])
    top10 = np.argsort(-true_j)[:10]
    lo = np.array([grouped.energy_lo_j.get(n, 0.0) for n in names])
    hi = np.array([grouped.energy_hi_j.get(n, 0.0) for n in names])
    covered = (lo[top10] <= true_j[top10]) & (true_j[top10] <= hi[top10])
    worst = int(top10[np.argmax(err[top10])])
    # Small models have fewer than ten layers that matter: also report those with >= 1% share.
    major = true_j >= 0.01 * true_j.sum()
    worst_major = float(err[major].max()) if major.any() else 0.0
    half = np.maximum(est - lo, hi - est)[top10] / np.maximum(est[top10], 1e-12)
    return (
        weighted_median,
        float(err[worst]),
        float(true_j[worst] / true_j.sum()),
        worst_major,
        covered.mean(),
        float(np.median(half)),
    )


def run_case(
    model_name: str,
    kind: str,
    update_s: tuple[float, float],
    seconds: float,
    seed: int,
    batch_scale: int = 1,
    train: bool = False,
    calibrate_s: float | None = None,
):
    model, x = MODELS[model_name]()
    x = x.repeat(batch_scale, *([1] * (x.dim() - 1)))
    # An input that needs no gradient ends the simulator's backward hook of the first layer
    # before its weight gradient is computed; one that does keeps the truth's boundaries
    # where greenprof's are.
    x.requires_grad_(train)
    model.train(train)
    watts = power_map(kind, model, seed)
    sim = GroundTruthSensor(
        model,
        watts,
        outside_w=30.0,
        update_s=update_s,
        noise=0.02,
        seed=seed,
        # Backward draws differently from forward: by 1.2-1.8x, per layer.
        backward_w=(lambda n, m: watts(n, m) * (1.2 + 0.6 * (hash(n) % 7) / 6)) if train else None,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    sim.install()
    prof = greenprof.profile(sensors=[sim], calibrate_s=calibrate_s)
    try:
        with torch.set_grad_enabled(train):
            prof.__enter__()
            try:
                sim.start_truth()
                end = time.perf_counter() + seconds
                steps = 0
                while time.perf_counter() < end:
                    out = model(x)
                    if train:
                        out.float().square().mean().backward()
                        optimizer.step()
                        optimizer.zero_grad()
                    steps += 1
                # The truth is the workload's: the device keeps drawing while greenprof calibrates.
                truth = sim.finish()
            finally:
                prof.__exit__(None, None, None)
    finally:
        sim.close()
    rows = []
    total_true = sum(truth.values())
    for method in ("time-split", "power-fit", "auto"):
        classes = column_classes(prof.time_table, prof.column_names())
        result = attribute(prof.time_table, prof.sensor_series, method=method, classes=classes)
        layers = prof.layers_for(result)
        median, worst, worst_share, worst_major, coverage, width = errors(layers, truth)
        chosen = result.sensors[0].method
        total_err = abs(result.total_j - total_true) / total_true
        rows.append(
            (method, chosen, total_err, median, worst, worst_share, worst_major, coverage, width)
        )
    session = prof.session
    calibration = session.meta["calibration"]
    median, worst, worst_share, worst_major, coverage, width = errors(session.layers(), truth)
    total_err = abs(session.total_energy_j - total_true) / total_true
    chosen = f"{calibration.get('seconds', 0.0):.1f}s" if calibration["calibrated"] else "off"
    rows.append(
        ("calibrated", chosen, total_err, median, worst, worst_share, worst_major, coverage, width)
    )
    return steps, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="profiled seconds per case")
    parser.add_argument(
        "--batch-scale",
        type=int,
        default=1,
        help="multiply every batch: steps longer than the counter's update period let the "
        "power fit see layers draw different power",
    )
    parser.add_argument("--train", action="store_true", help="training steps, backward included")
    parser.add_argument("--calibrate-s", type=float, help="calibration budget [default: auto]")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--updates",
        nargs="*",
        default=["20-50", "50-100", "100-100"],
        help="counter update periods, ms (LOW-HIGH)",
    )
    args = parser.parse_args()
    updates = [tuple(float(v) / 1e3 for v in u.split("-")) for u in args.updates]
    print(
        f"{'model':12} {'power map':9} {'update':>10} {'steps':>5}  {'method':10} {'chosen':10}"
        f" {'total':>7} {'w.median':>8} {'worst10':>8} {'share':>7} {'worst>1%':>8}"
        f" {'covered':>7} {'±top10':>7}"
    )
    summary: dict[str, list[tuple[float, float]]] = {}
    for i, (model_name, kind, update) in enumerate(
        (m, k, u) for m in args.models for k in ("equal", "by-type", "random") for u in updates
    ):
        steps, rows = run_case(
            model_name,
            kind,
            update,
            args.seconds,
            i,
            args.batch_scale,
            train=args.train,
            calibrate_s=args.calibrate_s,
        )
        for method, chosen, total_err, median, worst, share, worst_major, coverage, width in rows:
            summary.setdefault(method, []).append((median, worst, coverage, worst_major, width))
            update_ms = f"{update[0] * 1e3:.0f}-{update[1] * 1e3:.0f}ms"
            print(
                f"{model_name:12} {kind:9} {update_ms:>10} {steps:5d}  {method:10} {chosen:10}"
                f" {total_err:7.2%} {median:8.2%} {worst:8.2%} {share:7.2%} {worst_major:8.2%}"
                f" {coverage:7.0%} {width:7.1%}"
            )
    print("\nacross all cases (median of the case figures; coverage: mean over cases):")
    for method, figures in summary.items():
        arr = np.array(figures)
        print(
            f"  {method:10} weighted-median error {np.median(arr[:, 0]):6.2%}, "
            f"worst-of-top-10 {np.median(arr[:, 1]):6.2%} (max over cases {arr[:, 1].max():6.2%}), "
            f"worst of layers >= 1% {np.median(arr[:, 3]):6.2%}, "
            f"top-10 truth inside the 95% interval {arr[:, 2].mean():4.0%}, "
            f"median top-10 half-width ±{np.median(arr[:, 4]):.1%}"
        )


if __name__ == "__main__":
    main()
