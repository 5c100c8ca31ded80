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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from greenprof.schema import OUTSIDE_COLUMN, OUTSIDE_KEY, TimeTable
from greenprof.track.events import (
    AUTO_EVAL,
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
from greenprof.track.threads import other_event

__all__ = ["BACKWARD", "FORWARD", "OPTIMIZER", "OTHER", "Timeline"]


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
        self._segments: list[tuple[int, int, int]] = []  # (t0, t1, column) of self time
        # Cells of bins that can no longer change, in chunks (one per flush), and the open tail.
        # Flushing then sorts only what is new: no large temporaries on a long run.
        self._frozen: list[_Cells] = []
        self._frozen_cells = 0
        self._tail = _Cells.empty()
        self.trace: list[tuple[int, int, int, int]] = []
        self._tracing = trace_steps > 0 and max_trace_spans > 0
        self.optimizer_steps = 0
        self.root_calls = 0
        self.inconsistencies = 0

    # ------------------------------------------------------------ public
    @property
    def steps(self) -> int:
        """Optimizer steps, or outermost forward calls when no optimizer ran."""
        return self.optimizer_steps or self.root_calls

    def feed(self, events: Iterable[tuple[int, int, int]]) -> None:
        """Consume events in time order (as :class:`~.hooks.HookRecorder` records them)."""
        # The common cases (enter, and exit of the innermost entry) are inlined: this loop runs
        # for every hook event of the user's training. Segment arithmetic happens in numpy later.
        segments = self._segments
        stack = self._stack
        column_of = self._column_of
        calls = self._calls
        trace = self.trace
        t_last = self._t_last
        outside = self._outside
        events = iter(events)  # other_event() may consume some
        for t_ns, code, key in events:
            if t_ns > t_last:
                segments.append((t_last, t_ns, stack[-1][2] if stack else outside))
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
                    trace.append((entry[2], entry[3], t_ns, entry[4]))
            elif code == BWD_EXIT:
                self._remove(key, BACKWARD, t_ns)
            elif code == BWD_PASS_END:
                for entry in [e for e in stack if e[1] == BACKWARD]:
                    self._close(entry, t_ns)
                stack[:] = [e for e in stack if e[1] != BACKWARD]
            else:
                self._pop_nested(key, phase, t_ns)
            if code == FWD_EXIT and not stack:
                self.root_calls += 1
                self._tracing = self._trace_open()
            elif code == OPT_EXIT:
                self.optimizer_steps += 1
                self._tracing = self._trace_open()
        self._t_last = t_last
        self._flush_bins()

    def _trace_open(self) -> bool:
        return self.steps < self.trace_steps and len(self.trace) < self.max_trace_spans

    def finish(self, t_end_ns: int) -> TimeTable:
        """Close everything still open at ``t_end_ns`` and return the aggregated table."""
        t_end_ns = max(t_end_ns, self._t_last)
        self._advance(t_end_ns)
        for entry in self._stack:
            self._close(entry, t_end_ns)
        self._stack = []
        self._flush_bins()
        cells = _Cells.join([*self._frozen, self._tail])
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
            trace=list(self.trace),
            steps=self.steps,
            inconsistencies=self.inconsistencies,
            column_region=list(self.column_region) if self._column_of_regions() else [],
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

    def _column_of_regions(self) -> bool:
        return any(region != NO_REGION for region in self.column_region)

    def _region_event(self, code: int, region: int) -> None:
        """Open or close a region; the automatic ``eval`` region never hides a user's region."""
        if code == REGION_ENTER:
            in_effect = self._region if region == AUTO_EVAL and self._region else region
            self._regions.append((region, in_effect))
        else:
            for i in range(len(self._regions) - 1, -1, -1):
                if self._regions[i][0] == region:
                    # Regions an exception left open inside this one close with it.
                    del self._regions[i:]
                    break
            else:
                self.inconsistencies += 1
        self._region = self._regions[-1][1] if self._regions else NO_REGION
        self._outside = self._column(OUTSIDE_KEY, OTHER)

    def _pop_nested(self, key: int, phase: int, t_ns: int) -> None:
        """Pop ``key`` and whatever a raised exception left open above it."""
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
                return
        self.inconsistencies += 1

    def _remove(self, key: int, phase: int, t_ns: int) -> None:
        """Remove the innermost open entry of ``key`` wherever it is (backward ends overlap)."""
        for i in range(len(self._stack) - 1, -1, -1):
            entry = self._stack[i]
            if entry[0] == key and entry[1] == phase:
                self._close(entry, t_ns)
                del self._stack[i]
                return
        # A module whose backward never started (its output got no gradient): nothing to close.

    def _close(self, entry: list[int], t_ns: int) -> None:
        if self._tracing:
            self.trace.append((entry[2], entry[3], t_ns, entry[4]))

    # ------------------------------------------------------------ self time
    def _advance(self, t_ns: int, column: int | None = None) -> None:
        if t_ns > self._t_last:
            if column is None:
                column = self._stack[-1][2] if self._stack else self._outside
            self._segments.append((self._t_last, t_ns, column))
            self._t_last = t_ns

    def _flush_bins(self) -> None:
        if not self._segments:
            return
        segments = np.asarray(self._segments, np.int64).reshape(-1, 3)
        self._segments = []
        start, end, column = segments[:, 0], segments[:, 1], segments[:, 2]
        per_column = np.bincount(column, weights=end - start, minlength=len(self.columns))
        grown = np.zeros(len(per_column))
        grown[: len(self._self_ns)] = self._self_ns
        self._self_ns = grown + per_column
        new = self._cut_into_bins(start, end, column)
        tail = _Cells.join([self._tail, new]).summed()
        # Time only moves forward: every bin before the newest one is final.
        done = tail.start < tail.newest()
        if done.any():
            self._frozen.append(tail.select(done))
            self._frozen_cells += int(done.sum())
        self._tail = tail.select(~done)
        if self._frozen_cells > self.max_cells:
            frozen = self._compact(_Cells.join(self._frozen))
            self._frozen, self._frozen_cells = [frozen], len(frozen)

    def _cut_into_bins(self, start: np.ndarray, end: np.ndarray, column: np.ndarray) -> _Cells:
        """Cells of self time from segments, each cut at the bin edges it crosses."""
        width = self.bin_ns
        first = (start - self.t_start_ns) // width
        last = (end - 1 - self.t_start_ns) // width
        pieces = last - first + 1
        segment = np.repeat(np.arange(len(start)), pieces)
        offset = np.arange(len(segment)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        bin_start = self.t_start_ns + (first[segment] + offset) * width
        piece_start = np.maximum(start[segment], bin_start)
        piece_end = np.minimum(end[segment], bin_start + width)
        return _Cells(
            bin_start, bin_start + width, column[segment], (piece_end - piece_start).astype(float)
        )

    def _compact(self, cells: _Cells) -> _Cells:
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


@dataclass
class _Cells:
    """Self time per (time span, column) cell, spread evenly over the span."""

    start: np.ndarray
    end: np.ndarray
    column: np.ndarray
    self_ns: np.ndarray

    @staticmethod
    def empty() -> _Cells:
        return _Cells(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0)
        )

    @staticmethod
    def join(parts: list[_Cells]) -> _Cells:
        return _Cells(
            np.concatenate([p.start for p in parts]).astype(np.int64),
            np.concatenate([p.end for p in parts]).astype(np.int64),
            np.concatenate([p.column for p in parts]).astype(np.int32),
            np.concatenate([p.self_ns for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.start)

    def newest(self) -> int:
        return int(self.start.max()) if len(self.start) else -1

    def select(self, mask: np.ndarray) -> _Cells:
        return _Cells(self.start[mask], self.end[mask], self.column[mask], self.self_ns[mask])

    def summed(self) -> _Cells:
        """Add up the time of cells that share a span and a column."""
        return self._grouped(self.start, self.end, self.start)

    def merged_between(self, lo: np.ndarray, hi: np.ndarray) -> _Cells:
        """Merge each column's cells that lie between the same two gaps ``[lo_i, hi_i]``.

        Cells inside or across a gap, and after the last one, stay as they are: where exactly
        they ran decides which side of an update their time falls on.
        """
        if not len(self) or not len(lo):
            return self
        following = np.searchsorted(hi, self.start, "right")  # first gap not behind the cell
        between = following < len(lo)
        between[between] = self.end[between] <= lo[following[between]]
        return self._merged(between, following)

    def merged_on_grid(self, t0_ns: int, width_ns: int) -> _Cells:
        """Merge each column's cells within the same ``width_ns`` grid cell from ``t0_ns``."""
        if not len(self):
            return self
        key = (self.start - t0_ns) // width_ns
        return self._merged((self.end - 1 - t0_ns) // width_ns == key, key)

    def _merged(self, mergeable: np.ndarray, segment: np.ndarray) -> _Cells:
        """Merge the ``mergeable`` cells of each column that share a ``segment``; keep the rest."""
        # Merged cells get keys below every start, so they never meet an unmerged cell's key.
        key = -1 - segment[mergeable].astype(np.int64)
        inside = self.select(mergeable)
        merged = inside._grouped(inside.start, inside.end, key)
        return _Cells.join([merged, self.select(~mergeable)])

    def _grouped(self, start: np.ndarray, end: np.ndarray, key: np.ndarray) -> _Cells:
        """Cells with equal ``(key, column)`` become one spanning all of them."""
        if not len(key):
            return _Cells.empty()
        order = np.lexsort((self.column, key))
        k, c = key[order], self.column[order]
        first = np.ones(len(k), bool)
        first[1:] = (k[1:] != k[:-1]) | (c[1:] != c[:-1])
        at = np.flatnonzero(first)
        return _Cells(
            np.minimum.reduceat(start[order], at),
            np.maximum.reduceat(end[order], at),
            c[at],
            np.add.reduceat(self.self_ns[order], at),
        )
