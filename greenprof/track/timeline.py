"""Turn hook events into self time per (module, phase), binned over the run.

The timeline walks the events once, keeping a stack of what is running. Every interval between two
events belongs to the innermost entry on the stack (self time), or to the "outside modules" row when
nothing runs. Memory stays O(modules): self time is aggregated as it comes, into per-column totals
and into a bounded number of time cells. Cells start as fine bins (a tenth of the sampling
interval); when there are too many, cells of a layer that lie between two known sensor updates
merge (the power fit only needs to know which window a layer's time fell in, and exactly where
only around an update), so a long run keeps its precision where it matters. Only the first
``trace_steps`` steps keep individual spans, for the report's timeline view and trace export.

Columns are keyed by (module, phase, region): region enter/exit events
(:mod:`greenprof.track.regions`) keep a stack of their own, and the innermost open region labels
every column entered, the outside-modules time included, while it is open.

The walk runs during the user's program (drains at step boundaries), so nothing it keeps grows
with the events as tracked objects: self-time segments go to a flat ``array("q")``; stack
entries live only while their module runs, and spans are kept for the first steps only.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable

import numpy as np

from greenprof.schema import OUTSIDE_COLUMN, OUTSIDE_KEY, TimeTable
from greenprof.track.cells import Cells, cut_into_bins
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
    REGION_ENTER,
)
from greenprof.track.events import PHASE_OF as _PHASE_OF
from greenprof.track.region_stack import region_event
from greenprof.track.runs import feed_buffer
from greenprof.track.steps import StepCount
from greenprof.track.threads import other_event

__all__ = ["BACKWARD", "FORWARD", "OPTIMIZER", "OTHER", "Timeline"]

#: Self-time segments (three slots each) collected before they are cut into cells: numpy's fixed
#: cost per flush stays small against the events' own cost, and a drain stays short.
_FLUSH_SLOTS = 3 * 8192
#: Chunks of frozen cells kept apart before they are joined into one: the objects a long run keeps
#: alive stay few, so that the profile adds nothing to the garbage collector's counts over time.
_MAX_FROZEN_CHUNKS = 16


class Timeline:
    """Incremental event-to-self-time aggregator.

    Args:
        t_start_ns: start of the profiled interval.
        bin_ns: width of a time bin; a tenth of the sampling interval keeps the power fit sharp
            (coarser bins blur which layer ran on which side of a counter update).
        max_cells: stored cells before cells are merged (memory bound: 28 bytes a cell).
        gaps: returns the sensors' known update gaps so far, ``(lo_ns, hi_ns)`` sorted and
            disjoint (each update happened somewhere inside its gap); cells between two gaps
            merge first. None: cells merge on a coarser regular grid.
        trace_steps: steps whose individual spans are kept.
        max_trace_spans: hard cap on kept spans.
    """

    def __init__(
        self,
        t_start_ns: int,
        bin_ns: int,
        *,
        max_cells: int = 100_000,
        gaps: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
        trace_steps: int = 20,
        max_trace_spans: int = 200_000,
    ) -> None:
        self.t_start_ns = t_start_ns
        self.bin_ns = max(1, int(bin_ns))
        self.max_cells = max_cells
        self._gaps = gaps
        self._grid_ns = self.bin_ns  # width of the grid cells last merged on
        self.trace_steps = trace_steps
        self.max_trace_spans = max_trace_spans
        self.columns: list[tuple[int, int]] = [(OUTSIDE_KEY, OTHER)]
        self._column_of: dict[tuple[int, int, int], int] = {
            (OUTSIDE_KEY, OTHER, NO_REGION): OUTSIDE_COLUMN
        }
        self.column_region: list[int] = [NO_REGION]
        self._region = NO_REGION  # innermost open region
        self._regions: list[tuple[int, int]] = []  # open regions: (id as entered, id in effect)
        self._outside = OUTSIDE_COLUMN  # the outside-modules column of the open region
        self._calls: list[int] = [0]
        self._self_ns = np.zeros(1, np.float64)
        # Stack entries: [key, phase, column, t_enter_ns]
        self._stack: list[list[int]] = []
        self._thread_stacks: dict[int, list[list[int]]] = {}  # by thread number (threads.py)
        self._t_last = t_start_ns
        # Flat (t0_ns, t1_ns, column) of self time: machine ints, so that the segments a drain
        # collects are no tracked objects (a tuple each would set off collections in big heaps).
        self._segments = array("q")
        # Cells of bins that can no longer change, in chunks (one per flush), and the open tail.
        # Flushing then sorts only what is new: no large temporaries on a long run.
        self._frozen: list[Cells] = []
        self._frozen_cells = 0
        self._tail = Cells.empty()
        self._trace = array("q")  # flat (column, t_enter_ns, t_exit_ns, depth) of kept spans
        self._tracing = trace_steps > 0 and max_trace_spans > 0
        self.step_count = StepCount()  # what a step is: see greenprof.track.steps
        self.inconsistencies = 0

    # ------------------------------------------------------------ public
    def feed(self, events: Iterable[tuple[int, int, int]]) -> None:
        """Consume events in time order (as :class:`~.hooks.HookRecorder` records them).

        A drained :class:`~.events.EventBuffer` has its long runs of forward events handled in
        bulk (:mod:`~.runs`); any other iterable of triples goes through the event loop.
        """
        flat = getattr(events, "flat", None)
        if flat is not None and not self._tracing:
            feed_buffer(self, flat)
        else:
            self._feed_events(events)
        if len(self._segments) >= _FLUSH_SLOTS:
            self._flush_bins()

    def _feed_events(self, events: Iterable[tuple[int, int, int]]) -> None:
        # The common cases (enter, and exit of the innermost entry) are inlined: this loop runs
        # for every hook event of the user's training. Segment arithmetic happens in numpy later.
        put = self._segments.extend
        stack = self._stack
        column_of = self._column_of
        calls = self._calls
        trace = self._trace
        t_last = self._t_last
        outside = self._outside
        events = iter(events)  # other_event() may consume some
        for t_ns, code, key in events:
            if t_ns > t_last:
                put((t_last, t_ns, stack[-1][2] if stack else outside))  # the tuple is freed
                t_last = t_ns
            if code == FWD_ENTER or code == BWD_ENTER or code == OPT_ENTER:
                phase = _PHASE_OF[code]
                column = column_of.get((key, phase, self._region))
                if column is None:
                    column = self._column(key, phase)
                calls[column] += 1
                stack.append([key, phase, column, t_ns, len(stack)])
                continue
            if code >= REGION_ENTER:  # a region, or a module call on another thread
                self._t_last = t_last
                other_event(self, t_ns, code, key, events)
                t_last, outside = self._t_last, self._outside
                continue
            phase = _PHASE_OF[code]
            if stack and stack[-1][0] == key and stack[-1][1] == phase:
                entry = stack.pop()
                if self._tracing:
                    trace.extend((entry[2], entry[3], t_ns, entry[4]))
            elif code == BWD_EXIT:
                self._remove(key, BACKWARD, t_ns)
            elif code == BWD_PASS_END:
                self._end_backward_pass(t_ns)
            else:
                entry = self._pop_nested(key, phase, t_ns)
            if code == FWD_EXIT and not stack:
                self.step_count.root_call(key, t_ns - entry[3] if entry else 0)
                self._tracing = self._trace_open()
            elif code == OPT_EXIT:
                self.step_count.optimizer_step()
                self._tracing = self._trace_open()
        self._t_last = t_last

    @property
    def trace(self) -> list[tuple[int, int, int, int]]:
        """The spans kept so far: ``(column, t_enter_ns, t_exit_ns, depth)`` (a copy)."""
        flat = self._trace
        return list(zip(flat[0::4], flat[1::4], flat[2::4], flat[3::4], strict=True))

    def _trace_open(self) -> bool:
        return (
            self.step_count.steps < self.trace_steps and len(self._trace) < 4 * self.max_trace_spans
        )

    def finish(self, t_end_ns: int) -> TimeTable:
        """Close everything still open at ``t_end_ns`` and return the aggregated table."""
        t_end_ns = max(t_end_ns, self._t_last)
        self._advance(t_end_ns)
        for entry in self._stack:
            self._close(entry, t_end_ns)
        self._stack = []
        self._flush_bins()
        cells = Cells.join([*self._frozen, self._tail])
        return TimeTable(
            columns=list(self.columns),
            calls=np.asarray(self._calls, np.int64),
            self_ns=np.pad(self._self_ns, (0, len(self.columns) - len(self._self_ns))),
            t_start_ns=self.t_start_ns,
            t_end_ns=t_end_ns,
            bin_start_ns=cells.start,
            bin_end_ns=cells.end,
            bin_column=cells.column,
            bin_self_ns=cells.self_ns,
            trace=self.trace,
            steps=self.step_count.steps,
            inconsistencies=self.inconsistencies,
            column_region=(
                list(self.column_region) if any(r != NO_REGION for r in self.column_region) else []
            ),
        )

    # ------------------------------------------------------------ stack
    def _column(self, key: int, phase: int) -> int:
        column = self._column_of.get((key, phase, self._region))
        if column is None:
            column = len(self.columns)
            self._column_of[(key, phase, self._region)] = column
            self.columns.append((key, phase))
            self.column_region.append(self._region)
            self._calls.append(0)
        return column

    def _region_event(self, code: int, region: int) -> None:
        """Open or close a region."""
        if not region_event(self._regions, code, region):
            self.inconsistencies += 1
        self._region = self._regions[-1][1] if self._regions else NO_REGION
        self._outside = self._column(OUTSIDE_KEY, OTHER)

    def _pop_nested(self, key: int, phase: int, t_ns: int) -> list[int] | None:
        """Pop ``key`` and whatever a raised exception left open above it; return its entry."""
        for i in range(len(self._stack) - 1, -1, -1):
            entry = self._stack[i]
            if entry[0] == key and entry[1] == phase:
                for above in self._stack[i + 1 :]:
                    if above[1] == phase:
                        self.inconsistencies += 1
                        self._close(above, t_ns)
                self._close(entry, t_ns)
                # Backward entries above belong to another pass; keep them.
                self._stack[:] = self._stack[:i] + [
                    e for e in self._stack[i + 1 :] if e[1] != phase
                ]
                return entry
        self.inconsistencies += 1
        return None

    def _remove(self, key: int, phase: int, t_ns: int) -> None:
        """Remove the innermost open entry of ``key`` wherever it is (backward ends overlap)."""
        for i in range(len(self._stack) - 1, -1, -1):
            entry = self._stack[i]
            if entry[0] == key and entry[1] == phase:
                self._close(entry, t_ns)
                del self._stack[i]
                return
        # A module whose backward never started (its output got no gradient): nothing to close.

    def _end_backward_pass(self, t_ns: int) -> None:
        """Close every backward entry still open: the autograd engine finished the pass."""
        stack = self._stack
        for entry in [e for e in stack if e[1] == BACKWARD]:
            self._close(entry, t_ns)
        stack[:] = [e for e in stack if e[1] != BACKWARD]  # in place: feed() holds this list
        self.step_count.backward_pass()
        self._tracing = self._trace_open()

    def _close(self, entry: list[int], t_ns: int) -> None:
        if self._tracing:
            self._trace.extend((entry[2], entry[3], t_ns, entry[4]))

    # ------------------------------------------------------------ self time
    def _advance(self, t_ns: int, column: int | None = None) -> None:
        if t_ns > self._t_last:
            if column is None:
                column = self._stack[-1][2] if self._stack else self._outside
            self._segments.extend((self._t_last, t_ns, column))
            self._t_last = t_ns

    def _flush_bins(self) -> None:
        if not self._segments:
            return
        segments = np.frombuffer(self._segments, np.int64).reshape(-1, 3).copy()
        del self._segments[:]
        start, end, column = segments[:, 0], segments[:, 1], segments[:, 2]
        per_column = np.bincount(column, weights=end - start, minlength=len(self.columns))
        grown = np.zeros(len(per_column))
        grown[: len(self._self_ns)] = self._self_ns
        self._self_ns = grown + per_column
        new = cut_into_bins(start, end, column, self.t_start_ns, self.bin_ns)
        tail = Cells.join([self._tail, new]).summed()
        # Time only moves forward: every bin before the newest one is final.
        done = tail.start < tail.newest()
        if done.any():
            self._frozen.append(tail.select(done))
            self._frozen_cells += int(done.sum())
        self._tail = tail.select(~done)
        if self._frozen_cells > self.max_cells:
            frozen = self._compact(Cells.join(self._frozen))
            self._frozen, self._frozen_cells = [frozen], len(frozen)
        elif len(self._frozen) > _MAX_FROZEN_CHUNKS:
            self._frozen = [Cells.join(self._frozen)]

    def _compact(self, cells: Cells) -> Cells:
        """Merge cells until at most half the cell budget is used; totals never change.

        First each layer's cells between two known sensor updates become one: the windows the
        power fit sees are unchanged. When that is not enough, every other update is passed over
        (as if the sensor had updated half as often), and so on; with no updates known, cells
        merge on a regular grid that doubles.
        """
        target = self.max_cells // 2
        lo, hi = self._gaps() if self._gaps is not None else (np.zeros(0), np.zeros(0))
        lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        stride = 1
        while len(lo[::stride]) >= 2:
            merged = cells.merged_between(lo[::stride], hi[::stride])
            if len(merged) <= target:
                return merged
            stride *= 2
        span_ns = int(cells.end.max()) - self.t_start_ns if len(cells) else 0
        while True:
            self._grid_ns *= 2  # kept: the next compaction starts where this one ended
            merged = cells.merged_on_grid(self.t_start_ns, self._grid_ns)
            if len(merged) <= target or self._grid_ns > span_ns:
                return merged
