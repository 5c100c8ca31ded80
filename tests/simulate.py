"""A ground-truth energy simulator: a Sensor whose power depends on which module is running.

It watches modules through hooks of its own (independent of greenprof's), integrates a known power
per module exactly, and reports the cumulative energy like a slow hardware counter does: the value
only changes at update instants every 20-100 ms (at random phases relative to greenprof's polls),
with noise on each update. The true joules per module are therefore known, and greenprof's
attribution can be checked against them. Used by the tests and by
benchmarks/attribution_accuracy.py.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.nn.modules import module as nn_module

from greenprof.clock import now_ns
from greenprof.sensors import Sensor

OUTSIDE = "(outside modules)"
_HISTORY_MAX = 200_000


class Busy(torch.nn.Module):
    """A layer that takes a fixed wall time, whatever the machine's speed or load.

    It releases the GIL while it runs, as real kernels do, so the sampler thread keeps its pace.
    """

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x


class GroundTruthSensor(Sensor):
    """Simulated energy counter with known per-module power, forward and (optionally) backward.

    Args:
        model: the model whose modules draw power; names follow ``named_modules()``.
        power_w: maps (qualified name, module) to watts drawn while that module is innermost.
        outside_w: watts while no module of ``model`` runs.
        update_s: ``(low, high)`` seconds between counter updates, drawn uniformly.
        noise: standard deviation of each reading, relative to the increment since the last one.
        seed: random seed.
        backward_w: like ``power_w``, for a module's backward; None leaves backward passes at
            ``outside_w`` (truth then records them as "(outside modules)"). Backward truth is
            keyed ``"NAME (backward)"``.
    """

    measured = True

    def __init__(
        self,
        model: torch.nn.Module,
        power_w: Callable[[str, torch.nn.Module], float],
        *,
        outside_w: float = 20.0,
        update_s: tuple[float, float] = (0.02, 0.1),
        noise: float = 0.02,
        seed: int = 0,
        name: str = "ground-truth",
        backward_w: Callable[[str, torch.nn.Module], float] | None = None,
    ) -> None:
        self.name = name
        self.device = "sim"
        self._names = {id(m): n for n, m in model.named_modules()}
        self._names.update({-k: n for k, n in self._names.items()})
        self._power = {id(m): float(power_w(n, m)) for n, m in model.named_modules()}
        self._outside_w = outside_w
        self._update_s = update_s
        self._noise = noise
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._stack: list[int] = []
        self._t_last = now_ns()
        self._energy = 0.0
        self.true_j: dict[str, float] = {}
        # Time and true cumulative J at every transition, to read the truth at past update
        # instants. Parallel lists, searched by bisection: a read must stay as quick as a hardware
        # counter's (tens of microseconds), or the simulator itself would blur when it updated.
        self._history_t: list[int] = [self._t_last]
        self._history_j: list[float] = [0.0]
        self._next_update = self._t_last + self._draw_period()
        self._reported = 0.0
        self._reported_true = 0.0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._backward_power = (
            {id(m): float(backward_w(n, m)) for n, m in model.named_modules()}
            if backward_w is not None
            else None
        )

    # ------------------------------------------------------------ hooks
    def install(self) -> GroundTruthSensor:
        """Start watching modules; call before greenprof.profile() starts."""
        self._handles = [
            nn_module.register_module_forward_pre_hook(self._enter),
            nn_module.register_module_forward_hook(self._exit, always_call=True),
        ]
        if self._backward_power is not None:
            self._handles += [
                nn_module.register_module_full_backward_pre_hook(self._enter_backward),
                nn_module.register_module_full_backward_hook(self._exit_backward),
            ]
        return self

    def close(self) -> None:
        """Stop watching modules."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _current_power(self) -> tuple[str, float]:
        if not self._stack:
            return OUTSIDE, self._outside_w
        top = self._stack[-1]
        if top < 0:  # a backward entry
            assert self._backward_power is not None
            return self._names[-top] + " (backward)", self._backward_power[-top]
        return self._names[top], self._power[top]

    def _enter_backward(self, module: torch.nn.Module, grad_output: object) -> None:
        if id(module) in self._names:
            with self._lock:
                self._transition()
                self._stack.append(-id(module))

    def _exit_backward(
        self, module: torch.nn.Module, grad_input: object, grad_output: object
    ) -> None:
        if id(module) in self._names and self._stack and self._stack[-1] == -id(module):
            with self._lock:
                self._transition()
                self._stack.pop()

    def _transition(self, t: int | None = None) -> None:
        if t is None:
            t = now_ns()
        name, watts = self._current_power()
        joules = watts * (t - self._t_last) * 1e-9
        self._energy += joules
        self.true_j[name] = self.true_j.get(name, 0.0) + joules
        self._t_last = t
        self._history_t.append(t)
        self._history_j.append(self._energy)
        if len(self._history_t) > _HISTORY_MAX:
            # Updates only ever look back one period: the old half can go.
            del self._history_t[: _HISTORY_MAX // 2], self._history_j[: _HISTORY_MAX // 2]

    def _enter(self, module: torch.nn.Module, args: object) -> None:
        # The module starts before the lock is taken: greenprof's hooks, around these, count a
        # wait for a sensor read in this hook to the module (its exit counts it so already).
        t = now_ns()
        if id(module) in self._names:
            with self._lock:
                self._transition(t)
                self._stack.append(id(module))

    def _exit(self, module: torch.nn.Module, args: object, output: object) -> None:
        if id(module) in self._names and self._stack:
            with self._lock:
                self._transition()
                self._stack.pop()

    # ------------------------------------------------------------ sensor
    def _draw_period(self) -> int:
        low, high = self._update_s
        return int(self._rng.uniform(low, high) * 1e9)

    def _true_at(self, t_ns: int) -> float:
        times, energies = self._history_t, self._history_j
        i = max(bisect.bisect_right(times, t_ns) - 1, 0)
        t0, e0 = times[i], energies[i]
        if i + 1 < len(times):
            watts = (energies[i + 1] - e0) / max(times[i + 1] - t0, 1) * 1e9
        else:
            watts = self._current_power()[1]
        return e0 + watts * (t_ns - t0) * 1e-9

    def energy_j(self) -> float:
        """Return the counter as last updated; updates happen between polls, as on hardware."""
        with self._lock:
            t = now_ns()
            while self._next_update <= t:
                true = self._true_at(self._next_update)
                increment = true - self._reported_true
                # Reading noise that does not accumulate: the counter stays true on average.
                noisy = true + self._noise * increment * self._rng.standard_normal()
                self._reported = max(self._reported, noisy)
                self._reported_true = true
                self._next_update += self._draw_period()
            return self._reported

    def start_truth(self) -> None:
        """Forget the truth so far: call as the profiled block starts."""
        with self._lock:
            self._transition()
            self.true_j = {}

    def finish(self) -> dict[str, float]:
        """Close the books at now and return true joules per module name."""
        with self._lock:
            self._transition()
        return dict(self.true_j)


def synthetic_run(
    layers: list[tuple[float, float]],
    *,
    steps: int,
    update_s: tuple[float, float] = (0.02, 0.1),
    poll_s: float = 0.01,
    noise: float = 0.02,
    outside: tuple[float, float] = (0.0, 0.0),
    seed: int = 0,
    max_cells: int | None = None,
):
    """A run with no torch at all: each step runs ``layers`` in order, then ``outside`` glue.

    Args:
        layers: ``(duration_s, power_w)`` per layer; layer ``i`` is hook key ``i``.
        steps: steps to run.
        update_s: range of the counter's update period.
        poll_s: greenprof's polling interval.
        noise: standard deviation of each reading, relative to the increment since the last one.
        outside: ``(duration_s, power_w)`` spent outside modules after each step.
        seed: random seed (durations jitter by 10%).
        max_cells: when set, the timeline's cell budget, with the sensor's update gaps known to it
            as they would be to greenprof (so that long runs can be imitated in short tests).

    Returns:
        ``(table, series, true_j)``: the timeline's table, the sensor series as greenprof would
        have polled it, and the true joules per column of the table.
    """
    from greenprof.attribute.fit import SensorSeries
    from greenprof.attribute.windows import update_gaps
    from greenprof.track import events as _hooks
    from greenprof.track.timeline import Timeline

    rng = np.random.default_rng(seed)
    # Exact power profile as (t_end_ns, watts, key) segments.
    t = 0
    segments: list[tuple[int, int, float, int]] = []
    events = []
    for _ in range(steps):
        for key, (duration_s, watts) in enumerate(layers):
            d = int(duration_s * rng.uniform(0.9, 1.1) * 1e9)
            events += [(t, _hooks.FWD_ENTER, key), (t + d, _hooks.FWD_EXIT, key)]
            segments.append((t, t + d, watts, key))
            t += d
        if outside[0] > 0:
            d = int(outside[0] * rng.uniform(0.9, 1.1) * 1e9)
            segments.append((t, t + d, outside[1], -1))
            t += d
    t_end = t
    seg_end = np.array([s[1] for s in segments], np.float64)
    seg_start = np.array([s[0] for s in segments], np.float64)
    seg_w = np.array([s[2] for s in segments])
    cum = np.concatenate([[0.0], np.cumsum(seg_w * (seg_end - seg_start) * 1e-9)])

    def true_energy(at_ns: float) -> float:
        i = int(np.searchsorted(seg_end, at_ns, "left"))
        if i >= len(segments):
            return float(cum[-1])
        return float(cum[i] + seg_w[i] * max(at_ns - seg_start[i], 0.0) * 1e-9)

    # Counter updates at random instants; polls every poll_s see the last update.
    updates, reported, value, last_true = [], [], 0.0, 0.0
    u = -rng.uniform(*update_s) * 1e9 * rng.uniform()
    while u < t_end + 0.2e9:
        u += rng.uniform(*update_s) * 1e9
        truth = true_energy(u)
        # Reading noise that does not accumulate: the counter stays true on average.
        value = max(value, truth + noise * (truth - last_true) * rng.standard_normal())
        last_true = truth
        updates.append(u)
        reported.append(value)
    polls = np.arange(0, t_end + poll_s * 1e9, poll_s * 1e9)
    idx = np.searchsorted(np.array(updates), polls, "right") - 1
    energy = np.where(idx >= 0, np.array(reported)[np.maximum(idx, 0)], 0.0)

    options = {}
    if max_cells is not None:
        options = {"max_cells": max_cells, "gaps": lambda: update_gaps(polls, energy)[:2]}
    timeline = Timeline(0, int(poll_s * 1e9) // 10, **options)
    for i in range(0, len(events), 1000):  # fed in pieces, as a profile drains its hooks
        timeline.feed(events[i : i + 1000])
    table = timeline.finish(t_end)
    true_j = np.zeros(len(table.columns))
    for start, end, watts, key in segments:
        column = table.columns.index((key, 0) if key >= 0 else (-1, 3))
        true_j[column] += watts * (end - start) * 1e-9
    series = SensorSeries("sim", "sim", True, polls.astype(np.int64), energy)
    return table, series, true_j
