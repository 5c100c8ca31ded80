"""The CUDA timing parts of ``benchmarks/gpu_check.py`` (run that): greenprof's per-module GPU
time against torch.profiler and CUDA events, its overhead, streams, a second device, calibration.

Every function returns a JSON-able dict of what it measured and prints the figures.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import greenprof
from greenprof.schema import NOT_MODULES

#: How far greenprof's per-module time may be from torch.profiler's kernel time (the target).
TARGET_REL = 0.05


def bert(device: torch.device, *, layers: int = 12, hidden: int = 768, batch: int = 8):
    """A ``BertModel`` built from a config (BERT-base size by default) and one training step."""
    import transformers

    config = transformers.BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(2, hidden // 64),
        intermediate_size=4 * hidden,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).to(device)
    ids = torch.randint(0, config.vocab_size, (batch, 128), device=device)

    def step() -> None:
        hidden_states = model(input_ids=ids).last_hidden_state
        hidden_states.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)

    return model, step


def _sync(device) -> None:
    torch.cuda.synchronize(device)


def _inclusive_ms(layers, name: str, phase: str, calls: int) -> float:
    """Milliseconds per call of ``name`` and everything inside it, in one phase, from greenprof.

    ``name`` ``""`` is the root model: every module row (not the outside or startup rows).
    """
    if name:
        inside = (layers["module"] == name) | layers["module"].str.startswith(name + ".")
    else:
        inside = ~layers["module"].isin(NOT_MODULES)
    rows = layers[inside & (layers["phase"] == phase)]
    return float(rows["time_s"].sum()) * 1e3 / calls


class Annotations:
    """torch.profiler ranges around each module's forward (``fwd::``) and backward (``bwd::``).

    Full backward hooks cost what greenprof avoids; here they only mark ranges for the reference.
    """

    def __init__(self, modules: dict[str, torch.nn.Module]) -> None:
        self.handles: list = []
        self.open: dict[str, object] = {}
        for name, module in modules.items():
            self.handles += [
                module.register_forward_pre_hook(self._enter(f"fwd::{name}")),
                module.register_forward_hook(self._exit(f"fwd::{name}")),
                module.register_full_backward_pre_hook(self._enter(f"bwd::{name}")),
                module.register_full_backward_hook(self._exit(f"bwd::{name}")),
            ]

    def _enter(self, label: str) -> Callable:
        def hook(*args):
            self.open[label] = torch.ops.profiler._record_function_enter_new(label, None)

        return hook

    def _exit(self, label: str) -> Callable:
        def hook(*args):
            handle = self.open.pop(label, None)
            if handle is not None:
                torch.ops.profiler._record_function_exit(handle)

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def profiler_module_ms(trace_path: Path, steps: int) -> dict[str, dict[str, float]]:
    """Per annotated range: its span on the GPU and the kernel time inside it, ms per step."""
    events = json.loads(trace_path.read_text())["traceEvents"]
    kernels = sorted(
        (e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "kernel" and "dur" in e
    )
    out: dict[str, dict[str, float]] = {}
    for e in events:
        if e.get("cat") != "gpu_user_annotation" or "::" not in e.get("name", ""):
            continue
        t0, t1 = e["ts"], e["ts"] + e["dur"]
        busy_us = sum(min(k1, t1) - max(k0, t0) for k0, k1 in kernels if k0 < t1 and k1 > t0)
        entry = out.setdefault(e["name"], {"span_ms": 0.0, "kernel_ms": 0.0})
        entry["span_ms"] += e["dur"] / 1e3 / steps
        entry["kernel_ms"] += busy_us / 1e3 / steps
    return out


def module_timing(cuda_index: int, *, steps: int = 10) -> dict:
    """greenprof's per-module CUDA time against torch.profiler's, for BERT-base fwd + bwd."""
    device = torch.device("cuda", cuda_index)
    model, step = bert(device)
    for _ in range(3):  # cuBLAS and the caching allocator settle here
        step()
    _sync(device)
    with greenprof.profile(calibrate=False) as prof:
        for _ in range(steps):
            step()
    layers = prof.session.layers()
    targets = {"embeddings": model.embeddings}
    targets |= {f"encoder.layer.{i}": layer for i, layer in enumerate(model.encoder.layer)}
    annotations = Annotations(targets)
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    try:
        with torch.profiler.profile(activities=activities) as reference:
            for _ in range(steps):
                step()
            _sync(device)
    finally:
        annotations.remove()
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        reference.export_chrome_trace(str(trace))
        measured = profiler_module_ms(trace, steps)
    rows = []
    for name in targets:
        for phase, prefix in (("forward", "fwd"), ("backward", "bwd")):
            ref = measured.get(f"{prefix}::{name}")
            if phase == "backward" and name == "embeddings":
                # Its inputs need no gradient: the hook's range ends before the weight gradients.
                ref = None
            ours_ms = _inclusive_ms(layers, name, phase, steps)
            row = {"module": name, "phase": phase, "greenprof_ms": ours_ms}
            if ref is not None and ref["kernel_ms"] > 0:
                row |= ref
                row["ratio_to_kernels"] = ours_ms / ref["kernel_ms"]
                row["ratio_to_span"] = ours_ms / ref["span_ms"] if ref["span_ms"] else None
            rows.append(row)
    ratios = [r["ratio_to_kernels"] for r in rows if "ratio_to_kernels" in r]
    within = [abs(r - 1) <= TARGET_REL for r in ratios]
    summary = {
        "modules_compared": len(ratios),
        "median_abs_error": statistics.median(abs(r - 1) for r in ratios) if ratios else None,
        "worst_abs_error": max((abs(r - 1) for r in ratios), default=None),
        "share_within_target": sum(within) / len(within) if within else None,
        "target": TARGET_REL,
        "inconsistencies": prof.session.meta.get("inconsistencies"),
    }
    for r in rows:
        ref = (
            f"{r['kernel_ms']:.3f} ms kernels, {r['span_ms']:.3f} ms span"
            if "kernel_ms" in r
            else "no reference"
        )
        ratio = f" ratio {r['ratio_to_kernels']:.3f}" if "ratio_to_kernels" in r else ""
        ours = f"greenprof {r['greenprof_ms']:.3f} ms"
        print(f"  {r['module']:<18} {r['phase']:<8} {ours} | {ref}{ratio}")
    if ratios:
        print(
            f"  {summary['share_within_target']:.0%} of {len(ratios)} rows within "
            f"{TARGET_REL:.0%} of the kernel time; median error {summary['median_abs_error']:.1%}, "
            f"worst {summary['worst_abs_error']:.1%}"
        )
    return {"summary": summary, "rows": rows}


def overhead(cuda_index: int, *, rounds: int = 5, steps: int = 10) -> dict:
    """Step time under greenprof and torch.profiler against none, interleaved rounds."""
    device = torch.device("cuda", cuda_index)
    _model, step = bert(device)
    for _ in range(3):
        step()
    _sync(device)
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    variants = {
        "none": lambda: _null(),
        "greenprof": lambda: greenprof.profile(calibrate=False),
        "torch.profiler": lambda: torch.profiler.profile(activities=activities),
    }
    per_round: list[dict[str, float]] = []
    for _ in range(rounds):
        times = {}
        for name, make in variants.items():
            with make():
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                _sync(device)
                times[name] = (time.perf_counter() - t0) / steps
        per_round.append(times)
    result = {
        "step_ms": {n: statistics.median(r[n] for r in per_round) * 1e3 for n in variants},
        "ratio_median": {
            n: statistics.median(r[n] / r["none"] for r in per_round)
            for n in variants
            if n != "none"
        },
        "rounds": rounds,
        "steps_per_round": steps,
    }
    for name, ms in result["step_ms"].items():
        ratio = result["ratio_median"].get(name)
        shown = f" ({ratio:.3f}x, median of per-round ratios)" if ratio else ""
        print(f"  {name:<15} {ms:.2f} ms per step{shown}")
    return result


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class TwoBranches(torch.nn.Module):
    """Two matmul branches, each on its own stream."""

    def __init__(self, size: int, repeats: int) -> None:
        super().__init__()
        self.a = torch.nn.Sequential(*[torch.nn.Linear(size, size) for _ in range(repeats)])
        self.b = torch.nn.Sequential(*[torch.nn.Linear(size, size) for _ in range(2 * repeats)])
        self.streams = (torch.cuda.Stream(), torch.cuda.Stream())
        self.events: list | None = None  # filled with CUDA event pairs when timing by hand

    def forward(self, x):
        outs = []
        for branch, stream in zip((self.a, self.b), self.streams, strict=True):
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                if self.events is None:
                    outs.append(branch(x))
                    continue
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                outs.append(branch(x))
                end.record()
                self.events.append((start, end))
        for stream in self.streams:
            torch.cuda.current_stream().wait_stream(stream)
        return outs[0] + outs[1]


def _by_hand_ms(events: list, calls: int) -> list[float]:
    """CUDA-event milliseconds per call of branch a and branch b."""
    a = sum(s.elapsed_time(e) for s, e in events[0::2]) / calls
    b = sum(s.elapsed_time(e) for s, e in events[1::2]) / calls
    return [a, b]


def two_streams(cuda_index: int, *, calls: int = 20) -> dict:
    """Two branches on two streams: greenprof's branch times against CUDA events."""
    device = torch.device("cuda", cuda_index)
    with torch.cuda.device(device):
        model = TwoBranches(4096, 4).to(device)
        x = torch.randn(256, 4096, device=device)
        with torch.no_grad():
            model(x)
            _sync(device)
            model.events = []
            for _ in range(calls):
                model(x)
            _sync(device)
            reference = _by_hand_ms(model.events, calls)
            model.events = None
            with greenprof.profile(calibrate=False) as prof:
                for _ in range(calls):
                    model(x)
    return _compare(prof.session.layers(), ["a", "b"], reference, calls, prof)


def _compare(layers, names: list[str], reference: list[float], calls: int, prof) -> dict:
    rows = []
    for name, ref_ms in zip(names, reference, strict=True):
        ours_ms = _inclusive_ms(layers, name, "forward", calls)
        rows.append(
            {
                "module": name,
                "greenprof_ms": ours_ms,
                "cuda_events_ms": ref_ms,
                "ratio": ours_ms / ref_ms if ref_ms else None,
            }
        )
        print(f"  {name}: greenprof {ours_ms:.3f} ms, CUDA events {ref_ms:.3f} ms per call")
    devices = prof._recorder.cuda.devices if prof._recorder.cuda is not None else []
    return {
        "rows": rows,
        "devices_timed": devices,
        "inconsistencies": prof.session.meta.get("inconsistencies"),
    }


def second_device() -> dict:
    """A model on cuda:1 while the current device stays cuda:0."""
    if torch.cuda.device_count() < 2:
        print("  one CUDA device: skipped")
        return {"skipped": "one CUDA device"}
    device = torch.device("cuda", 1)
    model = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(4)]).to(device)
    x = torch.randn(512, 4096, device=device)
    calls = 20
    assert torch.cuda.current_device() == 0
    with torch.no_grad():
        model(x)
        _sync(device)
        stream = torch.cuda.current_stream(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        for _ in range(calls):
            model(x)
        end.record(stream)
        _sync(device)
        reference = [start.elapsed_time(end) / calls]
        with greenprof.profile(calibrate=False) as prof:
            for _ in range(calls):
                model(x)
    return _compare(prof.session.layers(), [""], reference, calls, prof)


def calibration(cuda_index: int, *, run_s: float = 15.0, calibrate_s: float = 30.0) -> dict:
    """``greenprof.profile(calibrate=True)`` on small BERT training steps: what it measured."""
    device = torch.device("cuda", cuda_index)
    model, step = bert(device, layers=4, hidden=256)
    step()
    _sync(device)
    with greenprof.profile(calibrate=True, calibrate_s=calibrate_s) as prof:
        t0 = time.perf_counter()
        steps = 0
        while time.perf_counter() - t0 < run_s:
            step()
            steps += 1
        t_exit = time.perf_counter()
    exit_s = time.perf_counter() - t_exit
    session = prof.session
    facts = session.meta.get("calibration", {})
    layers = session.layers()
    methods = layers["method"].value_counts().to_dict() if "method" in layers else {}
    print(
        f"  {steps} steps in {run_s:g} s; calibrated: {facts.get('calibrated')}; "
        f"profile exit took {exit_s:.1f} s; methods: {methods}"
    )
    if facts.get("note"):
        print(f"  note: {facts['note']}")
    return {
        "steps": steps,
        "exit_s": exit_s,
        "calibration": facts,
        "methods": methods,
        "total_energy_j": session.total_energy_j,
        "warnings": session.warnings,
    }
