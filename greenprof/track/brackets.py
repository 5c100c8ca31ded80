"""Runs of training events (forward, backward, optimizer) turned into self time in bulk.

A training step drains as forward calls, a backward pass whose modules end where the autograd
engine reaches their inputs, and an optimizer step. The event loop keeps a stack: an enter pushes
an entry; an exit pops the innermost one (a backward exit removes the innermost entry of its
module wherever it is: backward ends overlap); the end of a backward pass drops the backward
entries still open. So the stack is always the open entries in the order they were entered, and
what runs after an event is the open entry entered last. :func:`bracket_run` computes that for
every event at once:

* each exit closes the last open enter of its module and phase (per module and phase, a stack of
  its own); a backward enter left open closes at the end of its pass;
* what runs after event ``j`` is the last enter at or before ``j`` whose close comes after ``j``:
  found for all events together by halving jumps over a table of the largest close in each
  power-of-two block of enters.

Anything else (a forward or optimizer exit that is not the innermost entry, as an exception
leaves, calls opened before the run, a column not made yet) makes it answer False, and the
timeline's loop takes the run. ``timeline`` is a :class:`~.timeline.Timeline`, typed ``Any`` as
in :mod:`~.runs`, which calls this.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from greenprof.schema import OUTSIDE_KEY
from greenprof.track.events import (
    BACKWARD,
    BWD_ENTER,
    BWD_EXIT,
    BWD_PASS_END,
    FORWARD,
    FWD_ENTER,
    FWD_EXIT,
    NO_REGION,
    OPT_ENTER,
    OPT_EXIT,
    OPTIMIZER,
    OTHER,
)

#: Phase of each enter and exit code (-1: neither), indexed by code.
_PHASE = np.full(max(FWD_ENTER, FWD_EXIT, BWD_ENTER, BWD_EXIT, OPT_ENTER, OPT_EXIT) + 1, -1)
_PHASE[[FWD_ENTER, FWD_EXIT]] = FORWARD
_PHASE[[BWD_ENTER, BWD_EXIT]] = BACKWARD
_PHASE[[OPT_ENTER, OPT_EXIT]] = OPTIMIZER
_KEY_BITS = 40  # module keys stay far below 2**40; the phase and pass go above them
_KEY_MASK = (1 << _KEY_BITS) - 1  # an optimizer's key may be -1
_REGION_BITS = 20
_REGION_MASK = (1 << _REGION_BITS) - 1


#: Longer runs go to the loop: the composite sort keys below must fit in 64 bits.
MAX_EVENTS = 500_000


def bracket_run(timeline: Any, events: np.ndarray, regions: Any) -> bool:
    """Consume a run of main-thread enters, exits, pass ends and region events, as the loop would.

    Args:
        timeline: the timeline: not tracing spans, no other thread's module open.
        events: ``(n, 3)`` int64 rows ``(t_ns, code, key)``.
        regions: :func:`~.runs.region_states` of the run (None: a region's column is missing).

    Returns:
        False, with the timeline untouched, where the loop must take the run.
    """
    n = len(events)
    if timeline._stack or regions is None or n > MAX_EVENTS:
        return False
    region_after, outside_after, open_regions, unmatched = regions
    t_ns, codes, keys = events[:, 0], events[:, 1], events[:, 2]
    enter = (codes == FWD_ENTER) | (codes == BWD_ENTER) | (codes == OPT_ENTER)
    exit_ = (codes == FWD_EXIT) | (codes == BWD_EXIT) | (codes == OPT_EXIT)
    pass_end = codes == BWD_PASS_END
    if (keys[pass_end] >= 0).any():
        return False  # the loop reads a pass end with a module's key as that module's exit
    count = timeline.step_count
    if timeline.trace_steps and (
        (not count.backward_passes and pass_end.any())
        or (not count.optimizer_steps and (codes == OPT_EXIT).any())
    ):
        # What a step is changes here (see .steps): the count drops, and the loop may start
        # keeping spans again part way through the run.
        return False
    phase = np.where(enter | exit_, _PHASE[np.clip(codes, 0, len(_PHASE) - 1)], -1)
    backward = phase == BACKWARD
    # Backward entries of one pass never meet the exits of the next: the pass is in the group.
    passes = np.cumsum(pass_end) - pass_end
    group = (np.where(backward, passes + 1, 0) * 4 + phase) << _KEY_BITS | keys & _KEY_MASK
    partner = _partners(group, enter, exit_, backward)
    if partner is None:
        return False
    entered = np.flatnonzero(enter)
    close = partner[entered]
    left = close < 0  # no exit: a backward entry closes at its pass's end, others stay open
    if left.any():
        ends = np.append(np.flatnonzero(pass_end), n)
        at_end = ends[np.searchsorted(ends, entered[left])]
        close[left] = np.where(backward[entered[left]], at_end, n)
    top = _innermost(entered, close, n)
    columns = known_columns(timeline, keys[entered], phase[entered], region_after[entered])
    if columns is None:
        return False
    # A forward or optimizer exit must close what runs: else an exception left calls open.
    exits = np.flatnonzero(exit_ & ~backward)
    before = np.concatenate(([-1], top[:-1]))
    if not np.array_equal(before[exits], partner[exits]):
        return False
    column_at = np.zeros(n, np.int64)
    column_at[entered] = columns
    after = np.where(top >= 0, column_at[np.maximum(top, 0)], outside_after)
    give_self_time(timeline, t_ns, np.concatenate(([timeline._outside], after[:-1])))
    count_calls(timeline, columns)
    roots = exits[(codes[exits] == FWD_EXIT) & (top[exits] < 0)]
    for key, forward_ns in zip(
        keys[roots].tolist(), (t_ns[roots] - t_ns[partner[roots]]).tolist(), strict=True
    ):
        count.root_call(key, forward_ns)
    for _ in range(int(pass_end.sum())):
        count.backward_pass()
    for _ in range(int((codes == OPT_EXIT).sum())):
        count.optimizer_step()
    # Entries still open, in the order entered, each with the depth it was pushed at.
    closes_sorted = np.sort(close)
    for i in np.flatnonzero(close >= n).tolist():
        e = int(entered[i])
        depth = i - int(np.searchsorted(closes_sorted, e))
        timeline._stack.append([int(keys[e]), int(phase[e]), int(columns[i]), int(t_ns[e]), depth])
    leave_regions(timeline, open_regions, unmatched)
    return True


def give_self_time(timeline: Any, t_ns: np.ndarray, ran: np.ndarray) -> None:
    """Give the time up to each event (from the latest one so far) to what ran before it.

    Args:
        timeline: the timeline the self-time segments go to.
        t_ns: the run's event times.
        ran: the column that ran up to each event.
    """
    t_last = np.maximum.accumulate(np.concatenate(([timeline._t_last], t_ns)))
    gives = t_ns > t_last[:-1]
    timeline._segments.frombytes(
        np.stack((t_last[:-1][gives], t_ns[gives], ran[gives]), axis=1).tobytes()
    )
    timeline._t_last = int(t_last[-1])


def count_calls(timeline: Any, columns: np.ndarray) -> None:
    """Add a call to each column of ``columns`` (one per enter)."""
    calls = timeline._calls
    counted = np.bincount(columns)
    for column in np.flatnonzero(counted).tolist():
        calls[column] += int(counted[column])


def leave_regions(timeline: Any, open_regions: Any, unmatched: int) -> None:
    """The regions open after a run (None: the run had no region event), as the loop leaves them."""
    if open_regions is not None:
        timeline._regions[:] = open_regions
        timeline._region = open_regions[-1][1] if open_regions else NO_REGION
        timeline._outside = timeline._column_of[(OUTSIDE_KEY, OTHER, timeline._region)]
    timeline.inconsistencies += unmatched


def _partners(
    group: np.ndarray, enter: np.ndarray, exit_: np.ndarray, backward: np.ndarray
) -> np.ndarray | None:
    """Each event's partner: an enter's exit, an exit's enter (-1: none; the event index).

    Exits close the last open enter of their group. A backward exit with none open is nothing
    (the loop finds no entry to remove); a forward or optimizer one gives None.
    """
    n = len(group)
    marks = np.flatnonzero(enter | exit_)
    partner = np.full(n, -1, np.int64)
    if not len(marks):
        return partner
    ev = marks[np.lexsort((marks, group[marks]))]  # by group, then in order
    g = group[ev]
    first = np.concatenate(([True], g[1:] != g[:-1]))
    ordinal = np.cumsum(first) - 1
    step = np.where(enter[ev], 1, -1)
    total = np.cumsum(step)
    starts = np.flatnonzero(first)
    depth = total - (total[starts] - step[starts])[ordinal]  # after each event, in its group
    # An exit with nothing open takes its group's depth below every earlier one (and 0).
    big = 2 * n + 2
    running = np.minimum.accumulate(depth - big * ordinal) + big * ordinal
    earlier = np.concatenate(([0], running[:-1]))
    earlier[first] = 0
    floor = np.minimum(earlier, 0)
    unmatched = ~enter[ev] & (depth < floor)
    if (unmatched & ~backward[ev]).any():
        return None
    # A matched exit at depth d closes the group's last enter at depth d + 1 before it.
    width = 2 * n + 1
    position = np.arange(len(ev))
    opened = np.flatnonzero(enter[ev])
    code = (ordinal * width + depth + n) * (n + 1) + position
    by_code = code[opened]  # in group order, but not in depth order: sorted below
    order = np.argsort(by_code, kind="stable")
    by_code, opened = by_code[order], opened[order]
    closing = np.flatnonzero(~enter[ev] & ~unmatched)
    wanted = (ordinal[closing] * width + depth[closing] + 1 + n) * (n + 1) + position[closing]
    found = np.searchsorted(by_code, wanted) - 1
    if (found < 0).any():
        return None
    hit = opened[found]
    if not (
        np.array_equal(ordinal[hit], ordinal[closing])
        and np.array_equal(depth[hit], depth[closing] + 1)
    ):
        return None
    partner[ev[closing]] = ev[hit]
    partner[ev[hit]] = ev[closing]
    return partner


def _innermost(entered: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    """After each event, the index of the last enter at or before it not yet closed (-1: none).

    ``close[p]`` is the event that closes enter ``entered[p]`` (``n``: none in the run).
    """
    index = np.arange(n)
    m = len(entered)
    if not m:
        return np.full(n, -1, np.int64)
    q = np.searchsorted(entered, index, side="right") - 1  # the last enter at or before
    # levels[k][p]: the latest close among the 2**k enters up to p.
    levels = [close]
    while (1 << len(levels)) <= m:
        half = 1 << (len(levels) - 1)
        prev = levels[-1]
        levels.append(np.maximum(prev, np.concatenate((np.full(half, -1), prev[:-half]))))
    # Jump back over blocks of enters all closed by then; each size once, largest first.
    for k in range(len(levels) - 1, -1, -1):
        alive = q >= 0
        latest = np.where(alive, levels[k][np.maximum(q, 0)], n + 1)
        q = np.where(alive & (latest <= index), q - (1 << k), q)
    return np.where(q >= 0, entered[np.maximum(q, 0)], -1)


def known_columns(
    timeline: Any, keys: np.ndarray, phases: np.ndarray | int, regions: np.ndarray
) -> np.ndarray | None:
    """The column of each enter (``keys`` in ``phases`` and ``regions``); None when one is new."""
    if not len(keys):
        return np.zeros(0, np.int64)
    if int(regions.max()) >= 1 << _REGION_BITS or int(keys.max()) >= 1 << _KEY_BITS:
        return None
    packed = (keys << 2 | phases) << _REGION_BITS | regions
    unique, inverse = np.unique(packed, return_inverse=True)
    column_of = timeline._column_of
    table = []
    for value in unique.tolist():
        column = column_of.get(
            (value >> (_REGION_BITS + 2), (value >> _REGION_BITS) & 3, value & _REGION_MASK)
        )
        if column is None:
            return None
        table.append(column)
    return np.array(table, np.int64)[inverse]
