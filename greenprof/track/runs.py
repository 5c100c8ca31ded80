"""Long runs of forward events turned into self time in bulk, with numpy.

A decoding loop or an inference pass drains thousands of main-thread forward events in a row:
module enters and exits, nested, nothing else. :func:`feed_buffer` finds those runs in a drained
buffer and gives them to :func:`forward_run`, which computes what the timeline's event loop would
(self-time segments, calls per column, the stack left open, root calls for the step count) from
the depths of the events, at a small fraction of the loop's cost per event. A buffer of training
steps (backward passes and optimizer steps among the calls) goes to
:func:`~.brackets.bracket_run` whole. Everything else (other threads, nesting an exception broke)
goes through the loop, event by event, so the ways always agree (property tests hold them to
it). ``timeline`` is a :class:`~.timeline.Timeline`, typed ``Any`` as in :mod:`~.threads`.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from greenprof.schema import OUTSIDE_KEY
from greenprof.track.brackets import (
    bracket_run,
    count_calls,
    give_self_time,
    known_columns,
    leave_regions,
)
from greenprof.track.events import (
    FORWARD,
    FWD_ENTER,
    FWD_EXIT,
    NO_REGION,
    OTHER,
    REGION_ENTER,
    REGION_EXIT,
    triples,
)
from greenprof.track.region_stack import region_event

#: Shorter runs go through the loop: numpy's fixed cost per call would outweigh the gain.
MIN_RUN_EVENTS = 128


def feed_buffer(timeline: Any, flat: array) -> None:
    """Feed a drained flat buffer of ``(t_ns, code, key)`` slots to ``timeline``.

    Training steps (backward or optimizer events among the calls) go to
    :func:`~.brackets.bracket_run` whole, up to another thread's first event. Otherwise, or where
    that declines, long runs of forward events go to :func:`forward_run`, the events between them
    (and every event from another thread's first one on, which the loop handles thread by thread)
    to the timeline's loop, in order.
    """
    events = np.frombuffer(flat, np.int64).reshape(-1, 3)
    codes = events[:, 1]
    n = len(events)
    others = np.flatnonzero(codes > REGION_EXIT)
    end = int(others[0]) if len(others) else n  # runs only before another thread's events
    breaks = np.flatnonzero(
        (codes[:end] != FWD_ENTER) & (codes[:end] != FWD_EXIT) & (codes[:end] < REGION_ENTER)
    )
    bulk = not (timeline._tracing or timeline._thread_stacks or timeline._stack)
    if len(breaks) and end >= MIN_RUN_EVENTS and bulk:
        # Training steps: backward and optimizer events among the forward ones, all at once
        # (calls open before the drain are the loop's: checked before the regions are read).
        if bracket_run(timeline, events[:end], region_states(timeline, events[:end])):
            if end < n:
                timeline._feed_events(triples(flat[3 * end :]))
            return
    starts = np.concatenate(([0], breaks + 1))
    stops = np.concatenate((breaks, [end]))
    long = np.flatnonzero(stops - starts >= MIN_RUN_EVENTS)
    done = 0  # events before this one are fed
    for start, stop in zip(starts[long].tolist(), stops[long].tolist(), strict=True):
        if timeline._tracing or timeline._thread_stacks:
            break  # spans kept one by one, or threads open: the loop's work
        if start > done:
            timeline._feed_events(triples(flat[3 * done : 3 * start]))
        if not forward_run(timeline, events[start:stop]):
            timeline._feed_events(triples(flat[3 * start : 3 * stop]))
        done = stop
    if done < n:
        timeline._feed_events(triples(flat[3 * done :]))


def forward_run(timeline: Any, events: np.ndarray) -> bool:
    """Consume forward enters/exits and region events of the main thread, as the loop would.

    Args:
        timeline: the timeline; not tracing spans, no other thread's module open.
        events: ``(n, 3)`` int64 rows ``(t_ns, code, key)``; codes FWD_ENTER, FWD_EXIT,
            REGION_ENTER and REGION_EXIT only.

    Returns:
        False, with the timeline untouched, when the loop must handle the run: an exit does not
        close the innermost open call (an exception left calls open) or closes a call opened
        before the run, or the run needs a column the timeline does not have yet (the loop makes
        columns in the order it meets them), or it holds no call (region events only).
    """
    n = len(events)
    t_ns, codes, keys = events[:, 0], events[:, 1], events[:, 2]
    enter = codes == FWD_ENTER
    if not enter.any():
        return False
    exit_ = codes == FWD_EXIT
    depth = np.cumsum(enter.astype(np.int64) - exit_)  # after each event, from the run's start
    if depth.min() < 0:
        return False
    # For each depth, the enters that reached it, in order: the innermost call open after event
    # j is the last enter at depth[j] up to j, and exit j closes the last enter at depth[j] + 1.
    entered = np.flatnonzero(enter)
    order = np.argsort(depth[entered], kind="stable")
    by_depth = depth[entered][order] * (n + 1) + entered[order]
    by_depth_event = entered[order]
    exits = np.flatnonzero(exit_)
    opened = by_depth_event[np.searchsorted(by_depth, (depth[exits] + 1) * (n + 1) + exits) - 1]
    if not np.array_equal(keys[opened], keys[exits]):
        return False
    regions = region_states(timeline, events)
    if regions is None:
        return False
    region_after, outside_after, open_regions, unmatched = regions
    columns = known_columns(timeline, keys[entered], FORWARD, region_after[entered])
    if columns is None:
        return False
    column_at = np.empty(n, np.int64)
    column_at[entered] = columns
    stack = timeline._stack
    base_column = stack[-1][2] if stack else timeline._outside
    index = np.arange(n)
    inner = by_depth_event[np.searchsorted(by_depth, depth * (n + 1) + index, side="right") - 1]
    if stack:
        outside_after = np.full(n, base_column)  # below the run, a call of before it runs
    after = np.where(depth > 0, column_at[inner], outside_after)  # what runs after event j
    give_self_time(timeline, t_ns, np.concatenate(([base_column], after[:-1])))
    count_calls(timeline, columns)
    if not stack:
        roots = depth[exits] == 0
        for key, forward_ns in zip(
            keys[exits[roots]].tolist(),
            (t_ns[exits[roots]] - t_ns[opened[roots]]).tolist(),
            strict=True,
        ):
            timeline.step_count.root_call(key, forward_ns)
    base = len(stack)
    for level in range(1, int(depth[-1]) + 1):
        e = int(by_depth_event[np.searchsorted(by_depth, level * (n + 1) + n, "right") - 1])
        stack.append([int(keys[e]), FORWARD, int(column_at[e]), int(t_ns[e]), base + level - 1])
    leave_regions(timeline, open_regions, unmatched)
    return True


def region_states(timeline: Any, events: np.ndarray) -> Any:
    """The region in effect and the outside column after each event, and the regions left open.

    Returns:
        ``(region_after, outside_after, open_regions, unmatched)``, ``open_regions`` None when
        the run has no region event; None when a region's outside column is not made yet.
    """
    n = len(events)
    at = np.flatnonzero(events[:, 1] >= REGION_ENTER)
    region, outside = timeline._region, timeline._outside
    if not len(at):
        return np.full(n, region), np.full(n, outside), None, 0
    column_of = timeline._column_of
    regions = list(timeline._regions)
    in_effect, outsides = [region], [outside]
    unmatched = 0
    for code, rid in events[at, 1:].tolist():
        if not region_event(regions, code, rid):
            unmatched += 1
        region = regions[-1][1] if regions else NO_REGION
        outside = column_of.get((OUTSIDE_KEY, OTHER, region))
        if outside is None:
            return None
        in_effect.append(region)
        outsides.append(outside)
    # Event j sees the state after the last region event at or before it.
    since = np.searchsorted(at, np.arange(n), side="right")
    return np.array(in_effect)[since], np.array(outsides)[since], regions, unmatched
