"""Calibration by replay, for a finished profile: when, what, how long, and running it.

Where a sensor updates more slowly than the layers it must split, the run's windows cannot tell
one layer's power from another's; replaying the layers alone can (:mod:`greenprof.track.replay`).
The plan spends a time budget (default: the larger of 10 s and 10 % of the run) on the modules with
the most self time first. A slot lasts from a third of the slowest sensor's update period to four
periods; when the budget cannot give every module a slot, modules of one signature (type,
parameter shapes and dtypes, device) share the replays of the first, and what is still left out
keeps the fit's interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from greenprof.attribute.calibrated import Calibration
from greenprof.attribute.windows import update_gaps
from greenprof.schema import PHASES, TimeTable
from greenprof.track.capture import CapturedCall
from greenprof.track.hooks import HookRecorder
from greenprof.track.names import KeyInfo
from greenprof.track.replay import Replayer
from greenprof.track.timeline import Timeline

logger = logging.getLogger(__name__)

#: Default budget: at least this many seconds...
MIN_BUDGET_S = 10.0
#: ...or this share of the run, whichever is larger.
BUDGET_SHARE = 0.1
#: A slot lasts at least this share of the slowest sensor's update period, and at most four.
MIN_SLOT_PERIODS = 0.3
MAX_SLOT_PERIODS = 4.0
#: Share of the budget given to slots.
PLANNED_SHARE = 0.85
_FORWARD, _BACKWARD = PHASES.index("forward"), PHASES.index("backward")


@dataclass
class Plan:
    """Which modules to replay, and how long each.

    Attributes:
        slot_s: slot seconds per key (each mode: forward, forward+backward).
        shares: key -> the planned key whose replays it shares (same signature).
        left_out: keys with self time that get no replay.
        period_s: the slowest sensor's update period.
        budget_s: the time budget.
    """

    slot_s: dict[int, float] = field(default_factory=dict)
    shares: dict[int, int] = field(default_factory=dict)
    left_out: list[int] = field(default_factory=list)
    period_s: float = 0.0
    budget_s: float = 0.0


def update_period_s(series: list[tuple[np.ndarray, np.ndarray]], fallback_s: float) -> float:
    """The slowest sensor's median time between counter updates."""
    periods = []
    for t_ns, energy_j in series:
        lo, hi, _ = update_gaps(np.asarray(t_ns), np.asarray(energy_j))
        middle = 0.5 * (lo + hi)
        if len(middle) >= 3:
            periods.append(float(np.median(np.diff(middle))) * 1e-9)
    return max(periods) if periods else fallback_s


#: A module with at least this share of the modules' time is one the sensors must split.
NEEDED_SHARE = 0.01


def needed(table: TimeTable, period_s: float) -> bool:
    """True when a module with a noticeable share of the time runs shorter than a counter update.

    Its calls are then shorter than the slowest sensor's update period, so the run's windows mix
    it with its neighbours.
    """
    calls = np.asarray(table.calls, np.float64)
    keep = np.array([key >= 0 for key, _ in table.columns]) & (calls > 0)  # model modules only
    if not keep.any():
        return False
    self_s = table.self_ns[keep] * 1e-9
    per_call_s = self_s / calls[keep]
    noticeable = self_s >= NEEDED_SHARE * self_s.sum()
    return bool(np.any(per_call_s[noticeable] < period_s))


def signature(module: torch.nn.Module) -> tuple[Any, ...]:
    """Type, parameter shapes and dtypes, and device: modules alike enough to share replays."""
    params = tuple((tuple(p.shape), str(p.dtype), str(p.device)) for p in module.parameters())
    return (type(module).__name__, params)


def make_plan(table: TimeTable, keys: list[KeyInfo], period_s: float, budget_s: float) -> Plan:
    """Plan slots for the modules with the most self time first."""
    seconds: dict[int, float] = {}
    for (key, phase), self_ns in zip(table.columns, table.self_ns, strict=True):
        if key < 0 or keys[key].is_optimizer or phase not in (_FORWARD, _BACKWARD):
            continue
        if self_ns > 0 and keys[key].alive is not None and keys[key].alive() is not None:
            seconds[key] = seconds.get(key, 0.0) + self_ns * 1e-9
    order = sorted(seconds, key=seconds.get, reverse=True)
    plan = Plan(period_s=period_s, budget_s=budget_s)
    if not order:
        return plan
    # Slots fill most of the budget; the rest covers the calls around them (the real forward
    # passes that reach each module, first iterations, synchronisation).
    budget_s = PLANNED_SHARE * budget_s
    min_slot, max_slot = MIN_SLOT_PERIODS * period_s, MAX_SLOT_PERIODS * period_s
    chosen = order
    if budget_s / (2 * len(order)) < min_slot:
        first_of: dict[tuple[Any, ...], int] = {}
        chosen = []
        for key in order:
            rep = first_of.setdefault(signature(keys[key].alive()), key)
            if rep == key:
                chosen.append(key)
            else:
                plan.shares[key] = rep
    slot = float(np.clip(budget_s / (2 * len(chosen)), min_slot, max_slot))
    fits = max(int(budget_s // (2 * slot)), 1)
    plan.slot_s = {key: slot for key in chosen[:fits]}
    plan.left_out = [
        k for k in order if k not in plan.slot_s and plan.shares.get(k) not in plan.slot_s
    ]
    plan.shares = {k: r for k, r in plan.shares.items() if r in plan.slot_s}
    return plan


@dataclass
class CalibrationRun:
    """A finished calibration: the replays' table and what the session says of it."""

    calibration: Calibration
    facts: dict[str, Any]


def plan_for(
    table: TimeTable,
    keys: list[KeyInfo],
    series: list[tuple[np.ndarray, np.ndarray]],
    *,
    interval_s: float,
    calibrate_s: float | None,
    several_ranks: bool,
) -> tuple[Plan | None, str]:
    """What to replay after a run, or why nothing: ``(plan, "")`` or ``(None, note)``.

    Args:
        table: the run's time table.
        keys: what each module key stands for.
        series: each sensor's ``(t_ns, energy_j)`` samples.
        interval_s: the sampling interval (the update period when a sensor shows none).
        calibrate_s: the replay budget the user asked for; None picks one and skips replays
            the run does not need.
        several_ranks: the process is one of several ranks of a process group.
    """
    if several_ranks:
        # Replays are timed loops: ranks would run different numbers of iterations, and a
        # module whose forward holds a collective (DDP, FSDP) would wait for the others.
        return None, (
            "not calibrated: several ranks share a process group (replays would have to "
            "match collectives across ranks)"
        )
    period_s = update_period_s(series, interval_s)
    if calibrate_s is None and not needed(table, period_s):
        return None, (
            f"not calibrated: layer calls outlast the sensors' update period ({period_s:.3g} s)"
        )
    run_s = (table.t_end_ns - table.t_start_ns) * 1e-9
    budget_s = calibrate_s if calibrate_s is not None else max(MIN_BUDGET_S, BUDGET_SHARE * run_s)
    plan = make_plan(table, keys, period_s, budget_s)
    if not plan.slot_s:
        return None, "not calibrated: no module to replay within the budget"
    return plan, ""


def calibrate(
    recorder: HookRecorder,
    calls: list[CapturedCall],
    plan: Plan,
    run_table: TimeTable,
    *,
    clock: Callable[[], int],
    bin_ns: int,
) -> CalibrationRun:
    """Replay the plan with ``recorder`` installed again; returns the replays' table and facts."""
    t_start = clock()
    timeline = Timeline(t_start, bin_ns, trace_steps=0)
    recorder.step_callback = lambda: timeline.feed(recorder.drain())
    replayer = Replayer(
        plan.slot_s,
        recorder.key_of_module,
        clock=clock,
        deadline_ns=t_start + int(plan.budget_s * 1e9),
    )
    recorder.install()
    try:
        report = replayer.run(calls)
    finally:
        recorder.remove()
        recorder.step_callback = None
    t_end = clock()
    timeline.feed(recorder.drain(final=True))
    table = timeline.finish(t_end)
    index = {column: c for c, column in enumerate(run_table.columns)}
    replayed_columns = {column: c for column, c in index.items() if column[0] in report.replayed_s}
    calib_time = dict(zip(table.columns, table.self_ns, strict=True))
    replayed = {c for column, c in replayed_columns.items() if calib_time.get(column, 0) > 0}
    shared = {}
    for (key, phase), c in index.items():
        rep = plan.shares.get(key)
        if rep is not None and (rep, phase) in index and index[(rep, phase)] in replayed:
            shared[c] = index[(rep, phase)]
    names = recorder.keys
    facts = {
        "seconds": (t_end - t_start) * 1e-9,
        "budget_s": plan.budget_s,
        "period_s": plan.period_s,
        "slot_s": next(iter(plan.slot_s.values()), 0.0),
        "replayed": sorted(names[k].name for k in report.replayed_s),
        "shared": {names[k].name: names[r].name for k, r in plan.shares.items()},
        "skipped": {names[k].name: why for k, why in report.skipped.items()},
        "left_out": [names[k].name for k in plan.left_out],
        "roots_failed": report.roots_failed,
    }
    return CalibrationRun(Calibration(table, replayed, shared), facts)
