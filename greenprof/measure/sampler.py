"""The background thread that reads every sensor at a fixed interval.

The result is one ``(t_ns, energy_j)`` series per sensor, timestamped with the clock the hooks
use. :meth:`Sampler.start` and :meth:`Sampler.stop` each take one sample themselves, so the series
always brackets the profiled code, however short.

Counters that update slower than they are polled (NVML's energy every 20-100 ms) only say that
an update happened somewhere between two polls. Once such a counter's shortest gap between updates
is known, the sampler polls ten times faster from shortly before its next update is due until it
sees it, so each update is placed to a tenth of the interval at a fraction of the cost of polling
that fast throughout.

Memory stays bounded on runs of any length: a run of equal readings keeps only its first and newest
sample (only changes carry timing); each sensor's samples live in preallocated arrays; when they
fill up, every other interior sample is dropped and from then on only every other new sample is
kept (the first and the newest always are). Energy is cumulative, so thinning loses time
resolution, never joules.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from greenprof.clock import now_ns
from greenprof.errors import ConfigError
from greenprof.sensors.base import Sensor

logger = logging.getLogger(__name__)

#: Samples kept per sensor before thinning: 20 minutes at 10 ms, 2 MiB per sensor.
DEFAULT_CAPACITY = 1 << 17

THREAD_NAME = "greenprof-sampler"

#: How long stop() waits for a sensor read in progress before giving up on the thread.
_JOIN_TIMEOUT_S = 5.0

#: Polls per interval while a slow counter's update is due.
REFINE_FACTOR = 10
#: Gaps between updates remembered to predict the next one.
_GAP_HISTORY = 32
#: Fine polling starts this fraction of the shortest gap after the last update's earliest time.
_DUE_FRACTION = 0.9

Series = tuple[np.ndarray, np.ndarray]


class _Buffer:
    """One sensor's samples: bounded, thinned uniformly, first and newest always kept.

    Every sample offered gets a number. A stored sample is *committed* when its number is a
    multiple of ``stride``; then stored sample ``i`` is number ``i * stride``, so no numbers need
    storing. Only the newest sample may be uncommitted, and is then replaced by the next one.
    Halving keeps the committed samples on the doubled stride plus the newest.
    """

    def __init__(self, capacity: int) -> None:
        self.t_ns = np.zeros(capacity, dtype=np.int64)
        self.energy_j = np.zeros(capacity, dtype=np.float64)
        self.n = 0
        self.stride = 1
        self._next_seq = 0
        self._tail_seq = 0
        self._tail_committed = True

    @property
    def last_energy_j(self) -> float | None:
        return float(self.energy_j[self.n - 1]) if self.n else None

    def append(self, t_ns: int, energy_j: float) -> None:
        n = self.n
        if self.stride == 1 and n >= 2 and energy_j == self.energy_j[n - 1] == self.energy_j[n - 2]:
            # A run of equal readings: only its first and newest sample carry timing. Once the
            # buffer thins, every sample takes its turn again, or a change would replace the
            # run's uncommitted newest sample and lose when the counter last held its value.
            self.t_ns[n - 1] = t_ns
            return
        seq = self._next_seq
        self._next_seq += 1
        i = self.n if (self._tail_committed or self.n == 0) else self.n - 1
        self.t_ns[i], self.energy_j[i] = t_ns, energy_j
        self.n = i + 1
        self._tail_seq = seq
        self._tail_committed = seq % self.stride == 0
        if self.n == len(self.t_ns):
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
        return self.t_ns[: self.n].copy(), self.energy_j[: self.n].copy()


class _UpdateWatch:
    """Predicts when a slowly updating counter changes next, so polls can bracket the update.

    An update seen at poll ``hi`` happened after the previous poll ``lo``. The gap between two
    updates is at least ``lo`` of the second minus ``hi`` of the first; the shortest of the recent
    such bounds predicts the earliest next update. Counters that change at most polls (RAPL, the
    CPU estimate) have bounds near zero and are never refined.
    """

    def __init__(self, interval_ns: int) -> None:
        self.interval_ns = interval_ns
        self._last: tuple[int, float] | None = None
        self._update_hi_ns: int | None = None
        self._gaps_ns: deque[int] = deque(maxlen=_GAP_HISTORY)
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
        if self._update_hi_ns is not None:
            self._gaps_ns.append(update_lo_ns - self._update_hi_ns)
        self._update_hi_ns = t_ns
        self._due_ns = None
        gaps = sorted(self._gaps_ns)
        # Refine counters whose typical gap spans unchanged polls; a bound near zero only makes
        # fine polling start early, and once edges are fine the bounds are tight too.
        if len(gaps) >= 3 and gaps[len(gaps) // 2] >= self.interval_ns:
            self._due_ns = update_lo_ns + int(_DUE_FRACTION * max(gaps[0], 0))
            self._give_up_ns = t_ns + 2 * gaps[-1] + 2 * self.interval_ns

    def due_in_ns(self, now_ns: int) -> int | None:
        """Nanoseconds until fine polling should start (<= 0: now), or None when not needed."""
        return None if self._due_ns is None else self._due_ns - now_ns


def check_interval_s(interval_s: object) -> float:
    """Return a sampling interval as float seconds.

    Raises:
        ConfigError: it is not a finite, positive number.
    """
    if not (isinstance(interval_s, (int, float)) and math.isfinite(interval_s)):
        raise ConfigError(f"interval_s must be a number of seconds, got {interval_s!r}")
    if interval_s <= 0:
        raise ConfigError(f"interval_s must be positive, got {interval_s!r}")
    return float(interval_s)


class Sampler:
    """Reads each sensor's cumulative energy on a background thread.

    Args:
        sensors: the sensors to read; their names must be unique.
        interval_s: seconds between samples.
        clock: monotonic nanoseconds for timestamps; the same clock the hooks use.
        capacity: samples kept per sensor before thinning (at least 4).

    Attributes:
        failures: sensor name -> why it failed; a failed sensor is no longer read, and what it
            measured before failing stays in :meth:`series`.
        warnings: things a report should say about the sampling (failed sensors, missed ticks).

    Raises:
        ConfigError: for a non-positive interval, a capacity below 4 or duplicate sensor names.

    Example:
        >>> from greenprof.sensors import ReplaySensor
        >>> sensor = ReplaySensor([0.0, 1.0], [0.0, 10.0], name="demo")
        >>> with Sampler([sensor], interval_s=0.01) as sampler:
        ...     pass
        >>> t_ns, energy_j = sampler.series()["demo"]
        >>> len(t_ns) >= 2
        True
    """

    def __init__(
        self,
        sensors: Sequence[Sensor],
        *,
        interval_s: float = 0.01,
        clock: Callable[[], int] = now_ns,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        interval_s = check_interval_s(interval_s)
        if capacity < 4:
            raise ConfigError(f"capacity must be at least 4 samples, got {capacity!r}")
        names = [s.name for s in sensors]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"sensor names must be unique; repeated: {', '.join(repeated)}")
        self.interval_s = float(interval_s)
        self.failures: dict[str, str] = {}
        self.warnings: list[str] = []
        self._clock = clock
        self._sensors = list(sensors)
        self._active = list(sensors)
        self._buffers = {s.name: _Buffer(capacity) for s in sensors}
        interval_ns = int(self.interval_s * 1e9)
        self._watches = {s.name: _UpdateWatch(interval_ns) for s in sensors}
        self._lock = threading.Lock()  # guards the buffers against series() from other threads
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = "new"
        self._ticks = 0
        self._missed_ticks = 0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Sampler:
        """Take the first sample, then start the background thread.

        Raises:
            RuntimeError: when the sampler was already started.
        """
        if self._state != "new":
            raise RuntimeError(f"Sampler.start(): the sampler is already {self._state}")
        self._state = "running"
        self.sample_once()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Sampler:
        """Stop the thread, wait for it, then take the last sample; a second call does nothing."""
        if self._state != "running":
            return self
        self._state = "stopped"
        self._stop_event.set()
        assert self._thread is not None
        self._thread.join(_JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            # A sensor read is hanging; a final read now could race it, so the series ends early.
            self._warn(f"sampler thread did not stop within {_JOIN_TIMEOUT_S:g} s (sensor hung)")
        else:
            self.sample_once()
        if self._ticks and self._missed_ticks > self._ticks // 10:
            self._warn(
                f"sampler missed {self._missed_ticks} of {self._ticks + self._missed_ticks} ticks "
                f"of interval_s={self.interval_s:g}: the sensors are slow to read, or the "
                "profiled code kept the GIL (long pure-Python work)"
            )
        for sensor in self._sensors:
            try:
                caveats = sensor.caveats()
            except Exception:  # a caveat is a courtesy: never lose the samples over it
                logger.debug("greenprof: %s.caveats() failed", sensor.name, exc_info=True)
                continue
            for caveat in caveats:
                self._warn(caveat)
        return self

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        # Event.wait paces the loop so that stop() wakes it at once.
        fine_ns = int(self.interval_s * 1e9) // REFINE_FACTOR
        next_tick = time.perf_counter() + self.interval_s
        wake = next_tick
        while not self._stop_event.wait(max(wake - time.perf_counter(), 0.0)):
            if time.perf_counter() < next_tick:
                # Between ticks: read only the counters whose update is due.
                self.sample_once(self._due_sensors(fine_ns))
            else:
                self.sample_once()
                self._ticks += 1
                next_tick += self.interval_s
                behind_s = time.perf_counter() - next_tick
                if behind_s > 0:
                    # Skip the ticks already missed rather than sampling in a burst to catch up.
                    missed = int(behind_s // self.interval_s) + 1
                    self._missed_ticks += missed
                    next_tick += missed * self.interval_s
            wake = next_tick
            due_ns = self._next_due_ns()
            if due_ns is not None:
                wake = min(wake, time.perf_counter() + max(due_ns, fine_ns) * 1e-9)

    def _next_due_ns(self) -> int | None:
        """Nanoseconds until some slow counter's update is due, or None when none is watched."""
        now_ns = self._clock()
        watches = [self._watches[s.name] for s in self._active]
        due = [d for w in watches if (d := w.due_in_ns(now_ns)) is not None]
        return min(due) if due else None

    def _due_sensors(self, within_ns: int) -> list[Sensor]:
        """Working sensors whose next update is due within ``within_ns``."""
        now_ns = self._clock()
        return [
            s
            for s in self._active
            if (d := self._watches[s.name].due_in_ns(now_ns)) is not None and d <= within_ns
        ]

    # ------------------------------------------------------------- sampling
    def sample_once(self, sensors: Sequence[Sensor] | None = None) -> None:
        """Read every working sensor (or only ``sensors``) once and store the readings."""
        readings: list[tuple[str, int, float]] = []
        for sensor in list(self._active if sensors is None else sensors):
            t0_ns = self._clock()
            try:
                energy_j = float(sensor.energy_j())
            except Exception as exc:
                self._fail(sensor, f"{type(exc).__name__}: {exc}")
                continue
            t1_ns = self._clock()
            # The reading happened somewhere inside the call; its middle is the best guess.
            readings.append((sensor.name, (t0_ns + t1_ns) // 2, energy_j))
        with self._lock:
            for name, t_ns, energy_j in readings:
                buffer = self._buffers[name]
                last_j = buffer.last_energy_j
                if not math.isfinite(energy_j):
                    self._drop_locked(name, f"returned {energy_j} joules")
                elif last_j is not None and energy_j < last_j:
                    self._drop_locked(name, f"energy went backwards ({last_j} -> {energy_j} J)")
                else:
                    buffer.append(t_ns, energy_j)
                    self._watches[name].observe(t_ns, energy_j)

    def _fail(self, sensor: Sensor, reason: str) -> None:
        with self._lock:
            self._drop_locked(sensor.name, reason)

    def _drop_locked(self, name: str, reason: str) -> None:
        """Stop reading sensor ``name``; what it gave so far stays. Caller holds the lock."""
        self._active = [s for s in self._active if s.name != name]
        self.failures[name] = reason
        self._warn_locked(
            f"sensor {name} failed and is no longer read ({reason}); "
            "the samples it gave before are kept"
        )

    def _warn(self, message: str) -> None:
        with self._lock:
            self._warn_locked(message)

    def _warn_locked(self, message: str) -> None:
        self.warnings.append(message)
        logger.warning("%s", message)

    # --------------------------------------------------------------- result
    def series(self) -> dict[str, Series]:
        """Return each sensor's samples so far: ``name -> (t_ns int64, energy_j float64)``.

        The arrays are copies, safe to keep while sampling goes on. Failed sensors are included
        with what they measured before failing.
        """
        with self._lock:
            return {name: buffer.copy() for name, buffer in self._buffers.items()}


def mean_power_w(sensors: Sequence[Sensor], seconds: float) -> dict[str, float | str]:
    """Sample ``sensors`` for ``seconds`` and return each one's mean power in watts.

    A sensor that fails maps to the reason instead. Sampling runs throughout, not just at both
    ends, so that sensors integrating power (older GPUs) are read often enough.
    """
    with Sampler(sensors, interval_s=min(0.05, seconds / 10)) as sampler:
        time.sleep(seconds)
    power_w: dict[str, float | str] = {}
    for name, (t_ns, energy_j) in sampler.series().items():
        elapsed_s = (t_ns[-1] - t_ns[0]) / 1e9 if len(t_ns) > 1 else 0.0
        if name in sampler.failures:
            power_w[name] = sampler.failures[name]
        elif elapsed_s <= 0:
            power_w[name] = "no time elapsed between readings"
        else:
            power_w[name] = float(energy_j[-1] - energy_j[0]) / elapsed_s
    return power_w
