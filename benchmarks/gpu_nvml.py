"""How NVML's energy counter and power readings behave on this GPU, measured, not assumed.

A part of ``benchmarks/gpu_check.py`` (run that). A poller thread reads, as fast as NVML answers,
the total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ), the power usage
(``nvmlDeviceGetPowerUsage``, mW; a one-second average on Ampere and newer except GA100) and the
instant power field (``NVML_FI_DEV_POWER_INSTANT`` through ``nvmlDeviceGetFieldValues``, mW), while
the main thread alternates idle periods and periods of large matrix multiplications. Reported for
each reading:

* its update period: the time between observed changes of the value (an update that repeats the
  previous value goes unseen, so for power read at a steady load this is an upper bound);
* its lag behind a load step: from the host time a load starts (or ends) to the first reading
  past 50 % and 90 % of the way between the idle and load levels (for the counter, the power
  derived from successive counter updates);
* for the counter, how well it agrees with the integral of each power reading over the run.
"""

from __future__ import annotations

import math
import platform
import threading

import numpy as np

from greenprof.clock import now_ns

#: nvmlValueType_t -> the member of the nvmlValue_t union that holds it.
_VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")
READINGS = ("energy_counter", "power_usage", "power_instant")

# numpy 2 renamed trapz; GPU machines may still have numpy 1.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


class NoGpu(Exception):
    """Nothing to measure here."""


def open_gpu(cuda_index: int):
    """Return ``(torch device, pynvml, NVML handle, facts)`` for the CUDA device asked for."""
    try:
        import torch
    except ImportError:
        raise NoGpu("torch is not installed") from None
    if not torch.cuda.is_available():
        raise NoGpu("torch sees no CUDA device")
    from greenprof.errors import SensorUnavailable
    from greenprof.sensors import nvml

    try:
        sensors = nvml.discover()  # maps CUDA's numbering to NVML's as the profiler does
    except SensorUnavailable as exc:
        raise NoGpu(str(exc)) from None
    try:
        matches = [s for s in sensors if s.device == f"gpu:{cuda_index}"]
        if not matches:
            raise NoGpu(f"no NVML sensor for CUDA device {cuda_index}")
        nvml_index = matches[0].index
    finally:
        for sensor in sensors:
            sensor.close()
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index)
    facts = {
        "name": _text(pynvml.nvmlDeviceGetName(handle)),
        "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
        "nvml_index": nvml_index,
        "cuda_index": cuda_index,
        "driver": _text(pynvml.nvmlSystemGetDriverVersion()),
        "nvml_version": _text(pynvml.nvmlSystemGetNVMLVersion()),
        "torch": torch.__version__,
        "host": platform.node(),
    }
    return torch.device("cuda", cuda_index), pynvml, handle, facts


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Poller(threading.Thread):
    """Reads the three readings in a tight loop; each read is stamped with its midpoint."""

    def __init__(self, pynvml, handle) -> None:
        super().__init__(name="gpu-sensor-poller", daemon=True)
        self.pynvml, self.handle = pynvml, handle
        self.stop_event = threading.Event()
        self.traces: dict[str, list[tuple[int, float]]] = {name: [] for name in READINGS}
        self.unsupported: dict[str, str] = {}
        self.reads = 0
        self.started_ns = self.stopped_ns = 0

    def run(self) -> None:
        nvml = self.pynvml
        readers = {
            "energy_counter": lambda: float(nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)),
            "power_usage": lambda: float(nvml.nvmlDeviceGetPowerUsage(self.handle)),
            "power_instant": self._instant_power_mw,
        }
        self.started_ns = now_ns()
        while not self.stop_event.is_set():
            self.reads += 1
            for name, read in list(readers.items()):
                t0 = now_ns()
                try:
                    value = read()
                except nvml.NVMLError as exc:
                    self.unsupported[name] = str(exc)
                    del readers[name]
                    continue
                self.traces[name].append(((t0 + now_ns()) // 2, value))
        self.stopped_ns = now_ns()

    def _instant_power_mw(self) -> float:
        (field,) = self.pynvml.nvmlDeviceGetFieldValues(
            self.handle, [self.pynvml.NVML_FI_DEV_POWER_INSTANT]
        )
        if field.nvmlReturn != self.pynvml.NVML_SUCCESS:
            raise self.pynvml.NVMLError(field.nvmlReturn)
        return float(getattr(field.value, _VALUE_MEMBERS[field.valueType]))


def run_workload(torch, device, *, cycles: int, load_s: float, idle_s: float, size: int):
    """Alternate idle and matmul load; return the host times of each step, in ns."""
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.matmul(a, b)  # cuBLAS set-up happens here, not in the first load step
    torch.cuda.synchronize(device)
    wait = threading.Event()  # never set: a sleep that is clearly only a sleep
    steps = []
    wait.wait(idle_s)
    for _ in range(cycles):
        start_ns = now_ns()
        while now_ns() - start_ns < load_s * 1e9:
            torch.matmul(a, b)
            # One kernel in flight at a time, so the load ends when the host says it does.
            torch.cuda.synchronize(device)
        end_ns = now_ns()
        steps += [("rise", start_ns), ("fall", end_ns)]
        wait.wait(idle_s)
    return steps


def counter_power(trace: np.ndarray) -> np.ndarray:
    """Return ``(t_ns, watts)`` at each counter update, from the energy since the previous one."""
    t_ns, energy_mj = trace[:, 0], trace[:, 1]
    changed = np.flatnonzero(np.diff(energy_mj) != 0) + 1
    if len(changed) < 2:
        return np.empty((0, 2))
    t_upd, e_upd = t_ns[changed], energy_mj[changed]
    watts = np.diff(e_upd) / 1e3 / (np.diff(t_upd) / 1e9)
    return np.column_stack([t_upd[1:], watts])


def update_periods_ms(trace: np.ndarray) -> dict[str, float | int | None]:
    """Return statistics of the time between observed changes of a reading."""
    change_t = trace[np.flatnonzero(np.diff(trace[:, 1]) != 0) + 1, 0]
    periods = np.diff(change_t) / 1e6
    if len(periods) == 0:
        return {"updates": int(len(change_t)), "median_ms": None, "p10_ms": None, "p90_ms": None}
    p10, median, p90 = np.percentile(periods, [10, 50, 90])
    return {"updates": int(len(change_t)), "median_ms": median, "p10_ms": p10, "p90_ms": p90}


def levels_w(power: np.ndarray, steps, idle_s: float, load_s: float) -> tuple[float, float]:
    """Return the median idle and load power over the settled second half of each phase."""
    idle, load = [], []
    for kind, t_ns in steps:
        settled = load_s if kind == "rise" else idle_s
        lo, hi = t_ns + settled / 2 * 1e9, t_ns + settled * 1e9
        window = power[(power[:, 0] >= lo) & (power[:, 0] < hi), 1]
        (load if kind == "rise" else idle).extend(window.tolist())
    if not idle or not load:
        return math.nan, math.nan  # no lag can be measured then
    return float(np.median(idle)), float(np.median(load))


def step_lags_ms(power: np.ndarray, steps, idle_w: float, load_w: float) -> list[dict]:
    """Return, per step, when the reading first passes 50 % and 90 % of the way to the new level."""
    lags = []
    for kind, t_ns in steps:
        after = power[power[:, 0] >= t_ns]
        row = {"step": kind, "t_s": t_ns / 1e9}
        for share in (0.5, 0.9):
            if kind == "rise":
                passed = after[after[:, 1] >= idle_w + share * (load_w - idle_w)]
            else:
                passed = after[after[:, 1] <= load_w - share * (load_w - idle_w)]
            row[f"lag_{share:.0%}_ms"] = (passed[0, 0] - t_ns) / 1e6 if len(passed) else None
        lags.append(row)
    return lags


def agreement(counter: np.ndarray, power: np.ndarray) -> dict[str, float] | None:
    """Compare the counter's joules with the integral of a power reading (mW) over one span.

    The span runs from the first to the last observed counter update, so that the counter's
    staleness between updates does not bias the comparison.
    """
    updates = counter[np.flatnonzero(np.diff(counter[:, 1]) != 0) + 1]
    if len(updates) < 2:
        return None
    (t0, e0), (t1, e1) = updates[0], updates[-1]
    inside = power[(power[:, 0] >= t0) & (power[:, 0] <= t1)]
    if len(inside) < 2:
        return None
    counter_j = (e1 - e0) / 1e3
    integral_j = float(_trapezoid(inside[:, 1] / 1e3, inside[:, 0] / 1e9))
    return {
        "span_s": (t1 - t0) / 1e9,
        "counter_j": float(counter_j),
        "integrated_power_j": integral_j,
        "ratio": integral_j / float(counter_j) if counter_j > 0 else None,
    }


def analyse(poller: Poller, steps, *, idle_s: float, load_s: float) -> dict:
    traces = {k: np.array(v, dtype=np.float64) for k, v in poller.traces.items() if len(v) > 1}
    results: dict[str, dict] = {}
    counter = traces.get("energy_counter")
    for name, trace in traces.items():
        power = counter_power(trace) if name == "energy_counter" else trace.copy()
        if name != "energy_counter":
            power[:, 1] /= 1e3  # mW -> W
        entry: dict = {"reads": int(len(trace)), "update_period": update_periods_ms(trace)}
        if len(power) > 2:
            idle_w, load_w = levels_w(power, steps, idle_s, load_s)
            if math.isfinite(idle_w):
                entry |= {"idle_w": idle_w, "load_w": load_w}
                entry["steps"] = step_lags_ms(power, steps, idle_w, load_w)
        if counter is not None and name != "energy_counter":
            entry["agreement_with_counter"] = agreement(counter, trace)
        results[name] = entry
    return results


def summarise(results: dict) -> None:
    for name, entry in results.items():
        period = entry["update_period"]
        print(f"{name}: {entry['reads']} reads, {period['updates']} updates")
        if period["median_ms"] is not None:
            print(
                f"  update period: median {period['median_ms']:.1f} ms "
                f"(p10 {period['p10_ms']:.1f}, p90 {period['p90_ms']:.1f})"
            )
        if "idle_w" in entry:
            print(f"  idle {entry['idle_w']:.1f} W, load {entry['load_w']:.1f} W")
            for kind in ("rise", "fall"):
                for share in ("50%", "90%"):
                    lags = [s[f"lag_{share}_ms"] for s in entry["steps"] if s["step"] == kind]
                    shown = ", ".join("never" if v is None else f"{v:.0f}" for v in lags)
                    print(f"  lag to {share} of a {kind}: {shown} ms")
        agree = entry.get("agreement_with_counter")
        if agree:
            print(
                f"  integral {agree['integrated_power_j']:.1f} J vs counter "
                f"{agree['counter_j']:.1f} J over {agree['span_s']:.1f} s: "
                f"ratio {agree['ratio']:.4f}"
            )


def measure(cuda_index: int, *, cycles: int, load_s: float, idle_s: float, size: int) -> dict:
    """Run the load/idle cycles on one GPU while polling NVML; return the results.

    Raises:
        NoGpu: when the GPU or its NVML sensor cannot be used.
    """
    device, pynvml, handle, facts = open_gpu(cuda_index)
    import torch

    poller = Poller(pynvml, handle)
    poller.start()
    try:
        steps = run_workload(torch, device, cycles=cycles, load_s=load_s, idle_s=idle_s, size=size)
    finally:
        poller.stop_event.set()
        poller.join()
        pynvml.nvmlShutdown()
    wall_s = (poller.stopped_ns - poller.started_ns) / 1e9
    results = analyse(poller, steps, idle_s=idle_s, load_s=load_s)
    print(f"{facts['name']} ({facts['uuid']}), driver {facts['driver']}")
    loop_ms = wall_s / max(poller.reads, 1) * 1e3
    print(f"poll loop: {loop_ms:.3f} ms per round of reads")
    for name, why in poller.unsupported.items():
        print(f"{name}: not supported ({why})")
    summarise(results)
    return {
        "gpu": facts,
        "settings": {"cycles": cycles, "load_s": load_s, "idle_s": idle_s, "size": size},
        "poll": {"loops": poller.reads, "loop_period_ms": loop_ms},
        "unsupported": poller.unsupported,
        "steps": [{"step": kind, "t_s": t_ns / 1e9} for kind, t_ns in steps],
        "readings": results,
    }
