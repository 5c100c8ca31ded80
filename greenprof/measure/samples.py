"""What the sampler keeps of each sensor: its bounded sample buffer and its update predictor."""

from __future__ import annotations

from array import array
from collections import deque

import numpy as np

#: Gaps between updates remembered to predict the next one.
_GAP_HISTORY = 32
#: Polls per interval while a slow counter's update is due.
REFINE_FACTOR = 10
#: Fine polling starts this many fine polls before the earliest the next update is expected (that
#: bound already lies a bracket's width early, which absorbs a period's jitter): each fine poll
#: wakes the sampler (tens of microseconds of CPU on a busy machine) and takes the GIL.
_LEAD_POLLS = 1

Series = tuple[np.ndarray, np.ndarray]


class SampleBuffer:
    """One sensor's samples: bounded, thinned uniformly, first and newest always kept.

    Every sample offered gets a number. A stored sample is *committed* when its number is a
    multiple of ``stride``; then stored sample ``i`` is number ``i * stride``, so no numbers need
    storing. Only the newest sample may be uncommitted, and is then replaced by the next one.
    Halving keeps the committed samples on the doubled stride plus the newest.

    The samples live in ``array`` storage that the sampler writes and reads element by element
    (a numpy element access costs tens of microseconds when the sampler wakes with cold caches);
    ``t_ns`` and ``energy_j`` are numpy views of the same memory for the bulk work.
    """

    def __init__(self, capacity: int) -> None:
        self._t = array("q", bytes(8 * capacity))
        self._e = array("d", bytes(8 * capacity))
        self.t_ns = np.frombuffer(self._t, dtype=np.int64)
        self.energy_j = np.frombuffer(self._e, dtype=np.float64)
        self.n = 0
        self.stride = 1
        self._next_seq = 0
        self._tail_seq = 0
        self._tail_committed = True

    @property
    def last_energy_j(self) -> float | None:
        """The newest reading, or None before the first."""
        return self._e[self.n - 1] if self.n else None

    def append(self, t_ns: int, energy_j: float) -> None:
        """Offer one reading (it may replace the newest, or be thinned out later)."""
        n = self.n
        e = self._e
        if self.stride == 1 and n >= 2 and energy_j == e[n - 1] == e[n - 2]:
            # A run of equal readings: only its first and newest sample carry timing. Once the
            # buffer thins, every sample takes its turn again, or a change would replace the
            # run's uncommitted newest sample and lose when the counter last held its value.
            self._t[n - 1] = t_ns
            return
        seq = self._next_seq
        self._next_seq += 1
        i = self.n if (self._tail_committed or self.n == 0) else self.n - 1
        self._t[i], e[i] = t_ns, energy_j
        self.n = i + 1
        self._tail_seq = seq
        self._tail_committed = seq % self.stride == 0
        if self.n == len(e):
            self._halve()

    def _halve(self) -> None:
        committed = self.n if self._tail_committed else self.n - 1
        self.stride *= 2
        keep = list(range(0, committed, 2))
        if keep[-1] != self.n - 1:
            keep.append(self.n - 1)  # the newest sample stays, committed or not
        m = len(keep)
        self.t_ns[:m] = self.t_ns[keep]
        self.energy_j[:m] = self.energy_j[keep]
        self.n = m
        self._tail_committed = self._tail_seq % self.stride == 0

    def copy(self) -> Series:
        """The stored samples, ``(t_ns, energy_j)``, as copies."""
        return self.t_ns[: self.n].copy(), self.energy_j[: self.n].copy()


class UpdateWatch:
    """Predicts when a slowly updating counter changes next, so polls can bracket the update.

    An update seen at poll ``hi`` happened after the previous poll ``lo``. The gap between two
    updates is at least ``lo`` of the second minus ``hi`` of the first; the lower quartile of the
    recent such bounds predicts the earliest next update (the very shortest would be the loose
    bounds of the first updates, seen before fine polls, and every update would be polled from
    far too early until they left the history). Counters that change at most polls (RAPL, the
    CPU estimate) have bounds near zero and are never refined.
    """

    def __init__(self, interval_ns: int) -> None:
        self.interval_ns = interval_ns
        self._last: tuple[int, float] | None = None
        self._update_hi_ns: int | None = None
        self._gaps_ns: deque[int] = deque(maxlen=_GAP_HISTORY)
        # How many remembered gaps are at least an interval: the median test needs no sort then.
        self._long_gaps = 0
        self._due_ns: int | None = None
        self._give_up_ns = 0

    def observe(self, t_ns: int, energy_j: float) -> None:
        """Take one reading of the counter."""
        last = self._last
        self._last = (t_ns, energy_j)
        if last is None or energy_j == last[1]:
            if self._due_ns is not None and t_ns > self._give_up_ns:
                self._due_ns = None  # the update never came (counter paused): stop refining
            return
        update_lo_ns = last[0]
        gaps = self._gaps_ns
        if self._update_hi_ns is not None:
            if len(gaps) == _GAP_HISTORY and gaps[0] >= self.interval_ns:
                self._long_gaps -= 1  # the oldest gap leaves the history
            gap_ns = update_lo_ns - self._update_hi_ns
            gaps.append(gap_ns)
            self._long_gaps += gap_ns >= self.interval_ns
        self._update_hi_ns = t_ns
        self._due_ns = None
        n = len(gaps)
        # Refine counters whose typical gap spans unchanged polls; a bound near zero only makes
        # fine polling start early, and once edges are fine the bounds are tight too. The median
        # gap is at least an interval exactly when that many of the n gaps are: n - n // 2.
        if n >= 3 and self._long_gaps >= n - n // 2:
            gaps = sorted(gaps)
            lead_ns = _LEAD_POLLS * self.interval_ns // REFINE_FACTOR
            self._due_ns = update_lo_ns + max(gaps[len(gaps) // 4] - lead_ns, 0)
            self._give_up_ns = t_ns + 2 * gaps[-1] + 2 * self.interval_ns

    def due_in_ns(self, now_ns: int) -> int | None:
        """Nanoseconds until fine polling should start (<= 0: now), or None when not needed."""
        return None if self._due_ns is None else self._due_ns - now_ns
