"""Several threads calling modules at once: one stack of open modules per thread.

Each thread's forward events carry the thread's number in their code (see
:func:`~.events.tagged`), so the timeline can keep one stack per thread; while several threads run
modules, the time between two events is shared evenly between each thread's innermost module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from greenprof.track.events import (
    BWD_ENTER,
    BWD_EXIT,
    BWD_PASS_END,
    CODE_MASK,
    FWD_ENTER,
    FWD_EXIT,
    OPT_ENTER,
    OPT_EXIT,
    PHASE_OF,
    REGION_ENTER,
    REGION_EXIT,
    THREAD_SHIFT,
)

Event3 = tuple[int, int, int]


class ThreadState:
    """What the hooks keep per thread: the stack of open module keys and the root running.

    Args:
        number: 0 for the thread that installed the hooks, then 1, 2, ... in order of first call.
    """

    __slots__ = ("evaluating", "root", "stack", "tag")

    def __init__(self, number: int) -> None:
        self.tag = number << THREAD_SHIFT  # added to the event code (0 on the installing thread)
        self.stack: list[int] = []
        self.root = -1  # key of the root model this thread runs, -1 when none
        self.evaluating = False  # its open outermost forward runs without gradients


# ``timeline`` below is a :class:`~.timeline.Timeline`; typed ``Any`` so that this module, which
# the timeline imports, does not import it back.
def other_event(timeline: Any, t_ns: int, code: int, key: int, events: Iterator[Event3]) -> None:
    """Handle an event the timeline's fast loop leaves out: a region, or another thread's call.

    From another thread's first call on, the events are consumed here, each on its thread's stack,
    until no thread but the installing one has a module open; the fast loop then resumes.

    Args:
        timeline: the timeline; its ``_t_last`` is current (the event's interval not yet given).
        t_ns: the event's time.
        code: its code, with its thread's number (see :data:`~.events.THREAD_SHIFT`).
        key: its key.
        events: the rest of the events, consumed here while other threads run modules.
    """
    if code <= REGION_EXIT:
        timeline._region_event(code, key)
        return
    stacks: dict[int, list[list[int]]] = timeline._thread_stacks
    stacks[0] = timeline._stack
    while True:
        _share(timeline, t_ns, stacks)
        thread = code >> THREAD_SHIFT
        stack = stacks.get(thread)
        if stack is None:
            stack = stacks[thread] = []
        code &= CODE_MASK
        if code == FWD_ENTER or code == BWD_ENTER or code == OPT_ENTER:
            phase = PHASE_OF[code]
            column = timeline._column(key, phase)
            timeline._calls[column] += 1
            stack.append([key, phase, column, t_ns, len(stack)])
        elif code >= REGION_ENTER:
            timeline._region_event(code, key)
        else:
            _exit(timeline, stack, t_ns, code, key)
        if thread and not stack:
            del stacks[thread]  # kept only while the thread runs modules: threads come and go
        if len(stacks) == 1:
            stacks.clear()  # the main thread's alone, the timeline's own: bulk feeding resumes
            return
        event = next(events, None)
        if event is None:
            return
        t_ns, code, key = event


def _share(timeline: Any, t_ns: int, stacks: dict[int, list[list[int]]]) -> None:
    """Give the time since the last event to each thread's innermost module, in equal parts."""
    t0 = timeline._t_last
    if t_ns <= t0:
        return
    running = [s[-1][2] for s in stacks.values() if s] or [timeline._outside]
    n = len(running)
    for i, column in enumerate(running):
        a, b = t0 + (t_ns - t0) * i // n, t0 + (t_ns - t0) * (i + 1) // n
        if b > a:
            timeline._segments.extend((a, b, column))
    timeline._t_last = t_ns


def _exit(timeline: Any, stack: list[list[int]], t_ns: int, code: int, key: int) -> None:
    """An exit event on one thread's stack: the timeline's own rules, applied to that stack."""
    phase = PHASE_OF[code]
    entry = None
    if stack and stack[-1][0] == key and stack[-1][1] == phase:
        entry = stack.pop()
        timeline._close(entry, t_ns)
    else:
        main, timeline._stack = timeline._stack, stack
        try:
            if code == BWD_EXIT:
                timeline._remove(key, phase, t_ns)
            elif code == BWD_PASS_END:
                timeline._end_backward_pass(t_ns)
            else:
                entry = timeline._pop_nested(key, phase, t_ns)
        finally:
            timeline._stack = main
    if code == FWD_EXIT and not stack:
        timeline.step_count.root_call(key, t_ns - entry[3] if entry else 0)
        timeline._tracing = timeline._trace_open()
    elif code == OPT_EXIT:
        timeline.step_count.optimizer_step()
        timeline._tracing = timeline._trace_open()
