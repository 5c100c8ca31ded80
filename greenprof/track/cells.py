"""Cells of self time: how much of each column's time fell in which span of the run.

The timeline cuts its self-time segments at fine bin edges into cells; cells that can no longer
change are merged where the power fit does not need them fine (see :meth:`Cells.merged_between`).
Torch-free numpy, so that the timeline's bookkeeping is tested on plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# Slots: one tracked object per chunk, not two (a long run keeps a few chunks alive).
@dataclass(slots=True)
class Cells:
    """Self time per (time span, column) cell, spread evenly over the span."""

    start: np.ndarray
    end: np.ndarray
    column: np.ndarray
    self_ns: np.ndarray

    @staticmethod
    def empty() -> Cells:
        """No cells."""
        return Cells(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0)
        )

    @staticmethod
    def join(parts: list[Cells]) -> Cells:
        """All cells of ``parts``, in order."""
        return Cells(
            np.concatenate([p.start for p in parts]).astype(np.int64),
            np.concatenate([p.end for p in parts]).astype(np.int64),
            np.concatenate([p.column for p in parts]).astype(np.int32),
            np.concatenate([p.self_ns for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.start)

    def newest(self) -> int:
        """Start of the latest cell, or -1 when there is none."""
        return int(self.start.max()) if len(self.start) else -1

    def select(self, mask: np.ndarray) -> Cells:
        """The cells where ``mask`` is True."""
        return Cells(self.start[mask], self.end[mask], self.column[mask], self.self_ns[mask])

    def summed(self) -> Cells:
        """Add up the time of cells that share a span and a column."""
        return self._grouped(self.start, self.end, self.start)

    def merged_between(self, lo: np.ndarray, hi: np.ndarray) -> Cells:
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

    def merged_on_grid(self, t0_ns: int, width_ns: int) -> Cells:
        """Merge each column's cells within the same ``width_ns`` grid cell from ``t0_ns``."""
        if not len(self):
            return self
        key = (self.start - t0_ns) // width_ns
        return self._merged((self.end - 1 - t0_ns) // width_ns == key, key)

    def _merged(self, mergeable: np.ndarray, segment: np.ndarray) -> Cells:
        """Merge the ``mergeable`` cells of each column that share a ``segment``; keep the rest."""
        # Merged cells get keys below every start, so they never meet an unmerged cell's key.
        key = -1 - segment[mergeable].astype(np.int64)
        inside = self.select(mergeable)
        merged = inside._grouped(inside.start, inside.end, key)
        return Cells.join([merged, self.select(~mergeable)])

    def _grouped(self, start: np.ndarray, end: np.ndarray, key: np.ndarray) -> Cells:
        """Cells with equal ``(key, column)`` become one spanning all of them."""
        if not len(key):
            return Cells.empty()
        order = np.lexsort((self.column, key))
        k, c = key[order], self.column[order]
        first = np.ones(len(k), bool)
        first[1:] = (k[1:] != k[:-1]) | (c[1:] != c[:-1])
        at = np.flatnonzero(first)
        return Cells(
            np.minimum.reduceat(start[order], at),
            np.maximum.reduceat(end[order], at),
            c[at],
            np.add.reduceat(self.self_ns[order], at),
        )


def cut_into_bins(
    start: np.ndarray, end: np.ndarray, column: np.ndarray, t0_ns: int, width_ns: int
) -> Cells:
    """Cells of self time from segments ``[start, end)``, each cut at the bin edges it crosses.

    Bins are ``width_ns`` wide from ``t0_ns``.
    """
    first = (start - t0_ns) // width_ns
    last = (end - 1 - t0_ns) // width_ns
    pieces = last - first + 1
    segment = np.repeat(np.arange(len(start)), pieces)
    offset = np.arange(len(segment)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    bin_start = t0_ns + (first[segment] + offset) * width_ns
    piece_start = np.maximum(start[segment], bin_start)
    piece_end = np.minimum(end[segment], bin_start + width_ns)
    return Cells(
        bin_start, bin_start + width_ns, column[segment], (piece_end - piece_start).astype(float)
    )
