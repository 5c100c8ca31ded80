"""A made-up but self-consistent Session, for demos, benchmarks and renderer tests.

The numbers follow the shape of a real training loop (forward, backward and optimizer phases
repeating every step, a transformer-like module tree, two sensors) so that every part of a report
has something to draw, at any size, without torch or hardware.

Example:
    >>> session = synthetic_session(duration_s=2.0, n_blocks=2)
    >>> round(float(session.layers()["energy_j"].sum()) / session.total_energy_j, 6)
    1.0
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from greenprof.session import FORMAT_VERSION, OUTSIDE_MODULE, Session

#: Seconds of each phase in one synthetic step, and the mean power each phase draws.
_STEP = (("forward", 0.030, 1.0), ("backward", 0.055, 1.3), ("optimizer", 0.010, 0.8))
_GAP_S = 0.005  # data loading between steps
_BLOCK_PARTS = (
    ("attn", "MultiheadAttention", 0.30),
    ("norm1", "LayerNorm", 0.03),
    ("mlp.fc1", "Linear", 0.30),
    ("mlp.act", "GELU", 0.04),
    ("mlp.fc2", "Linear", 0.30),
    ("norm2", "LayerNorm", 0.03),
)


def synthetic_session(
    duration_s: float = 10.0,
    interval_s: float = 0.01,
    n_blocks: int = 4,
    *,
    estimated: bool = False,
    trace_steps: int = 20,
    seed: int = 0,
) -> Session:
    """Return a Session of a made-up training run.

    Args:
        duration_s: length of the run.
        interval_s: sampling interval of the sensors.
        n_blocks: transformer blocks in the model (six modules each, plus embedding and head).
        estimated: when True the CPU sensor is an estimate, so the session is estimated.
        trace_steps: steps that keep individual spans.
        seed: random seed; the same arguments give the same session.
    """
    rng = np.random.default_rng(seed)
    step_s = sum(d for _, d, _ in _STEP) + _GAP_S
    steps = max(1, int(duration_s / step_s))
    samples, sensors = _samples(duration_s, interval_s, step_s, estimated, rng)
    total_j = sum(s["energy_j"] for s in sensors)
    layers = _layers(_modules(n_blocks), steps, total_j, rng)
    spans = _spans(_modules(n_blocks), min(trace_steps, steps), step_s)
    meta = {
        "format_version": FORMAT_VERSION,
        "greenprof_version": "synthetic",
        "torch_version": "n/a",
        "python_version": "3.11",
        "host": "synthetic",
        "platform": "synthetic",
        "command": f"synthetic_session(duration_s={duration_s:g}, n_blocks={n_blocks})",
        "started_at": "2024-01-01T00:00:00+00:00",
        "duration_s": duration_s,
        "interval_s": interval_s,
        "steps": steps,
        "sensors": sensors,
        "total_energy_j": total_j,
        "total_energy_lo_j": total_j * 0.97,
        "total_energy_hi_j": total_j * 1.03,
        "warnings": ["synthetic data: no hardware was measured"],
        "inconsistencies": 0,
        "exit_status": 0,
        "interrupted": False,
    }
    return Session(meta, layers, samples, spans)


def _modules(n_blocks: int) -> list[tuple[str, str, float]]:
    """Return ``(qualified name, type, relative cost)`` of each leaf-ish module."""
    modules = [("", "Transformer", 0.02), ("embed", "Embedding", 0.05)]
    for block in range(n_blocks):
        modules.append((f"blocks.{block}", "Block", 0.01))
        modules += [(f"blocks.{block}.{n}", t, c) for n, t, c in _BLOCK_PARTS]
    modules.append(("head", "Linear", 0.4))
    return modules


def _samples(
    duration_s: float, interval_s: float, step_s: float, estimated: bool, rng: np.random.Generator
) -> tuple[pd.DataFrame, list[dict[str, object]]]:
    t_s = np.arange(0.0, duration_s + interval_s / 2, interval_s)
    in_step = np.mod(t_s, step_s)
    relative = np.full(len(t_s), 0.3)
    start = 0.0
    for _, length, level in _STEP:
        relative[(in_step >= start) & (in_step < start + length)] = level
        start += length
    frames, sensors = [], []
    gpu = ("nvml:0", "gpu:0", True, 250.0, 0.1)
    cpu = ("estimate:cpu" if estimated else "rapl:package-0", "cpu", not estimated, 60.0, 0.02)
    for name, device, measured, peak_w, update_s in (gpu, cpu):
        power = peak_w * relative * (1 + 0.05 * rng.standard_normal(len(t_s)))
        energy = np.concatenate(([0.0], np.cumsum(power[:-1] * interval_s)))
        # Counters move only every update_s, as NVML's does.
        energy = np.interp(np.floor(t_s / update_s) * update_s, t_s, energy)
        frames.append(pd.DataFrame({"sensor": name, "t_s": t_s, "energy_j": energy}))
        spread = 0.03 * energy[-1]
        sensors.append(
            {
                "name": name,
                "device": device,
                "measured": measured,
                "energy_j": float(energy[-1]),
                "energy_lo_j": float(energy[-1] - spread),
                "energy_hi_j": float(energy[-1] + spread),
                "failed": None,
                "method": "power-fit" if measured else "time-split",
            }
        )
    return pd.concat(frames, ignore_index=True), sensors


def _layers(
    modules: list[tuple[str, str, float]],
    steps: int,
    total_j: float,
    rng: np.random.Generator,
) -> pd.DataFrame:
    rows = []
    for phase, length, level in _STEP[:2]:
        costs = np.array([c for _, _, c in modules]) * rng.uniform(0.7, 1.3, len(modules))
        share_s = costs / costs.sum() * length * steps
        for (name, kind, _), time_s in zip(modules, share_s, strict=True):
            rows.append((name, kind, phase, steps, time_s, time_s * level))
    optimizer_s = _STEP[2][1] * steps
    rows.append(("optimizer:AdamW", "AdamW", "optimizer", steps, optimizer_s, optimizer_s * 0.8))
    rows.append((OUTSIDE_MODULE, "", "other", 0, _GAP_S * steps, _GAP_S * steps * 0.3))
    frame = pd.DataFrame(rows, columns=["module", "type", "phase", "calls", "time_s", "weight"])
    weight = frame.pop("weight")
    frame["energy_j"] = weight / weight.sum() * total_j
    spread = frame["energy_j"] * rng.uniform(0.03, 0.5, len(frame))
    frame["energy_lo_j"] = np.maximum(frame["energy_j"] - spread, 0.0)
    frame["energy_hi_j"] = frame["energy_j"] + spread
    return frame.sort_values("energy_j", ascending=False, ignore_index=True)


def _spans(modules: list[tuple[str, str, float]], steps: int, step_s: float) -> pd.DataFrame:
    names = [name for name, _, _ in modules]
    children: dict[str, list[str]] = {}
    for name in names[1:]:
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        while parent not in names:  # blocks.0's parent "blocks" never runs: attach to its own
            parent = parent.rsplit(".", 1)[0] if "." in parent else ""
        children.setdefault(parent, []).append(name)
    rows: list[tuple[str, str, float, float, int]] = []
    for step in range(steps):
        t = step * step_s + _GAP_S
        for phase, length, _ in _STEP:
            if phase == "optimizer":
                rows.append(("optimizer:AdamW", phase, t, t + length, 0))
            else:
                _nest(rows, children, "", phase, t, t + length, 0)
            t += length
    return pd.DataFrame(rows, columns=["module", "phase", "t0_s", "t1_s", "depth"])


def _nest(
    rows: list[tuple[str, str, float, float, int]],
    children: dict[str, list[str]],
    name: str,
    phase: str,
    t0_s: float,
    t1_s: float,
    depth: int,
) -> None:
    """Add ``name``'s span and, inside it, its children's one after another (reversed backward)."""
    rows.append((name, phase, t0_s, t1_s, depth))
    kids = children.get(name, [])
    if phase == "backward":
        kids = kids[::-1]
    inner_s = (t1_s - t0_s) * 0.9 / max(len(kids), 1)
    for i, kid in enumerate(kids):
        start = t0_s + (t1_s - t0_s) * 0.05 + i * inner_s
        _nest(rows, children, kid, phase, start, start + inner_s, depth + 1)


def stepped_session(
    step_cost_s: dict[str, float],
    *,
    windows: int = 50,
    steps_per_window: int = 4,
    noise_rel: float = 0.05,
    power_w: float = 10.0,
    cpu_per_wall: float = 0.97,
    load_per_cpu: float = 0.1,
    others_share: float | None = None,
    drift_rel: float = 0.0,
    seed: int = 0,
) -> Session:
    """Return a Session with a per-step series (``steps.csv``), as ``greenprof run`` records it.

    Each module's self time per step is ``step_cost_s[module]``, with a run-wide level shift of
    ``drift_rel`` and a per-window scatter of ``noise_rel`` (log-normal, relative standard
    deviations); every module draws ``power_w``. Its
    intervals are ±10 %. ``cpu_per_wall`` and ``load_per_cpu`` are the load evidence: a run
    beside other work has a lower CPU share and a higher load.

    Args:
        step_cost_s: self seconds per step of each module (``(outside modules)`` may be one).
        windows: windows of steps recorded.
        steps_per_window: steps in each window.
        noise_rel: relative scatter of a module's time from window to window.
        power_w: power of every module.
        cpu_per_wall: the process's CPU seconds per wall second.
        load_per_cpu: the machine's load average per logical CPU.
        others_share: the share of the machine's CPU time other processes took (None: not
            recorded, as on a machine without ``/proc/stat``).
        drift_rel: relative standard deviation of the whole run's level (the same in every
            window: no resampling of one run can see it).
        seed: random seed; the same arguments give the same session.
    """
    rng = np.random.default_rng(seed)
    names = list(step_cost_s)
    cost = np.array([step_cost_s[m] for m in names])
    drift = np.exp(drift_rel * rng.standard_normal())
    scatter = np.exp(noise_rel * rng.standard_normal((windows, len(names))))
    times = cost * steps_per_window * drift * scatter  # self seconds, window x module
    energy = times * power_w
    window_s = times.sum(1) / cpu_per_wall
    edges = np.concatenate([[0.0], np.cumsum(window_s)])
    steps = pd.DataFrame(
        {
            "window": np.arange(windows),
            "steps": float(steps_per_window),
            "t0_s": edges[:-1],
            "t1_s": edges[1:],
            "time_s": window_s,
            "cpu_s": times.sum(1),
            "energy_j": energy.sum(1),
            "energy_lo_j": energy.sum(1) * 0.98,
            "energy_hi_j": energy.sum(1) * 1.02,
        }
    )
    step_modules = pd.DataFrame(
        {
            "window": np.repeat(np.arange(windows), len(names)),
            "module": names * windows,
            "time_s": times.ravel(),
        }
    )
    own_j, own_s = energy.sum(0), times.sum(0)
    layers = pd.DataFrame(
        {
            "module": names,
            "type": ["" if m == OUTSIDE_MODULE else "Linear" for m in names],
            "phase": ["other" if m == OUTSIDE_MODULE else "forward" for m in names],
            "calls": windows * steps_per_window,
            "time_s": own_s,
            "energy_j": own_j,
            "energy_lo_j": own_j * 0.9,
            "energy_hi_j": own_j * 1.1,
        }
    )
    total_j = float(own_j.sum())
    meta = {
        "format_version": FORMAT_VERSION,
        "steps": windows * steps_per_window,
        "duration_s": float(edges[-1]),
        "sensors": [{"name": "rapl:package-0", "device": "cpu", "measured": True}],
        "total_energy_j": total_j,
        "total_energy_lo_j": total_j * 0.98,
        "total_energy_hi_j": total_j * 1.02,
        "load": {
            "cpu_per_wall": cpu_per_wall,
            "load_avg_1m": 2 * load_per_cpu,
            "logical_cpus": 2,
            "others_cpu_share": others_share,
        },
    }
    return Session(meta, layers, steps=steps, step_modules=step_modules)
